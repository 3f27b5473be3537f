-- A provider whose ioctl 0x7200 reports the network event given as
-- "bit,error", and whose other handlers do just enough for the re-enabling
-- calls (recv, send, accept, connect, ioctl) to succeed or would-block.
local wsp = require "wsp"
return {
  socket = function(s) return true end,
  ioctl = function(s, code, input)
    if code == 0x7200 then
      local bit, err = input:match("^(%d+),(%d+)$")
      assert(wsp.event(s, tonumber(bit), tonumber(err)))
      return nil
    end
    return nil
  end,
  recv = function(s, len, flags) return "r", 0 end,
  send = function(s, data, flags)
    if flags == 1 then return nil, wsp.WSAEWOULDBLOCK end
    return #data
  end,
  accept = function(s, ns) return {family = 2, address = "10.0.0.1", port = 1} end,
  connect = function(s) return true end,
}
