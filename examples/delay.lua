-- delay: a layer that holds each connect back by wsp.config.delay seconds
-- (default 0.05) and counts the bytes it passes; shows how a layer delays a
-- call of every kind correctly:
--   blocking or overlapped: wait in the handler (wsp.wait with a timeout);
--     the calling thread waits with the lock released, or the overlapped
--     call is pending (WSA_IO_PENDING) and completes later by its mechanism;
--   non-blocking: answer WSAEWOULDBLOCK at once (never wait: wsp.wait would
--     end the call), start the real work later (wsp.after), and let the
--     outcome arrive as the network event Winsock promises (FD_CONNECT).
local wsp = require "wsp"
local P = require("wsp.layered").new()
P.description = "delay (lwsp example)"
local base = P.base
local delay = wsp.config.delay or 0.05
local recv_delay = wsp.config.recv_delay or 0

function P.connect(s, addr)
  wsp.log(("holding connect to %s for %g s"):format(wsp.format_address(addr), delay))
  if wsp.may_wait() then
    wsp.wait({}, delay)                  -- a key nobody wakes: only the timeout ends the wait
    return base.connect(s, addr)
  end
  wsp.after(delay, function()
    local ok, _, code = s.low:connect(s.lh, addr)
    if ok then                           -- connected at once: say so
      wsp.event(s, wsp.FD_CONNECT)
      wsp.event(s, wsp.FD_WRITE)
      s.low:watch(s.lh, s)
    elseif code == wsp.WSAEWOULDBLOCK then
      s.low:watch(s.lh, s, false, true)  -- FD_CONNECT comes from the lower socket
    else
      wsp.event(s, wsp.FD_CONNECT, code) -- refused: FD_CONNECT carries the error
    end
  end)
  return nil, wsp.WSAEWOULDBLOCK
end

function P.send(s, data, flags)
  local n, err = base.send(s, data, flags)
  if n then s.sent = (s.sent or 0) + n end
  return n, err
end

-- An overlapped (or blocking) receive may be held back the same way; a
-- non-blocking one is not, as nothing would tell the application when to retry.
function P.recv(s, len, flags)
  if recv_delay > 0 and wsp.may_wait() then wsp.wait({}, recv_delay) end
  local data, f = base.recv(s, len, flags)
  if data then s.received = (s.received or 0) + (type(data) == "string" and #data or data) end
  return data, f
end

function P.closesocket(s)
  wsp.log(("sent %d B, received %d B"):format(s.sent or 0, s.received or 0))
  return base.closesocket(s)
end

return P
