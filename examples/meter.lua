-- meter: counts bytes and calls per connection and reports them when the
-- socket closes ("meter: 127.0.0.1:5000 -> 127.0.0.1:80 sent 78 B in 1 call(s), ...").
local wsp = require "wsp"
local P = require("wsp.layered").new()
P.description = "meter (lwsp example)"
local base = P.base

local function count(s, dir, n)
  local m = s.meter
  if not m then
    -- the peer is read at the first byte: once the connection has closed, the
    -- layer below may no longer know it
    m = {sent = 0, sends = 0, received = 0, recvs = 0, there = s.low:getpeername(s.lh)}
    s.meter = m
  end
  if dir == "out" then m.sent, m.sends = m.sent + n, m.sends + 1
  else m.received, m.recvs = m.received + n, m.recvs + 1 end
end

local function counted(name, dir, sizeof)
  P[name] = function(s, ...)
    local r = table.pack(base[name](s, ...))
    if r[1] ~= nil then count(s, dir, sizeof(r)) end
    return table.unpack(r, 1, r.n)
  end
end
counted("send", "out", function(r) return r[1] end)
counted("sendto", "out", function(r) return r[1] end)
counted("recv", "in", function(r) return #r[1] end)
counted("recvfrom", "in", function(r) return #r[1] end)

-- ConnectEx's data goes out on the connecting socket; AcceptEx's comes in
-- on the accepted one (its handler's `ns`), which the call makes the connection
function P.connectex(s, addr, data)
  local n, c = base.connectex(s, addr, data)
  if n and n > 0 then count(s, "out", n) end
  return n, c
end
function P.acceptex(s, ns, len)
  local data, loc, rem = base.acceptex(s, ns, len)
  if data and #data > 0 then count(ns, "in", #data) end
  return data, loc, rem
end

function P.closesocket(s)
  local m = s.meter
  if m then
    local here = s.low:getsockname(s.lh)
    local there = m.there or s.low:getpeername(s.lh)
    wsp.log(("%s -> %s sent %d B in %d call(s), received %d B in %d call(s)"):format(
      here and wsp.format_address(here) or "?", there and wsp.format_address(there) or "?",
      m.sent, m.sends, m.received, m.recvs), "meter")
  end
  return base.closesocket(s)
end

return P
