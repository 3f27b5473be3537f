-- upper: a datagram-only provider that shouts, built from memnet's logic.
local wsp = require "wsp"
local net = require "memnet"          -- examples/memnet.lua, found beside this script

local M = {description = "upper: memnet, but loud"}
for name, fn in pairs(net) do M[name] = fn end

function M.socket(s, af, type, ...)
  if type ~= wsp.SOCK_DGRAM then return nil, wsp.WSAESOCKTNOSUPPORT end
  return net.socket(s, af, type, ...)
end

function M.sendto(s, data, to, flags)
  return net.sendto(s, data:upper(), to, flags)
end

return M
