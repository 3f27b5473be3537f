--- wsp.layered: a layered provider that passes everything to the layer below.
-- `layered.new()` returns a complete handler table; a provider overrides only
-- what it cares about and calls the saved base handler for the rest:
--
--     local P = require("wsp.layered").new()
--     local send = P.send
--     function P.send(s, data, flags) return send(s, data:upper(), flags) end
--     return P
--
-- Every socket table gets `s.low` (the lower layer, see `lwsp.lower`) and
-- `s.lh` (the lower socket).  Lower sockets are non-blocking; a call that
-- would block waits (wsp.wait) for the lower socket, so the application's
-- blocking, non-blocking and overlapped calls keep their meaning.  Network
-- events come from the lower sockets' readiness; SO_PROTOCOL_INFOW reports
-- the layered entry.
-- @module wsp.layered
local wsp = require "wsp"
local lwsp = require "lwsp"

local layered = {}

local WOULDBLOCK = wsp.WSAEWOULDBLOCK
local SOL_SOCKET, SO_PROTOCOL_INFOW = wsp.SOL_SOCKET, wsp.SO_PROTOCOL_INFOW
local wait = wsp.wait
local may_wait = wsp.may_wait or function() return false end
-- the lower layer's methods, called as functions on the hot paths (no lookup
-- through the userdata's metatable on every call); nil outside a provider
local LM = lwsp.lower_methods or {}
local low_send, low_recv, low_getsockopt, low_wait = LM.send, LM.recv, LM.getsockopt, LM.wait

--- Calls `low[method](low, h, ...)` until it does not would-block, waiting for
-- the lower socket between tries.  (The lower methods return at most three
-- values: a result and up to two more, or nil, message, code.)
function layered.retry(low, h, dir, method, ...)
  local f = low[method]
  while true do
    local a, b, c = f(low, h, ...)
    if a ~= nil or c ~= WOULDBLOCK then return a, b, c end
    wait(low:wait(h, dir))
  end
end
local retry = layered.retry

local function code(ok, _, c) if ok == nil then return nil, c end return ok end

local function ext_results(a, b, c, ...)
  if a == nil then return nil, c end
  return a, b, c, ...
end

--- Waits for an extension call started below (`low:connectex`, `low:acceptex`,
-- `low:disconnectex`, `low:wsarecvmsg` return an operation) and returns its
-- results: ConnectEx the bytes sent, AcceptEx `data, local, remote`,
-- DisconnectEx `true`, WSARecvMsg `data, from, control, flags`; or `nil, code`.
function layered.ext_wait(op, _, c)
  if not op then return nil, c end
  while not op:done() do wait(op) end
  return ext_results(op:result())
end

--- A handler table that behaves exactly like the layer below.
-- @treturn table handlers (each also kept in `handlers.base`)
function layered.new()
  local M = {description = "lwsp layered provider"}

  -- A protocol info with dwProviderReserved set comes from a duplicate
  -- (M.duplicatesocket below): the lower socket is opened from the lower
  -- layer's duplicate, whose reference the field carries.
  function M.socket(s, af, type, protocol, info, group, flags)
    local low, _, c = lwsp.lower(info)
    if not low then return nil, c end
    local ref = info.dwProviderReserved or 0
    local h, _, c2 = low:socket(af, type, protocol, flags, ref ~= 0 and {dwProviderReserved = ref} or nil)
    if not h then return nil, c2 end
    s.low, s.lh, s.info = low, h, info
    local listening = false
    if ref ~= 0 then
      local raw = low:getsockopt(h, SOL_SOCKET, wsp.SO_ACCEPTCONN)
      listening = raw ~= nil and #raw >= 4 and wsp.int(raw) ~= 0
    end
    low:watch(h, s, listening)
    return true
  end

  -- WSPDuplicateSocket, as Microsoft's LSP sample does it: the lower layer
  -- duplicates its socket, and the application gets this layer's own entry
  -- with the lower layer's reference in dwProviderReserved.
  function M.duplicatesocket(s, pid)
    local low_info, _, c = s.low:duplicate(s.lh, pid)
    if not low_info then return nil, c end
    local out = {}
    for k, v in pairs(s.info or {}) do out[k] = v end
    out.dwProviderReserved = low_info.dwProviderReserved
    return out
  end

  function M.bind(s, addr) return code(s.low:bind(s.lh, addr)) end

  function M.listen(s, backlog)
    local ok, _, c = s.low:listen(s.lh, backlog)
    if not ok then return nil, c end
    s.low:watch(s.lh, s, true)
    return true
  end

  function M.connect(s, addr)
    local ok, _, c = s.low:connect(s.lh, addr)
    if ok then
      -- connected at once (memnet does): an application that selected
      -- FD_CONNECT still hears of it, as from a connect that took time
      local mask = wsp.selected and wsp.selected(s)
      if mask and mask & wsp.FD_CONNECT ~= 0 then wsp.event(s, wsp.FD_CONNECT) end
      return true
    end
    if c ~= WOULDBLOCK then return nil, c end
    s.low:watch(s.lh, s, false, true)
    wsp.wait(s.low:wait(s.lh, "w"))
    local raw = s.low:getsockopt(s.lh, wsp.SOL_SOCKET, wsp.SO_ERROR)
    local e = raw and wsp.int(raw) or wsp.WSAENOTCONN
    if e ~= 0 then return nil, e end
    return true
  end

  function M.accept(s, ns)
    local h, addr_or_msg, c = retry(s.low, s.lh, "r", "accept")
    if not h then return nil, c end
    ns.low, ns.lh, ns.info = s.low, h, s.info
    s.low:watch(h, ns)
    return addr_or_msg
  end

  -- A blocking or overlapped send goes down whole, as Winsock's do; a
  -- non-blocking one sends what the layer below takes at once.
  function M.send(s, data, flags)
    local low, h = s.low, s.lh
    local sent = 0
    while true do
      local n, left, c = low_send(low, h, data, flags)
      if n then
        sent = sent + n
        if left == 0 or not may_wait() then return sent end
        data = type(data) == "string" and data:sub(n + 1) or data:tostring(n + 1)
      elseif c ~= WOULDBLOCK then
        if sent > 0 then return sent end   -- the error shows on the next call
        return nil, c
      else
        wait(low_wait(low, h, "w"))
      end
    end
  end

  function M.sendto(s, data, to, flags)
    return code(retry(s.low, s.lh, "w", "send", data, flags, to))
  end

  function M.recv(s, len, flags)       -- len: a length, or a view (views = true)
    local low, h = s.low, s.lh
    while true do
      local data, f, c = low_recv(low, h, len, flags)
      if data ~= nil then return data, f end
      if c ~= WOULDBLOCK then return nil, c end
      wait(low_wait(low, h, "r"))
    end
  end

  function M.recvfrom(s, len, flags)
    local data, f, from = retry(s.low, s.lh, "r", "recv", len, flags, true)
    if data == nil then return nil, from end
    return data, from, f
  end

  function M.shutdown(s, how) return code(s.low:shutdown(s.lh, how)) end
  function M.closesocket(s) return code(s.low:close(s.lh)) end
  function M.getsockname(s) return code(s.low:getsockname(s.lh)) end
  function M.getpeername(s) return code(s.low:getpeername(s.lh)) end

  function M.getsockopt(s, level, name, optlen)
    if name == SO_PROTOCOL_INFOW and level == SOL_SOCKET then return {} end  -- the layered entry
    local v, _, c = low_getsockopt(s.low, s.lh, level, name, optlen)
    if v == nil then return nil, c end
    return v
  end

  function M.setsockopt(s, level, name, value, raw)
    return code(s.low:setsockopt(s.lh, level, name, raw))
  end

  function M.ioctl(s, code_, input, outlen)
    if code_ == wsp.FIONBIO then return nil end         -- lwsp keeps the application's mode
    local out, _, c = s.low:ioctl(s.lh, code_, input, outlen)
    if out == nil then return nil, c end
    return out
  end

  function M.select(r, w, e, timeout)
    local low = nil
    local function map(set)
      if not set then return nil end
      local out = {}
      for i, s in ipairs(set) do
        low = low or s.low
        out[i] = s.lh
      end
      return out
    end
    local lr, lw, le = map(r), map(w), map(e)
    if not low then return {}, {}, {} end
    local n, rr, rw, re = low:select(lr, lw, le, timeout)
    if not n then return nil, re end
    -- back to the application's sockets as Microsoft's non-IFS sample does:
    -- each socket of the application's set, in order, is ready when ws2_32's
    -- WPUFDIsSet finds its lower socket in the set the layer below returned,
    -- until the n ready ones are found
    local fd_isset = wsp.upcall.fd_isset
    local function back(set, ready)
      local out = {}
      for _, s in ipairs(set or {}) do
        if n == 0 then break end
        if fd_isset(s.lh, ready) then out[#out + 1] = s; n = n - 1 end
      end
      return out
    end
    return back(r, rr), back(w, rw), back(e, re)
  end

  function M.addresstostring(addr) return lwsp.format_address(addr) end

  function M.stringtoaddress(text, af)
    local a = lwsp.parse_address(text, af)
    if not a then return nil, wsp.WSAEINVAL end
    return a
  end

  -- Extension functions (docs/api.md, "Extension functions"): the layer
  -- below's own, started on the lower socket; the handler waits for it.
  -- Left as they are, lwsp makes these calls down in C without Lua.
  function M.connectex(s, addr, data) return layered.ext_wait(s.low:connectex(s.lh, addr, data)) end
  function M.acceptex(s, ns, len) return layered.ext_wait(s.low:acceptex(s.lh, ns.lh, len)) end
  function M.disconnectex(s, flags) return layered.ext_wait(s.low:disconnectex(s.lh, flags)) end
  function M.wsarecvmsg(s, len, control, flags)
    return layered.ext_wait(s.low:wsarecvmsg(s.lh, len, control, flags))
  end

  M.base = {}
  for k, v in pairs(M) do if type(v) == "function" then M.base[k] = v end end
  -- a call whose handler stays one of these is made down by lwsp in C,
  -- exactly as the handler would make it (see docs/api.md, "Inherited calls")
  if lwsp.inherited then
    for _, k in ipairs{"getsockopt", "setsockopt", "send", "recv", "getsockname", "getpeername", "sendto", "recvfrom",
                       "connectex", "acceptex", "disconnectex", "wsarecvmsg"} do
      lwsp.inherited(M[k], k)
    end
  end
  return M
end

return layered
