-- memnet: a base provider written in Lua, an in-process network.
-- Stream and datagram sockets over IPv4 and IPv6 addresses that exist only
-- inside this provider.  Where a real socket would wait, memnet waits
-- (wsp.wait): a blocking call blocks, an overlapped one stays pending, a
-- non-blocking one gets WSAEWOULDBLOCK.  Whatever makes progress wakes the
-- waiters (wsp.wake).
local wsp = require "wsp"
local lwsp = require "lwsp"

local M = {description = "memnet: an in-process network (lwsp example)"}

local bound = {}                          -- "family|address|port" -> socket
local next_port = {[wsp.AF_INET] = 49152, [wsp.AF_INET6] = 49152}
local WILDCARD = {[wsp.AF_INET] = "0.0.0.0", [wsp.AF_INET6] = "::"}

local function key(a) return a.family .. "|" .. a.address .. "|" .. a.port end

local function lookup(a)
  return bound[key(a)] or bound[a.family .. "|" .. WILDCARD[a.family] .. "|" .. a.port]
end

-- The next free port of the ephemeral range (49152-65535), wrapping round
-- to its start as a real stack does.
local function ephemeral(af, address)
  local port = next_port[af]
  for _ = 49152, 65535 do
    if port > 65535 then port = 49152 end
    if not lookup{family = af, address = address, port = port} then
      next_port[af] = port + 1
      return port
    end
    port = port + 1
  end
  error("memnet: every ephemeral port is in use")
end

local function autobind(s)
  if s.addr then return true end
  local address = s.af == wsp.AF_INET and "127.0.0.1" or "::1"
  s.addr = {family = s.af, address = address, port = ephemeral(s.af, address)}
  bound[key(s.addr)] = s
  return true
end

-- Shared sockets (WSPDuplicateSocket): a duplicate is a descriptor of its own
-- (its own table and handle) whose table reads and writes the original's
-- state through a metatable.  `st.descs` holds the live descriptors of a
-- state that was ever duplicated, `st.shares` counts them and the references
-- not yet used; the state closes when the last of them goes.
local SHARED = setmetatable({}, {__mode = "k"})  -- duplicate's table -> the state it shares
local refs, next_ref = {}, 1                     -- dwProviderReserved -> state (used once)

local function core(s) return SHARED[s] or s end

local function queued(s)
  local n = 0
  for _, chunk in ipairs(s.inbox) do n = n + #(chunk.data or chunk) end
  return n
end

-- Network events: lwsp records and delivers them; memnet says when they happen
-- (to every descriptor of a shared socket).
local function event(s, what, err)
  local st = core(s)
  if st.closed then return end
  if st.descs then
    for d in pairs(st.descs) do wsp.event(d, what, err or 0) end
  elseif st.handle then
    wsp.event(st, what, err or 0)
  end
end

-- WSPSocket given a duplicate's protocol info: a new descriptor for the
-- shared state, which hears at once of the conditions that stand.
local function open_duplicate(s, ref)
  local st = refs[ref]
  if not st then return nil, wsp.WSAEINVAL end   -- unknown, or used already
  refs[ref] = nil
  SHARED[s] = st
  setmetatable(s, {__index = st, __newindex = st})
  st.descs[s] = true
  if st.closed then return true end
  if st.type == wsp.SOCK_DGRAM or st.peer then wsp.event(s, wsp.FD_WRITE) end
  if st.inbox[1] then wsp.event(s, wsp.FD_READ) end
  if st.listening and st.pending[1] then wsp.event(s, wsp.FD_ACCEPT) end
  return true
end

function M.socket(s, af, type, protocol, info)
  local ref = info and info.dwProviderReserved or 0
  if ref ~= 0 then return open_duplicate(s, ref) end
  if info and af == wsp.FROM_PROTOCOL_INFO then af = info.iAddressFamily end
  if info and type == wsp.FROM_PROTOCOL_INFO then type = info.iSocketType end
  if af ~= wsp.AF_INET and af ~= wsp.AF_INET6 then return nil, wsp.WSAEAFNOSUPPORT end
  if type ~= wsp.SOCK_STREAM and type ~= wsp.SOCK_DGRAM then return nil, wsp.WSAESOCKTNOSUPPORT end
  s.af, s.type, s.inbox, s.opts = af, type, {}, {[wsp.SO_RCVBUF] = 65536, [wsp.SO_SNDBUF] = 65536}
  s.info = info
  if type == wsp.SOCK_DGRAM then event(s, wsp.FD_WRITE) end
  return true
end

function M.bind(s, addr)
  if addr.family ~= s.af then return nil, wsp.WSAEAFNOSUPPORT end
  if s.addr then return nil, wsp.WSAEINVAL end
  local a = {family = addr.family, address = addr.address, port = addr.port}
  if a.port == 0 then a.port = ephemeral(a.family, a.address) end
  if lookup(a) and not s.opts[wsp.SO_REUSEADDR] then return nil, wsp.WSAEADDRINUSE end
  s.addr = a
  bound[key(a)] = s
  return true
end

function M.listen(s, backlog)
  if s.type ~= wsp.SOCK_STREAM then return nil, wsp.WSAEOPNOTSUPP end
  if not s.addr then return nil, wsp.WSAEINVAL end
  if s.peer then return nil, wsp.WSAEISCONN end
  s.listening, s.backlog, s.pending = true, math.max(backlog, 1), s.pending or {}
  return true
end

function M.connect(s, addr)
  if addr.family ~= s.af then return nil, wsp.WSAEAFNOSUPPORT end
  if s.type == wsp.SOCK_DGRAM then
    autobind(s)
    s.remote = addr
    return true
  end
  if s.listening then return nil, wsp.WSAEINVAL end
  if s.peer then return nil, wsp.WSAEISCONN end
  local l = lookup(addr)
  if not l or not l.listening or l.closed then return nil, wsp.WSAECONNREFUSED end
  if #l.pending >= l.backlog then return nil, wsp.WSAECONNREFUSED end
  autobind(s)
  local half = {inbox = {}, client = s}
  s.peer, s.remote = half, {family = addr.family, address = addr.address, port = addr.port}
  l.pending[#l.pending + 1] = half
  wsp.wake(l)
  event(l, wsp.FD_ACCEPT)
  event(s, wsp.FD_CONNECT)
  event(s, wsp.FD_WRITE)
  return true
end

function M.accept(s, ns, condition)
  if not s.listening then return nil, wsp.WSAEINVAL end
  while not s.pending[1] do
    if s.closed then return nil, wsp.WSAEINTR end
    wsp.wait(core(s))
  end
  local half = table.remove(s.pending, 1)
  local client = half.client
  if condition and condition(client.addr) == wsp.CF_REJECT then
    client.peer_closed, client.reset = true, true
    wsp.wake(client)
    event(client, wsp.FD_CLOSE, wsp.WSAECONNRESET)
    return nil, wsp.WSAECONNREFUSED
  end
  ns.af, ns.type, ns.opts = s.af, s.type, {[wsp.SO_RCVBUF] = 65536, [wsp.SO_SNDBUF] = 65536}
  ns.info = s.info
  ns.inbox, ns.peer, ns.addr, ns.remote = half.inbox, client, s.addr, client.addr
  ns.peer_closed = half.closed
  client.peer = ns
  event(ns, wsp.FD_WRITE)
  if ns.inbox[1] then event(ns, wsp.FD_READ) end
  if half.closed or client.shut_send then event(ns, wsp.FD_CLOSE) end
  if s.pending[1] then event(s, wsp.FD_ACCEPT) end
  return client.addr
end

local function take(s, len, peek)
  local out, n = {}, 0
  while n < len and s.inbox[1] do
    local chunk = s.inbox[1]
    local want = len - n
    if #chunk <= want then
      out[#out + 1] = chunk
      n = n + #chunk
      if not peek then table.remove(s.inbox, 1) else break end
    else
      out[#out + 1] = chunk:sub(1, want)
      if not peek then s.inbox[1] = chunk:sub(want + 1) end
      n = len
    end
  end
  return table.concat(out)
end

function M.send(s, data, flags)
  if s.type == wsp.SOCK_DGRAM then return M.sendto(s, data, nil, flags) end
  if not s.peer then return nil, wsp.WSAENOTCONN end
  if s.shut_send then return nil, wsp.WSAESHUTDOWN end
  if s.reset then return nil, wsp.WSAECONNRESET end
  if s.peer.closed or s.peer.shut_recv then return nil, wsp.WSAECONNRESET end
  if #data > 0 then
    s.peer.inbox[#s.peer.inbox + 1] = data
    wsp.wake(s.peer)
    event(s.peer, wsp.FD_READ)
  end
  return #data
end

function M.recv(s, len, flags)
  if s.type == wsp.SOCK_DGRAM then
    local data, _, f = M.recvfrom(s, len, flags)
    if not data then return nil, _ end
    return data, f
  end
  if s.listening or not s.peer then return nil, wsp.WSAENOTCONN end
  while true do
    if s.shut_recv then return nil, wsp.WSAESHUTDOWN end
    if s.reset then return nil, wsp.WSAECONNRESET end
    if s.inbox[1] then
      local data = take(s, len, flags & wsp.MSG_PEEK ~= 0)
      if s.inbox[1] then event(s, wsp.FD_READ) end
      return data, 0
    end
    if s.peer_closed or s.peer.closed or s.peer.shut_send then return "", 0 end
    wsp.wait(core(s))
  end
end

function M.sendto(s, data, to, flags)
  if s.type == wsp.SOCK_STREAM then return M.send(s, data, flags) end
  if s.shut_send then return nil, wsp.WSAESHUTDOWN end
  to = to or s.remote
  if not to then return nil, wsp.WSAEDESTADDRREQ end
  if to.family ~= s.af then return nil, wsp.WSAEAFNOSUPPORT end
  if #data > 65467 then return nil, wsp.WSAEMSGSIZE end
  autobind(s)
  local target = lookup(to)
  if target and target.type == wsp.SOCK_DGRAM and not target.closed and not target.shut_recv then
    target.inbox[#target.inbox + 1] = {data = data, from = s.addr}
    wsp.wake(target)
    event(target, wsp.FD_READ)
  end
  return #data
end

function M.recvfrom(s, len, flags)
  if s.type == wsp.SOCK_STREAM then
    local data, f = M.recv(s, len, flags)
    if not data then return nil, f end
    return data, s.remote, f
  end
  if not s.addr then return nil, wsp.WSAEINVAL end
  while not s.inbox[1] do
    if s.shut_recv then return nil, wsp.WSAESHUTDOWN end
    wsp.wait(core(s))
  end
  local msg = s.inbox[1]
  if flags & wsp.MSG_PEEK == 0 then table.remove(s.inbox, 1) end
  if s.inbox[1] then event(s, wsp.FD_READ) end
  return msg.data, msg.from, 0
end

function M.shutdown(s, how)
  if s.type == wsp.SOCK_STREAM and not s.peer then return nil, wsp.WSAENOTCONN end
  if how == wsp.SD_RECEIVE or how == wsp.SD_BOTH then s.shut_recv = true end
  if how == wsp.SD_SEND or how == wsp.SD_BOTH then s.shut_send = true end
  wsp.wake(core(s))
  if s.peer then
    wsp.wake(s.peer)
    if s.shut_send then event(s.peer, wsp.FD_CLOSE) end
  end
  return true
end

-- A duplicated socket's descriptor goes alone while another descriptor (or a
-- reference not yet used) shares the socket.
function M.closesocket(s)
  local st = core(s)
  if (st.shares or 1) > 1 then
    st.shares = st.shares - 1
    st.descs[s] = nil
    return true
  end
  s = st
  s.closed = true
  wsp.wake(s)
  if s.addr and bound[key(s.addr)] == s then bound[key(s.addr)] = nil end
  for _, half in ipairs(s.pending or {}) do
    half.client.reset = true
    wsp.wake(half.client)
    event(half.client, wsp.FD_CLOSE, wsp.WSAECONNRESET)
  end
  if s.peer and s.peer.client == s then s.peer.closed = true end
  if s.peer then
    wsp.wake(s.peer)
    event(s.peer, wsp.FD_CLOSE)
  end
  return true
end

-- WSPDuplicateSocket: memnet's network exists only in this process, so the
-- target must be this process; the reference (dwProviderReserved) is used once.
function M.duplicatesocket(s, pid)
  if pid ~= lwsp.process_id() then return nil, wsp.WSAEINVAL end
  local st = core(s)
  if st.closed then return nil, wsp.WSAENOTSOCK end
  local ref = next_ref
  next_ref = next_ref < 0x7fffffff and next_ref + 1 or 1
  refs[ref] = st
  st.descs = st.descs or {[st] = true}
  st.shares = (st.shares or 1) + 1
  -- the socket's own entry (the one its WSPSocket was given), with the reference
  local out = {}
  for k, v in pairs(st.info or {}) do out[k] = v end
  out.dwProviderReserved = ref
  return out
end

function M.getsockname(s)
  if not s.addr then return nil, wsp.WSAEINVAL end
  return s.addr
end

function M.getpeername(s)
  if s.type == wsp.SOCK_STREAM and not s.peer then return nil, wsp.WSAENOTCONN end
  if not s.remote then return nil, wsp.WSAENOTCONN end
  return s.remote
end

function M.getsockopt(s, level, name)
  if level == wsp.SOL_SOCKET then
    if name == wsp.SO_TYPE then return s.type end
    if name == wsp.SO_ERROR then return 0 end
    if name == wsp.SO_ACCEPTCONN then return s.listening == true end
    if name == wsp.SO_PROTOCOL_INFOW then return {} end
    if name == wsp.SO_MAX_MSG_SIZE then return s.type == wsp.SOCK_DGRAM and 65467 or 0 end
  end
  local v = s.opts[name]
  if v == nil then return nil, wsp.WSAENOPROTOOPT end
  return v
end

local SETTABLE = {
  [wsp.SOL_SOCKET] = {[wsp.SO_RCVBUF] = true, [wsp.SO_SNDBUF] = true, [wsp.SO_REUSEADDR] = true,
    [wsp.SO_KEEPALIVE] = true, [wsp.SO_BROADCAST] = true},
  [wsp.IPPROTO_TCP] = {[wsp.TCP_NODELAY] = true},
}

function M.setsockopt(s, level, name, value)
  if not (SETTABLE[level] and SETTABLE[level][name]) then return nil, wsp.WSAENOPROTOOPT end
  if value == nil then return nil, wsp.WSAEFAULT end
  s.opts[name] = value
  return true
end

function M.ioctl(s, code, input)
  if code == wsp.FIONBIO then
    if not input or #input < 4 then return nil, wsp.WSAEFAULT end
    s.nonblocking = wsp.int(input) ~= 0
    return nil
  elseif code == wsp.FIONREAD then
    return queued(s)
  end
  return nil, wsp.WSAEINVAL
end

function M.addresstostring(addr)
  return lwsp.format_address(addr)
end

function M.stringtoaddress(text, af)
  local a = lwsp.parse_address(text, af)
  if not a then return nil, wsp.WSAEINVAL end
  return a
end

return M
