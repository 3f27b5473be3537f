-- Driver for fuzz_host: turns fuzzer bytes into calls of every function of
-- lwsp.host (and of the objects it gives out: providers, jobs, overlapped
-- structures, their metamethods called by hand) with arbitrary arguments,
-- against memnet.  Argument errors (Lua errors) are expected and ignored;
-- crashes, hangs and sanitizer reports are findings, and so is a broken
-- invariant, which the driver returns as text (fuzz_host.c aborts on it): a
-- spawned call that does not end once its socket is closed, or a host that no
-- longer carries data afterwards.
--
-- Every call ends in bounded time: sockets are made non-blocking (one that
-- cannot be is closed at once), waits get timeouts of at most 20 ms or a bad
-- value the host must refuse, counts are small or bad, and the bench calls
-- that wait for completions run on a fresh connected pair of their own with
-- faults disarmed.
local lwsp = require "lwsp"
local wsp = require "wsp"
local host = require "wsp.host"

local R = host.install_lua{script = FUZZ_ROOT .. "/examples/memnet.lua", entries = {
  {af = wsp.AF_INET, type = wsp.SOCK_STREAM}, {af = wsp.AF_INET, type = wsp.SOCK_DGRAM},
  {af = wsp.AF_INET6, type = wsp.SOCK_STREAM}}}
local BASE = {}
for _, id in ipairs(R.ids) do BASE[id] = true end

local PROBES = {
  "accept:null-addrlen", "accept:short-addrlen", "bind:null", "bind:short", "bind:null-errno", "connect:null",
  "getsockname:null", "getsockname:null-len", "getsockname:ok", "getsockname:short", "getpeername:null",
  "getsockopt:null-optval", "getsockopt:null-optlen", "getsockopt:short", "setsockopt:null-optval",
  "setsockopt:negative", "recv:null-flags", "recv:null-buf", "recv:null-bufs", "recv:null-count",
  "recvfrom:null-fromlen", "recvfrom:short-fromlen", "send:null-buf", "send:null-bufs", "send:null-sent",
  "sendto:short-to", "select:all-null", "select:negative-timeout", "select:too-many", "ioctl:null-returned",
  "ioctl:null-in", "enumnetworkevents:null", "duplicatesocket:null", "getoverlappedresult:null",
  "getoverlappedresult:pending", "getqosbyname:null", "addresstostring:null", "addresstostring:short",
  "stringtoaddress:null", "stringtoaddress:short", "socket:null-info", "shutdown:bad-how", "no-such-probe"}
local POINTS = {
  "WPUCreateSocketHandle", "WPUQuerySocketHandleContext", "WPUModifyIFSHandle", "WPUCreateEvent", "WPUSetEvent",
  "WPUResetEvent", "WPUCloseEvent", "WPUPostMessage", "WPUQueueApc", "WPUOpenCurrentThread",
  "WPUCompleteOverlappedRequest", "lower.send", "lower.recv", "nope", "WSPSend"}
local MODES = {"event", "routine", "port"}
local OV_FIELDS = {"Internal", "InternalHigh", "Offset", "OffsetHigh", "hEvent", "address", "data", "from", "pending", "x"}
-- values every timeout, count and size must refuse
local BAD = {-1, -5, math.mininteger, math.maxinteger, 0x80000000, 1 << 40, 0 / 0, 1 / 0, -1 / 0, 1.5, "x", {}, true}

return function(bytes)
  local pos = 1
  local handles, objects, ovs, jobs, provs, installed = {}, {}, {}, {}, {}, {}
  local function byte()
    local b = bytes:byte(pos) or 0
    pos = pos + 1
    return b
  end
  local function pick(t) return t[byte() % #t + 1] end
  -- an integer: a handle or object made earlier, a small number, an edge
  -- value, or any 32-bit one
  local function int()
    local k = byte()
    if k < 90 and #handles > 0 then return handles[k % #handles + 1] end
    if k < 120 and #objects > 0 then return objects[k % #objects + 1] end
    if k < 200 then return k - 150 end
    if k < 215 then
      return pick{math.mininteger, math.maxinteger, -1, 0x7fffffff, 0x80000000, 0xffffffff, 0x100000000, -0x80000000,
                  64 * 1024 * 1024 + 1, 1 << 40}
    end
    local v = 0
    for _ = 1, 4 do v = v * 256 + byte() end
    return v - 0x80000000
  end
  local function str()
    local n = byte() % 40
    local s = bytes:sub(pos, pos + n - 1)
    pos = pos + n
    return s
  end
  local function ov() return #ovs > 0 and ovs[byte() % #ovs + 1] or nil end
  local function arg()
    local t = byte() % 13
    if t <= 2 then return int()
    elseif t == 3 then return str()
    elseif t == 4 then
      return {family = byte() % 2 == 0 and wsp.AF_INET or wsp.AF_INET6, address = byte() % 2 == 0 and "127.0.0.1" or "::1",
              port = byte() * 256 + byte()}
    elseif t == 5 then return ("127.0.0.1:%d"):format(byte())
    elseif t == 6 then return ov()
    elseif t == 7 then return byte() % 2 == 0
    elseif t == 8 then return pick{0 / 0, 1 / 0, -1 / 0, 1.5, -0.5, 2 ^ 53, 1e300}
    elseif t == 9 then return #jobs > 0 and jobs[byte() % #jobs + 1] or {}
    elseif t == 10 then return {flags = int(), routine = byte() % 2 == 0, from = byte() % 2 == 0}
    elseif t == 11 then return {int(), int(), int()}
    end
    return nil
  end
  local function args(n)
    local a = {}
    for i = 1, n do a[i] = arg() end
    return a
  end
  -- a timeout, count or size: small and valid, or one the host must refuse
  local function small(max) if byte() % 5 == 0 then return pick(BAD) end return byte() % (max + 1) end
  local function opt_small(max) if byte() % 4 == 0 then return nil end return small(max) end
  local function track(s)
    if math.type(s) ~= "integer" then return end
    local ok, r = pcall(host.ioctl, s, wsp.FIONBIO, 1)
    if ok and r then
      handles[#handles + 1] = s
    else
      pcall(host.close, s)   -- a socket that might block is not kept
    end
  end
  local function call(f, ...) return pcall(f, ...) end
  local function obj(o) if math.type(o) == "integer" then objects[#objects + 1] = o end end
  -- A connected TCP pair over memnet, kept out of the handles the input reaches.
  local function pair()
    local l, why = host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, R.tcp)
    if not l then return nil, why end
    local c = host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, R.tcp)
    local ok = c and host.bind(l, "127.0.0.1:0") and host.listen(l, 4) and host.connect(c, host.getsockname(l))
    local a = ok and host.accept(l)
    host.close(l)
    if not a then if c then host.close(c) end return nil end
    return c, a
  end

  local C = {}
  -- sockets
  function C.socket()
    local a = args(4)
    local ok, s = call(host.socket, a[1], a[2], a[3], a[4], pick{R.tcp, R.udp, R.ids[3], int()})
    if ok then track(s) end
  end
  function C.socket_ok()
    local ok, s = call(host.socket, pick{wsp.AF_INET, wsp.AF_INET6}, pick{wsp.SOCK_STREAM, wsp.SOCK_DGRAM}, 0)
    if ok then track(s) end
  end
  function C.accept() local a = args(3); local ok, s = call(host.accept, int(), a[2], a[3]); if ok then track(s) end end
  function C.join_leaf() local a = args(3); local ok, s = call(host.join_leaf, int(), a[2], a[3]); if ok then track(s) end end
  for _, name in ipairs{"close", "bind", "listen", "connect", "send", "sendto", "recv", "recvfrom", "shutdown",
                        "getsockname", "getpeername", "getsockopt", "setsockopt", "duplicate_socket", "event_select",
                        "enum_network_events", "async_select", "get_qos_by_name", "send_disconnect",
                        "recv_disconnect", "socket_info", "get_overlapped_result"} do
    C[name] = function()
      local a = args(5)
      a[1] = int()
      if name == "get_overlapped_result" then
        a[2] = ov() or a[2]
        -- waiting on a pending receive could wait for ever (that is no finding)
        local ok, pending = pcall(function() return a[2].pending end)
        a[3] = a[3] and not (ok and pending)
      end
      call(host[name], table.unpack(a, 1, 5))
    end
  end
  function C.ioctl()
    local a = args(4)
    local code = pick{wsp.FIONREAD, wsp.SIOCATMARK, wsp.FIONBIO, int()}
    if code == wsp.FIONBIO then a[3] = 1 end
    call(host.ioctl, int(), code, a[3], a[4])
  end
  function C.select()
    local a = args(3)
    call(host.select, a[1], a[2], a[3], pick{0, 0.001, -1, 0 / 0, 1 / 0, 1e300, "x"})
  end
  function C.address_to_string() local a = args(2); call(host.address_to_string, a[1], a[2]) end
  function C.string_to_address() local a = args(3); call(host.string_to_address, a[1], a[2], a[3]) end
  function C.cancel_blocking_call() call(host.cancel_blocking_call, pick{nil, R.tcp, int()}) end
  function C.last_condition() call(host.last_condition) end
  -- overlapped
  function C.overlapped() local ok, o = call(host.overlapped, pick{nil, int()}); if ok and o then ovs[#ovs + 1] = o end end
  function C.wsasend()
    local o = ov()
    call(host.wsasend, int(), str(), o or arg(), byte() % 2 == 0 and {flags = small(3), routine = byte() % 2 == 0,
         to = byte() % 2 == 0 and "127.0.0.1:9" or nil} or arg())
  end
  function C.wsarecv()
    call(host.wsarecv, int(), small(100), ov() or arg(),
         byte() % 2 == 0 and {flags = small(3), routine = byte() % 2 == 0, from = byte() % 2 == 0} or arg())
  end
  function C.wsaioctl()
    call(host.wsaioctl, int(), pick{wsp.FIONREAD, wsp.FIONBIO, int()}, pick{nil, "\1\0\0\0", str()}, small(16),
         ov() or arg(), byte() % 2 == 0 and {routine = true} or nil)
  end
  function C.ov_field()
    local o = ov()
    if not o then return end
    local k = pick(OV_FIELDS)
    if byte() % 2 == 0 then call(function() return o[k] end) else call(function() o[k] = arg() end) end
  end
  function C.ov_meta()
    local o = ov()
    if o then call(getmetatable(o)[pick{"__gc", "__close", "__index", "__newindex"}], o, arg(), arg()) end
  end
  function C.completions() call(host.completions) end
  -- threads
  function C.spawn()
    local op = pick{"recv", "send", "accept", "connect", "sleep", "nope", 7}
    local a
    if op == "sleep" then a = {small(3), arg()}
    elseif op == "recv" then a = {int(), pick{small(64), int()}, byte() % 2 == 0 and {cancel_after = small(3), count_hook = true} or arg()}
    else a = {int(), arg(), arg()} end
    local ok, j = call(host.spawn, op, a[1], a[2], a[3])
    if ok and j then jobs[#jobs + 1] = j end
  end
  function C.job()
    if #jobs == 0 then return end
    local j = jobs[byte() % #jobs + 1]
    local what = byte() % 5
    if what == 0 then
      local ok, s = call(j.join, j, small(3))
      if ok then track(s) end
    elseif what == 1 then call(j.info, j)
    else call(getmetatable(j)[pick{"__gc", "__close", "__index"}], j, arg()) end
  end
  function C.thread() call(pick{host.thread_id, host.thread_refs, host.blocking_hook}, byte() % 2 == 0) end
  -- objects
  function C.create_event() local ok, e = call(host.create_event); if ok then obj(e) end end
  function C.window() local ok, w = call(host.window); if ok then obj(w) end end
  function C.port() local ok, p = call(host.port); if ok then obj(p) end end
  for _, name in ipairs{"set_event", "reset_event", "close_event", "event_state", "object_type", "close_object"} do
    C[name] = function() call(host[name], byte() % 4 == 0 and arg() or int()) end
  end
  function C.associate() call(host.associate, int(), int(), arg()) end
  function C.post() call(host.post, int(), pick{small(100), int()}, int(), arg()) end
  function C.dequeue() call(host.dequeue, int(), small(3)) end
  function C.messages() call(host.messages, int(), opt_small(3)) end
  function C.wait()
    local evs = {}
    for i = 1, byte() % 4 do evs[i] = int() end
    call(host.wait, byte() % 8 == 0 and arg() or evs, byte() % 2 == 0, small(3), byte() % 2 == 0)
  end
  function C.sleep() call(host.sleep, small(3), byte() % 2 == 0) end
  -- catalog and providers
  function C.install()
    local info = host.protocol_info{guid = pick{R.guid, lwsp.guid(), "{" .. str() .. "}"}, af = pick{wsp.AF_INET, int()},
                                    type = pick{wsp.SOCK_STREAM, wsp.SOCK_DGRAM, int()}}
    local kind = pick{"base", "layer", "chain", "nope"}
    if kind == "chain" then info.ProtocolChain = {int(), int(), int()} end
    local ok, id = call(host.install, info, pick{lwsp.path(), "/nonexistent/lwsp.so", str()}, kind)
    if ok and math.type(id) == "integer" then installed[#installed + 1] = id end
  end
  function C.remove()
    local id = #installed > 0 and byte() % 2 == 0 and installed[byte() % #installed + 1] or int()
    if not BASE[id] then call(host.remove, id) end
  end
  function C.order()
    local ids = {}
    for i, e in ipairs(host.catalog()) do ids[i] = e.dwCatalogEntryId end
    if byte() % 2 == 0 and #ids > 1 then local i, k = byte() % #ids + 1, byte() % #ids + 1; ids[i], ids[k] = ids[k], ids[i]
    else ids[#ids + 1] = pick{int(), ids[1], "x", 1.5} end
    call(host.order, ids)
  end
  function C.catalog() call(host.catalog) end
  function C.load() call(host.load, pick{R.tcp, int()}) end
  function C.startup()
    local ok, p = call(host.startup, pick{R.tcp, R.udp, int()})
    if ok and p then provs[#provs + 1] = p end
  end
  function C.provider()
    if #provs == 0 then return end
    local p = provs[byte() % #provs + 1]
    call(pick{p.data, p.cleanup, getmetatable(p).__gc, getmetatable(p).__close}, p)
  end
  function C.cleanup() if byte() % 4 == 0 then call(host.cleanup) end end
  function C.raw_startup() call(host.raw_startup, pick{R.tcp, int()}, pick{0x0202, 0x0101, 0x0303, int()},
                                pick{nil, "null-data", "null-info", "null-upcall", "nope"}) end
  function C.probe() call(host.probe, pick(PROBES), int(), pick{nil, R.tcp, int()}) end
  -- faults
  function C.inject()
    if byte() % 3 == 0 then call(host.inject) return end
    local o = {every = pick{nil, small(5)}, probability = pick{nil, byte() / 255, 2, -1, 0 / 0}, count = pick{nil, small(3)},
               error = pick{nil, wsp.WSAENOBUFS, wsp.WSAENETDOWN, 0, -1, int()}, seed = pick{nil, byte(), 1.5}}
    call(host.inject, pick(POINTS), byte() % 8 == 0 and arg() or o)
  end
  function C.injected() call(host.injected) end
  -- bench calls: with bad arguments on any handle (refused before any wait),
  -- and with good ones on a fresh pair
  function C.bench_calls() call(host.bench_calls, int(), pick{"getsockopt", "send64", "nope"}, small(32)) end
  function C.bench_bad()
    local name = pick{"bench_stream", "bench_overlapped", "bench_overlapped_stream"}
    local a = {int(), int(), pick(BAD), pick(BAD), pick(BAD), pick(BAD)}
    if name ~= "bench_stream" then a[3] = pick{"nope", 3, pick(MODES)} end
    if name == "bench_overlapped" then a[3] = "nope" end
    call(host[name], table.unpack(a, 1, 6))
  end
  function C.bench_pair()
    local name = pick{"bench_stream", "bench_overlapped", "bench_overlapped_stream", "bench_calls"}
    call(host.inject)
    local c, a = pair()
    if not c then return end
    if name == "bench_stream" then call(host.bench_stream, c, a, byte() * 16, byte() % 64 + 1, pick{nil, -1, 0})
    elseif name == "bench_overlapped" then call(host.bench_overlapped, a, c, pick(MODES), byte() % 8)
    elseif name == "bench_overlapped_stream" then
      call(host.bench_overlapped_stream, a, c, pick(MODES), byte() * 8, byte() % 8 + 1, pick{nil, byte() % 256 + 1})
    else call(host.bench_calls, c, pick{"getsockopt", "send64"}, byte() % 16) end
    host.close(c); host.close(a)
  end
  function C.bench_other()
    call(pick{host.bench_heap, host.bench_instance, host.bench_collect}, pick{R.guid, str(), lwsp.guid()})
  end

  local names = {}
  for k in pairs(C) do names[#names + 1] = k end
  table.sort(names)
  while pos <= #bytes do C[names[byte() % #names + 1]]() end

  -- the end of an input: everything given back, and the host still works
  host.inject()
  host.blocking_hook(false)
  for _, h in ipairs(handles) do pcall(host.close, h) end
  for _, o in ipairs(objects) do pcall(host.close_object, o); pcall(host.close_event, o) end
  for _, j in ipairs(jobs) do
    local ok, r, why = pcall(j.join, j, 5000)
    if ok and r == nil and why == "timeout" then return "a spawned call did not end after its socket was closed" end
    if ok and math.type(r) == "integer" then pcall(host.close, r) end
  end
  for _, p in ipairs(provs) do pcall(p.cleanup, p) end
  for _, id in ipairs(installed) do pcall(host.remove, id) end
  host.completions()
  local c, a = pair()
  if not c then return "no connected pair over memnet after the input: " .. tostring(a) end
  local sent = host.send(c, "ping")
  local data = host.recv(a, 16)
  host.close(c); host.close(a)
  if sent ~= 4 or data ~= "ping" then return ("the host no longer carries data: sent %s, received %s"):format(tostring(sent), tostring(data)) end
  return nil
end
