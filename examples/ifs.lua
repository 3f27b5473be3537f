-- ifs: the smallest IFS base provider.  Its socket handles are its own (on
-- Windows they would be file handles of its kernel driver): `socket` returns
-- one, and lwsp registers it with WPUModifyIFSHandle instead of asking ws2_32
-- for one with WPUCreateSocketHandle.  It opens sockets and answers SO_TYPE;
-- nothing more (the tour's step on IFS and non-IFS handles).
local wsp = require "wsp"

local next_handle = 0x7000           -- handles of its own, as a driver would number them

return {
  description = "ifs: an IFS base provider (lwsp example)",
  ifs = true,
  socket = function(s, af, type)
    if af ~= wsp.AF_INET and af ~= wsp.AF_INET6 then return nil, wsp.WSAEAFNOSUPPORT end
    s.type = type
    next_handle = next_handle + 4
    return next_handle
  end,
  getsockopt = function(s, level, name)
    if level == wsp.SOL_SOCKET and name == wsp.SO_TYPE then return s.type end
    return nil, wsp.WSAENOPROTOOPT
  end,
  closesocket = function() return true end,
}
