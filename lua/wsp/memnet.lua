--- wsp.memnet: memnet, lwsp's in-process network (examples/memnet.lua), as a
-- module for providers built from it (`local net = require "wsp.memnet"`).
-- In an installed rock this name is examples/memnet.lua itself; in a checkout
-- this file loads it from the examples folder (lua/wsp/ -> examples/, also
-- when reached through build/lua).
-- @module wsp.memnet
local here = debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$") or "."
local sep = package.config:sub(1, 1)
for _, up in ipairs{{"..", ".."}, {"..", "..", ".."}} do
  local path = here .. sep .. table.concat(up, sep) .. sep .. "examples" .. sep .. "memnet.lua"
  local chunk = loadfile(path)
  if chunk then return chunk() end
end
error("wsp.memnet: examples/memnet.lua not found from " .. here)
