--- wsp.memnet: memnet, lwsp's in-process network (examples/memnet.lua), as a
-- module for providers built from it (`local net = require "wsp.memnet"`).
-- It loads memnet from lwsp's examples folder: in a checkout lua/wsp/ ->
-- examples/ (also when reached through build/lua), in an installed rock
-- share/lua/5.4/wsp/ -> lib/luarocks/rocks-5.4/lwsp/scm-1/examples/.
-- @module wsp.memnet
local here = debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$") or "."
local sep = package.config:sub(1, 1)
for _, up in ipairs{{"..", ".."}, {"..", "..", ".."},
                    {"..", "..", "..", "..", "lib", "luarocks", "rocks-5.4", "lwsp", "scm-1"}} do
  local path = here .. sep .. table.concat(up, sep) .. sep .. "examples" .. sep .. "memnet.lua"
  local chunk = loadfile(path)
  if chunk then return chunk() end
end
error("wsp.memnet: examples/memnet.lua not found from " .. here)
