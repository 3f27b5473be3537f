-- Layered Lua providers over the native base provider, carrying real
-- traffic over loopback: HTTP from a real server, bulk echo, UDP, IPv6,
-- refused and reset connections, events and overlapped I/O through layers.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host
local util = require "wsp.util"

local native, one, two

local function setup()
  native = host.install_native()
  one = host.install_layered{script = H.root .. "/examples/passthrough.lua", over = native, name = "inner"}
  two = host.install_layered{script = H.root .. "/examples/passthrough.lua", over = one, name = "outer"}
end

local function teardown()
  host.cleanup()
  for _, r in ipairs{two, one, native} do host.uninstall_lua(r) end
end

-- A listener on the native base (a plain server) and a connected pair whose
-- client side uses the catalog entry under test.
local function pair(client_catalog, af)
  af = af or wsp.AF_INET
  local any = af == wsp.AF_INET and "127.0.0.1:0" or "[::1]:0"
  local l = assert(host.socket(af, wsp.SOCK_STREAM, 0, 0, af == wsp.AF_INET and native.tcp or native.tcp6))
  assert(host.bind(l, any))
  assert(host.listen(l, 16))
  local c = assert(host.socket(af, wsp.SOCK_STREAM, 0, 0, client_catalog))
  assert(host.connect(c, host.getsockname(l)))
  local a = assert(host.accept(l))
  return c, a, l
end

local function recv_all(s, n)
  local parts, got = {}, 0
  while got < n do
    local data = assert(host.recv(s, 65536))
    if data == "" then break end
    parts[#parts + 1] = data
    got = got + #data
  end
  return table.concat(parts)
end

local recv_within = H.recv_within

describe("layered providers over the native base", function()
  before_each(setup)
  after_each(teardown)

  it("make the calls a layer inherits down in C, without entering Lua, and follow s.lh when a handler moves it", function()
    local c, a = pair(one.tcp)
    local runs = host.bench_instance(one.guid).lua_runs
    for i = 1, 20 do
      local msg = ("ping %02d"):format(i)
      assert.equal(#msg, host.send(c, msg))
      assert.equal(msg, recv_all(a, #msg))
      assert.same(host.getpeername(a), host.getsockname(c))
      assert.same(host.getsockname(a), host.getpeername(c))
      assert.is_true(host.setsockopt(c, wsp.SOL_SOCKET, wsp.SO_KEEPALIVE, 1))
      assert.equal(1, wsp.int(assert(host.getsockopt(c, wsp.SOL_SOCKET, wsp.SO_KEEPALIVE))))
    end
    -- send, getsockname, getpeername, setsockopt and getsockopt: not one entry into Lua
    assert.equal(runs, host.bench_instance(one.guid).lua_runs)
    -- the layered entry's own answer still comes from wsp.layered's handler
    local pi = assert(host.getsockopt(c, wsp.SOL_SOCKET, wsp.SO_PROTOCOL_INFOW, 628))
    assert.equal(one.tcp, string.unpack("<I4", pi, 37))
    assert.is_true(host.bench_instance(one.guid).lua_runs > runs)
    -- a receive with nothing to read falls back to the handler, which waits
    local job = host.spawn("recv", c, 10)
    assert.same({nil, "timeout"}, {job:join(50)})
    host.send(a, "late")
    assert.equal("late", job:join(5000))
    -- a handler that moves the socket onto another lower socket: the next
    -- inherited call reads the socket table again
    local sw = host.install_layered{script = H.root .. "/spec/providers/swapper.lua", over = native, name = "swapper"}
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, sw.tcp))
    assert(host.bind(s, "127.0.0.1:0"))
    local before = host.getsockname(s)
    assert.same(before, host.getsockname(s))
    assert.equal("", host.ioctl(s, 0x58001234, nil, 0))
    local after = host.getsockname(s)
    assert.is_true(after.port ~= 0 and after.port ~= before.port)
    host.close(s)
    host.uninstall_lua(sw)
  end)

  it("fetch a page from a real HTTP server identically through one and two Lua layers #subprocess", function()
    local dir = H.tmp .. "/www"
    H.mkdir(dir)
    local page = {}
    for i = 1, 50000 do page[i] = ("%05d:"):format(i) end
    assert(io.open(dir .. "/page.txt", "w")):write(table.concat(page)):close()
    local srv = util.http_server(dir)
    local addr = wsp.addr("127.0.0.1", srv.port)
    local ok, err = pcall(function()
      local direct = assert(util.http_get(host, wsp, native.tcp, addr, "/page.txt"))
      assert.equal(300000, #direct)
      assert.equal(direct, (util.http_get(host, wsp, one.tcp, addr, "/page.txt")))
      assert.equal(direct, (util.http_get(host, wsp, two.tcp, addr, "/page.txt")))
    end)
    srv.stop()
    assert(ok, err)
  end)

  it("echo megabytes both ways, byte for byte, through two layers", function()
    local c, a = pair(two.tcp)
    local chunk = {}
    for i = 0, 65535 do chunk[#chunk + 1] = string.char((i * 7 + 3) % 256) end
    local data = table.concat(chunk):rep(48)     -- 3 MiB
    local up = host.spawn("send", c, data)
    assert.equal(data, recv_all(a, #data))
    assert.equal(#data, up:join(30000))
    local down = host.spawn("send", a, data:reverse())
    assert.equal(data:reverse(), recv_all(c, #data))
    assert.equal(#data, down:join(30000))
  end)

  it("give the same results to the same application code with and without layers", function()
    local function run(catalog)
      local log = {}
      local c, a = pair(catalog)
      log[#log + 1] = host.send(c, "hello")
      log[#log + 1] = host.recv(a, 100)
      log[#log + 1] = host.send(a, "world!")
      log[#log + 1] = host.recv(c, 100)
      log[#log + 1] = wsp.int(host.getsockopt(c, wsp.SOL_SOCKET, wsp.SO_TYPE))
      assert(host.setsockopt(c, wsp.IPPROTO_TCP, wsp.TCP_NODELAY, 1))
      log[#log + 1] = wsp.int(host.getsockopt(c, wsp.IPPROTO_TCP, wsp.TCP_NODELAY))
      log[#log + 1] = host.getpeername(c).port == host.getsockname(a).port
      assert(host.shutdown(c, wsp.SD_SEND))
      log[#log + 1] = host.recv(a, 100)
      assert(host.ioctl(c, wsp.FIONBIO, 1))
      log[#log + 1] = select(3, host.recv(c, 10))
      host.close(c)
      host.close(a)
      return log
    end
    local plain = run(native.tcp)
    assert.same({5, "hello", 6, "world!", wsp.SOCK_STREAM, 1, true, "", wsp.WSAEWOULDBLOCK}, plain)
    assert.same(plain, run(one.tcp))
    assert.same(plain, run(two.tcp))
  end)

  it("carry UDP datagrams with their senders", function()
    local srv = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, native.udp))
    assert(host.bind(srv, "127.0.0.1:0"))
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, two.udp))
    assert(host.bind(c, "127.0.0.1:0"))
    for i = 1, 20 do
      assert.equal(#("datagram " .. i), host.sendto(c, "datagram " .. i, host.getsockname(srv)))
      local data, from = host.recvfrom(srv, 100)
      assert.equal("datagram " .. i, data)
      assert.same(host.getsockname(c), from)
      assert.equal(5, host.sendto(srv, "reply", from))
      local r, rfrom = host.recvfrom(c, 100)
      assert.equal("reply", r)
      assert.same(host.getsockname(srv), rfrom)
    end
  end)

  it("make sendto and recvfrom down in C too, without entering Lua: datagrams, senders, errors, a blocking wait", function()
    local srv = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, native.udp))
    assert(host.bind(srv, "127.0.0.1:0"))
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, one.udp))
    assert(host.bind(c, "127.0.0.1:0"))
    local runs = host.bench_instance(one.guid).lua_runs
    for i = 1, 20 do
      assert.equal(#("datagram " .. i), host.sendto(c, "datagram " .. i, host.getsockname(srv)))
      local data, from = host.recvfrom(srv, 100)
      assert.equal("datagram " .. i, data)
      assert.same(host.getsockname(c), from)
      assert.equal(5, host.sendto(srv, "reply", from))
      local r, rfrom = host.recvfrom(c, 100)
      assert.equal("reply", r)
      assert.same(host.getsockname(srv), rfrom)
    end
    -- a datagram longer than the buffer: the part that fits, and WSAEMSGSIZE, as below
    assert.equal(10, host.sendto(srv, ("m"):rep(10), host.getsockname(c)))
    H.fails_with("WSAEMSGSIZE", host.recvfrom(c, 4))
    -- a blocking recvfrom waits on its own thread for the layer below
    local job = host.spawn("recvfrom", c, 100)
    assert.same({nil, "timeout"}, {job:join(50)})
    assert.equal(4, host.sendto(srv, "late", host.getsockname(c)))
    assert.equal("late", (job:join(5000)))
    assert.equal(runs, host.bench_instance(one.guid).lua_runs)
    -- an address too short for its family is the caller's fault, as through a handler
    assert.equal(wsp.WSAEFAULT, host.probe("sendto:short-to", c))
    assert.equal(5, host.sendto(srv, "kept!", host.getsockname(c)))
    assert.equal(wsp.WSAEFAULT, host.probe("recvfrom:short-fromlen", c))
    assert.equal("kept!", (host.recvfrom(c, 100)))
    assert(host.close(c))
    assert(host.close(srv))
  end)

  it("work over IPv6", function()
    local c, a = pair(two.tcp6, wsp.AF_INET6)
    assert.equal(wsp.AF_INET6, host.getpeername(c).family)
    assert.equal("::1", host.getsockname(c).address)
    assert.equal(4, host.send(c, "six!"))
    assert.equal("six!", (host.recv(a, 10)))
  end)

  it("report refused connections", function()
    local probe = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
    assert(host.bind(probe, "127.0.0.1:0"))
    local closed = host.getsockname(probe)
    host.close(probe)
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, two.tcp))
    H.fails_with("WSAECONNREFUSED", host.connect(c, closed))
  end)

  -- #posix: under Wine a zero-linger closesocket ends the connection gracefully
  -- (the peer reads end of stream, checked without any layer), not with a reset
  it("report reset connections #posix", function()
    local c2, a2 = pair(two.tcp)
    assert(host.setsockopt(a2, wsp.SOL_SOCKET, wsp.SO_LINGER, string.pack("<I2I2", 1, 0)))
    assert(host.close(a2))                      -- an abortive close: RST
    H.fails_with("WSAECONNRESET", host.recv(c2, 10))
  end)

  -- the passthrough (calls inherited from wsp.layered) and the same layer
  -- with Lua handlers of its own for the data calls
  local HANDLERS = [[
local P = require("wsp.layered").new()
P.views = true
local base = P.base
function P.send(...) return base.send(...) end
function P.recv(...) return base.recv(...) end
return P
]]
  local function layers()
    return {{"inherited", one}, {"Lua handlers", H.layered{script = H.script(HANDLERS), over = native, name = "handlers"}}}
  end

  it("complete overlapped receives in the order they were posted, the data in order", function()
    for _, layer in ipairs(layers()) do
      local c, a = pair(layer[2].tcp)
      -- a receive posted while an earlier one waits must not take the data first
      for round = 1, 50 do
        local ov1, ov2 = host.overlapped(host.create_event()), host.overlapped(host.create_event())
        H.fails_with("WSA_IO_PENDING", host.wsarecv(c, 1, ov1))
        host.send(a, "A")
        host.wsarecv(c, 1, ov2)
        host.send(a, "B")
        assert.equal(1, host.wait({ov1.hEvent}, false, 5000))
        assert.equal(1, host.wait({ov2.hEvent}, false, 5000))
        assert.same({"A", "B"}, {ov1.data, ov2.data}, layer[1] .. " round " .. round)
      end
      -- a queue of receives, some posted before the data and some after
      local ovs = {}
      for i = 1, 8 do
        ovs[i] = host.overlapped(host.create_event())
        host.wsarecv(c, 1, ovs[i])
        if i == 4 then host.send(a, "abc") end
      end
      host.send(a, "defgh")
      local got = {}
      for i = 1, 8 do
        assert.equal(1, host.wait({ovs[i].hEvent}, false, 5000))
        got[i] = ovs[i].data
      end
      assert.equal("abcdefgh", table.concat(got), layer[1])
      host.close(c)
      host.close(a)
    end
  end)

  it("send whole when the call is blocking or overlapped, and what goes at once when it is not", function()
    local big = {}
    for i = 1, 4 * 1024 * 1024 / 8 do big[i] = ("%07d\n"):format(i % 10000000) end
    big = table.concat(big)
    for _, layer in ipairs(layers()) do
      -- small buffers both ends, so the layer below takes little at a time
      local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
      assert(host.setsockopt(l, wsp.SOL_SOCKET, wsp.SO_RCVBUF, 8192))
      assert(host.bind(l, "127.0.0.1:0"))
      assert(host.listen(l, 4))
      local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, layer[2].tcp))
      assert(host.setsockopt(c, wsp.SOL_SOCKET, wsp.SO_SNDBUF, 8192))
      assert(host.connect(c, host.getsockname(l)))
      local a = assert(host.accept(l))
      host.close(l)
      -- blocking: one call moves all 4 MiB, however little the layer below takes at a time
      local job = host.spawn("send", c, big)
      assert.equal(big, recv_within(a, #big, 10), layer[1])
      assert.equal(#big, job:join(5000), layer[1])
      -- overlapped: each completes whole, and the stream keeps their order
      local ovs, parts = {}, {}
      for i = 1, 6 do
        parts[i] = big:sub((i - 1) * 500000 + 1, i * 500000)
        ovs[i] = host.overlapped(host.create_event())
        host.wsasend(c, parts[i], ovs[i])
      end
      assert.equal(table.concat(parts), recv_within(a, 3000000, 10), layer[1])
      for i = 1, 6 do
        assert.equal(1, host.wait({ovs[i].hEvent}, false, 5000))
        assert.equal(500000, ovs[i].InternalHigh, layer[1])
      end
      -- non-blocking: what the layer below takes now, and exactly that arrives
      local huge = big:rep(8)
      assert.equal("", host.ioctl(c, wsp.FIONBIO, 1))
      local n = assert(host.send(c, huge))
      assert.is_true(n > 0 and n < #huge, layer[1])
      local code
      repeat                                 -- until the layer below takes no more
        local more, _, e = host.send(c, huge:sub(n + 1))
        if more then n = n + more else code = e end
      until not more
      assert.equal(wsp.WSAEWOULDBLOCK, code, layer[1])
      assert.equal(huge:sub(1, n), recv_within(a, n, 10), layer[1])
      host.close(c)
      host.close(a)
    end
  end)

  it("report SO_PROTOCOL_INFOW as the layered entry", function()
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, two.tcp))
    local raw = host.getsockopt(c, wsp.SOL_SOCKET, wsp.SO_PROTOCOL_INFOW, 628)
    assert.equal(two.tcp, string.unpack("<I4", raw, 37))
    local chainlen = string.unpack("<i4", raw, 41)
    assert.equal(3, chainlen)                   -- outer layer, inner layer, native
  end)

  it("deliver network events and overlapped completions through layers", function()
    local c, a = pair(two.tcp)
    local ev = host.create_event()
    assert(host.event_select(c, ev, wsp.FD_READ | wsp.FD_CLOSE))
    host.send(a, "event")
    assert.equal(1, host.wait({ev}, false, 5000))
    local mask = host.enum_network_events(c, ev)
    assert.equal(wsp.FD_READ, mask & wsp.FD_READ)
    assert.equal("event", (host.recv(c, 10)))
    local c2, a2 = pair(two.tcp)
    local port = host.port()
    assert(host.associate(c2, port, 3))
    local ov = host.overlapped()
    H.fails_with("WSA_IO_PENDING", host.wsarecv(c2, 100, ov))
    host.send(a2, "completion")
    local bytes, key = host.dequeue(port, 5000)
    assert.equal(10, bytes)
    assert.equal(3, key)
    assert.equal("completion", ov.data)
    local ov2 = host.overlapped()
    host.completions()
    H.fails_with("WSA_IO_PENDING", host.wsarecv(c2, 100, ov2, {routine = true}))
    host.send(a2, "routine")
    local done = H.await_completions()
    assert.equal(7, done[1].bytes)
    assert.equal("routine", ov2.data)
  end)

  it("close a socket while its overlapped receives are being completed, each completed exactly once", function()
    -- the service thread resumes the layer's receives (calling down with the
    -- lock released) while the application closes the socket
    for round = 1, 20 do
      local c, a = pair(two.tcp)
      local port = host.port()
      assert(host.associate(c, port, round))
      local ovs = {}
      for i = 1, 64 do
        ovs[i] = host.overlapped()
        H.fails_with("WSA_IO_PENDING", host.wsarecv(c, 16, ovs[i]))
      end
      local sender = host.spawn("send", a, ("z"):rep(1024 * 1024))
      host.sleep(round % 4)                    -- let completions start
      assert(host.close(c))
      local seen = {}
      for _ = 1, 64 do
        local bytes, key, addr = host.dequeue(port, 5000)
        assert.equal(round, key)
        assert.is_nil(seen[addr])
        seen[addr] = true
      end
      assert.same({nil, "timeout"}, {host.dequeue(port, 50)})   -- and nothing twice
      for _, ov in ipairs(ovs) do
        assert.is_true(seen[ov.address])
        assert.is_true(ov.OffsetHigh == 0 or ov.OffsetHigh == wsp.WSA_OPERATION_ABORTED, tostring(ov.OffsetHigh))
      end
      host.close(a)
      sender:join(5000)
    end
  end)

  it("wait on the calling thread, without entering Lua, when an inherited blocking call must wait", function()
    local c, a = pair(one.tcp)
    local runs = host.bench_instance(one.guid).lua_runs
    local job = host.spawn("recv", c, 10)                 -- nothing to read yet
    assert.same({nil, "timeout"}, {job:join(50)})
    host.send(a, "late")
    assert.equal("late", job:join(5000))
    local big = ("z"):rep(16 * 1024 * 1024)               -- more than the sockets' buffers hold
    local sender = host.spawn("send", c, big)
    assert.same({nil, "timeout"}, {sender:join(50)})
    assert.equal(big, recv_all(a, #big))
    sender:join(5000)
    assert.equal(runs, host.bench_instance(one.guid).lua_runs)
    -- such a wait ends like any blocked call's: cancelled from its blocking
    -- hook, or its socket closed by another thread
    local cancelled = host.spawn("recv", c, 10, {cancel_after = 2})
    H.fails_with("WSAEINTR", cancelled:join(5000))
    local waiting = host.spawn("recv", c, 10)
    assert.same({nil, "timeout"}, {waiting:join(50)})
    assert(host.close(c))
    H.fails_with("WSAEINTR", waiting:join(5000))
  end)

  it("end a receive blocked in a Lua handler with WSAEINTR when another thread closes the socket", function()
    -- the close handler closes the lower socket, which can wake the blocked
    -- handler before the close is over: the close still decides its result
    local meter = host.install_layered{script = H.root .. "/examples/meter.lua", over = native, name = "meter"}
    finally(function() host.cleanup(); host.uninstall_lua(meter) end)
    for _ = 1, 6 do
      local c = pair(meter.tcp)
      local waiting = host.spawn("recv", c, 10)
      assert.same({nil, "timeout"}, {waiting:join(30)})
      assert(host.close(c))
      H.fails_with("WSAEINTR", waiting:join(5000))
    end
  end)

  it("block an application thread until the lower socket has data", function()
    local c, a = pair(two.tcp)
    local job = host.spawn("recv", c, 100)
    assert.same({nil, "timeout"}, {job:join(50)})
    host.send(a, "late data")
    assert.equal("late data", job:join(5000))
  end)
end)

describe("a layer below that cannot be used", function()
  local bases = {}
  after_each(function()
    H.reset()
    for _, id in ipairs(bases) do host.remove(id) end
    bases = {}
  end)

  local function layer_over(base_entry_path)
    local guid = lwsp.guid()
    local info = host.protocol_info{guid = guid, name = "broken base"}
    local base = host.install(info, base_entry_path, "base")
    bases[#bases + 1] = base
    return H.layered{script = H.root .. "/examples/passthrough.lua", over = {tcp = base}, name = "over broken"}
  end

  it("unreachable DLL path: WSAEPROVIDERFAILEDINIT and a log line", function()
    local r = layer_over("%LWSP_NO_SUCH_DIR%/missing.so")
    local mark = H.mark()
    H.fails_with("WSAEPROVIDERFAILEDINIT", host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert.truthy(H.find_log(mark, "cannot be loaded: .*missing%.so"), table.concat(H.logs(mark), "\n"))
  end)

  it("a lower WSPStartup that fails: WSAEPROVIDERFAILEDINIT and a log line", function()
    local r = layer_over(lwsp.path())      -- a Lua base whose GUID has no script
    local mark = H.mark()
    H.fails_with("WSAEPROVIDERFAILEDINIT", host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert.truthy(H.find_log(mark, "WSPStartup %(.-%) failed: WSAEPROVIDERFAILEDINIT"))
  end)

  it("a lower proc table with NULL entries: WSAEPROVIDERFAILEDINIT and a log line", function()
    local r = layer_over(H.root .. (H.windows and "/build/mingw/x86_64/test_nullproc.dll" or "/build/test_nullproc.so"))
    local mark = H.mark()
    H.fails_with("WSAEPROVIDERFAILEDINIT", host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert.truthy(H.find_log(mark, "proc table .- has a NULL WSPAccept"))
  end)
end)

describe("views through a layer", function()
  local native, r
  local SRC = [[
local P = require("wsp.layered").new()
P.views = true
local send, recv = P.send, P.recv
function P.send(s, data, flags)
  seen = {send = type(data) == "userdata" and #data or type(data)}
  -- a read-only view cannot be received into
  local ok, err = pcall(s.low.recv, s.low, s.lh, data)
  seen.readonly = tostring(ok) .. ":" .. tostring(err):match("read%-only")
  return send(s, data, flags)
end
function P.recv(s, view, flags)
  local n, f = recv(s, view, flags)
  seen.recv = {math.type(n), type(view) == "userdata" and #view or type(view)}
  return n, f
end
function P.ioctl(s, code, input, outlen)
  if code == 0x7200 then                    -- report what the handlers saw
    local t = {}
    for k, v in pairs(seen or {}) do t[#t + 1] = k .. "=" .. (type(v) == "table" and table.concat(v, "/") or tostring(v)) end
    table.sort(t)
    return table.concat(t, " ")
  end
  return nil, "WSAEOPNOTSUPP"
end
return P
]]

  before_each(function()
    native = host.install_native()
    r = host.install_layered{script = H.script(SRC), over = native, name = "views"}
  end)
  after_each(function()
    host.cleanup()
    for _, x in ipairs{r, native} do host.uninstall_lua(x) end
  end)

  it("go down and come up without a Lua string: the bytes intact, the handlers given views", function()
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 1))
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(host.connect(c, host.getsockname(l)))
    local a = assert(host.accept(l))
    local block = {}
    for i = 0, 255 do block[#block + 1] = string.char(i) end
    local data = table.concat(block):rep(64)           -- 16 KiB, every byte value
    assert.equal(#data, host.send(c, data))
    local got = {}
    local n = 0
    while n < #data do
      local part = assert(host.recv(a, 65536))
      got[#got + 1] = part
      n = n + #part
    end
    assert.equal(data, table.concat(got))
    assert.equal(5, host.send(a, "reply"))
    assert.equal("reply", (host.recv(c, 100)))
    assert.equal(("readonly=false:read-only recv=integer/100 send=%d"):format(#data), host.ioctl(c, 0x7200, "", 200))
    -- an overlapped receive through the layer completes into the caller's buffer
    local ov = host.overlapped(host.create_event())
    H.fails_with("WSA_IO_PENDING", host.wsarecv(c, 64, ov))
    assert.equal(7, host.send(a, "pending"))
    assert.equal(1, host.wait({ov.hEvent}, false, 5000))
    assert.equal("pending", ov.data)
  end)
end)
