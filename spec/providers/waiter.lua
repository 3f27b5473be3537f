-- A provider whose receive waits 50 ms on a key nobody wakes: the wait must
-- time out (spec/26-foreign_host_spec.lua).
local wsp = require "wsp"
return {
  description = "waits, then says how its wait ended",
  socket = function() return true end,
  recv = function(s, len)
    local how = wsp.wait({}, 0.05)
    return tostring(how == true and "woken" or how), 0
  end,
  closesocket = function() return true end,
}
