-- swapper: wsp.layered with one handler of its own, an ioctl that moves the
-- socket onto a fresh lower socket bound elsewhere.  The calls it inherits
-- (getsockname among them) must follow s.lh to the new one.
local wsp = require "wsp"
local P = require("wsp.layered").new()
local SWAP = 0x58001234

local ioctl = P.ioctl
function P.ioctl(s, code, input, outlen)
  if code ~= SWAP then return ioctl(s, code, input, outlen) end
  local h = assert(s.low:socket(wsp.AF_INET, wsp.SOCK_STREAM, 0))
  assert(s.low:bind(h, wsp.addr("127.0.0.1", 0)))
  s.low:close(s.lh)
  s.lh = h
  return ""
end
return P
