-- The native base provider on its own: real sockets, blocking, non-blocking,
-- overlapped by every mechanism, network events, select, options.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

describe("the native base provider", function()
  local n
  before_each(function() n = H.base() end)
  after_each(H.reset)

  local function pair(af)
    af = af or wsp.AF_INET
    local l = assert(host.socket(af, wsp.SOCK_STREAM, 0, 0, af == wsp.AF_INET and n.tcp or n.tcp6))
    assert(host.bind(l, af == wsp.AF_INET and "127.0.0.1:0" or "[::1]:0"))
    assert(host.listen(l, 8))
    local c = assert(host.socket(af, wsp.SOCK_STREAM, 0, 0, af == wsp.AF_INET and n.tcp or n.tcp6))
    assert(host.connect(c, host.getsockname(l)))
    return c, assert(host.accept(l)), l
  end

  it("carries TCP over IPv4 and IPv6 with the names right", function()
    for _, af in ipairs{wsp.AF_INET, wsp.AF_INET6} do
      local c, a, l = pair(af)
      assert.same(host.getsockname(l).port, host.getpeername(c).port)
      assert.same(host.getsockname(c), host.getpeername(a))
      assert.equal(5, host.send(c, "hello"))
      assert.equal("hello", (host.recv(a, 10)))
    end
  end)

  it("keeps a closed socket's handle until its aborted receive's routine has run", function()
    local c, a = pair()
    host.completions()
    local ov = host.overlapped()
    H.fails_with("WSA_IO_PENDING", host.wsarecv(a, 10, ov, {routine = true}))
    assert(host.close(a))
    assert.truthy(host.socket_info(a))            -- the routine is still to be delivered
    host.sleep(1000, true)
    local done = host.completions()
    assert.equal(1, #done)
    assert.equal(wsp.WSA_OPERATION_ABORTED, done[1].error)
    H.fails_with("WSAENOTSOCK", host.socket_info(a))   -- given back after it
    assert(host.close(c))
  end)

  it("refuses a receive or send with no buffers instead of reporting 0 bytes", function()
    local c, a = pair()
    assert.equal(4, host.send(c, "data"))
    local expect = {["recv:no-bufs"] = "WSAEFAULT", ["recv:zero-count"] = "WSAEINVAL",
                    ["recvfrom:no-bufs"] = "WSAEFAULT", ["send:no-bufs"] = "WSAEFAULT", ["send:zero-count"] = "WSAEINVAL"}
    for probe, name in pairs(expect) do assert.equal(wsp[name], host.probe(probe, a), probe) end
    assert.equal("data", (host.recv(a, 10)))
  end)

  it("blocks a thread in recv and accept, and honours non-blocking mode", function()
    local c, a, l = pair()
    local job = host.spawn("recv", a, 10)
    assert.same({nil, "timeout"}, {job:join(50)})
    host.send(c, "wake")
    assert.equal("wake", job:join(5000))
    local acc = host.spawn("accept", l)
    assert.same({nil, "timeout"}, {acc:join(30)})
    local c2 = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, n.tcp))
    assert(host.connect(c2, host.getsockname(l)))
    assert.is_number((acc:join(5000)))
    assert.equal("", host.ioctl(a, wsp.FIONBIO, 1))
    H.fails_with("WSAEWOULDBLOCK", host.recv(a, 10))
    local cancel = host.spawn("recv", c, 10, {cancel_after = 2})
    H.fails_with("WSAEINTR", cancel:join(5000))
  end)

  it("fails a recv or send blocked on a socket another thread closes, and closes it once the call is out", function()
    local lfs = require "lfs"
    local function fds()    -- the process's open sockets (counted where /proc says; 0 elsewhere)
      local k = 0
      if H.windows then return 0 end
      for f in lfs.dir("/proc/self/fd") do
        local t = lfs.symlinkattributes("/proc/self/fd/" .. f, "target")
        if t and t:find("^socket:") then k = k + 1 end
      end
      return k
    end
    local c, a, l = pair()
    local before = H.windows and 0 or fds() - 3
    local job = host.spawn("recv", a, 10)
    assert.same({nil, "timeout"}, {job:join(50)})
    assert(host.close(a))
    H.fails_with("WSAEINTR", job:join(5000))
    assert.equal("", (host.recv(c, 10)))   -- the peer saw it go
    assert(host.close(c))
    local l2
    c, a, l2 = pair()
    assert(host.close(l2))
    local send = host.spawn("send", c, ("x"):rep(64 * 1024 * 1024))   -- fills the buffers, then blocks
    assert.same({nil, "timeout"}, {send:join(100)})
    assert(host.close(c))
    H.fails_with("WSAEINTR", send:join(5000))
    assert(host.close(a))
    assert(host.close(l))
    assert.equal(before, fds())
  end)

  it("completes overlapped receives by event, routine and port", function()
    local c, a = pair()
    local ev = host.create_event()
    local ov = host.overlapped(ev)
    H.fails_with("WSA_IO_PENDING", host.wsarecv(a, 100, ov))
    assert.equal(wsp.WSS_OPERATION_IN_PROGRESS, ov.Internal)
    host.send(c, "by event")
    assert.equal(1, host.wait({ev}, false, 5000))
    assert.equal("by event", ov.data)
    host.completions()
    local ov2 = host.overlapped()
    H.fails_with("WSA_IO_PENDING", host.wsarecv(a, 100, ov2, {routine = true}))
    host.send(c, "by routine")
    local done = H.await_completions()
    assert.equal(10, done[1].bytes)
    local port = host.port()
    assert(host.associate(a, port, 8))
    local ov3 = host.overlapped()
    H.fails_with("WSA_IO_PENDING", host.wsarecv(a, 100, ov3))
    host.send(c, "by port")
    local bytes, key = host.dequeue(port, 5000)
    assert.equal(7, bytes)
    assert.equal(8, key)
    local ov4 = host.overlapped(host.create_event())
    H.fails_with("WSA_IO_PENDING", host.wsarecv(a, 100, ov4))
    -- which engine served them: Winsock's own overlapped I/O on Windows, the
    -- provider's readiness worker elsewhere; every one of the four counted
    local engine, os_ops, polled = string.unpack("<I4I4I4", assert(host.ioctl(a, wsp.SIO_LWSP_NATIVE_ENGINE, nil, 12)))
    if H.windows then
      assert.same({wsp.LWSP_ENGINE_OS_OVERLAPPED, 4, 0}, {engine, os_ops, polled})
    else
      assert.same({wsp.LWSP_ENGINE_POLLED, 0, 4}, {engine, os_ops, polled})
    end
    H.fails_with("WSAEFAULT", host.ioctl(a, wsp.SIO_LWSP_NATIVE_ENGINE, nil, 8))
    assert.is_true(host.close(a))
    assert.equal(wsp.WSA_OPERATION_ABORTED, ov4.OffsetHigh)
  end)

  it("completes pending overlapped receives in the order they were posted", function()
    local c, a = pair()
    local evs, ovs = {}, {}
    for i = 1, 3 do
      evs[i] = host.create_event()
      ovs[i] = host.overlapped(evs[i])
      H.fails_with("WSA_IO_PENDING", host.wsarecv(a, 100, ovs[i]))
    end
    for i = 1, 3 do
      host.send(c, "part " .. i)
      assert.equal(1, host.wait({evs[i]}, false, 5000))
      assert.equal("part " .. i, ovs[i].data)
    end
  end)

  it("sends pending overlapped sends whole and in the order they were posted", function()
    local c, a = pair()
    -- a small send buffer, so that the sends cannot all finish at once
    assert(host.setsockopt(c, wsp.SOL_SOCKET, wsp.SO_SNDBUF, 8192))
    local size, parts, evs, ovs, pend = 1 << 20, {}, {}, {}, 0
    for i = 1, 4 do
      parts[i] = string.rep(string.char(64 + i), size)
      evs[i] = host.create_event()
      ovs[i] = host.overlapped(evs[i])
      local ok, err = host.wsasend(c, parts[i], ovs[i])
      assert(ok or err:match("^WSA_IO_PENDING"), err)
      if not ok then pend = pend + 1 end
    end
    assert.is_true(pend >= 3)
    local got, n = {}, 0
    while n < 4 * size do
      local data = assert(host.recv(a, 65536))
      got[#got + 1] = data
      n = n + #data
    end
    got = table.concat(got)
    for i = 1, 4 do
      assert.is_true(got:sub((i - 1) * size + 1, i * size) == parts[i], "part " .. i .. " arrived whole and in order")
      assert.equal(1, host.wait({evs[i]}, false, 5000))
      assert.equal(size, ovs[i].InternalHigh)
    end
  end)

  it("delivers network events and answers select", function()
    local c, a, l = pair()
    local ev, w = host.create_event(), host.window()
    assert(host.event_select(a, ev, wsp.FD_READ | wsp.FD_CLOSE))
    assert(host.async_select(l, w, 0x700, wsp.FD_ACCEPT))
    host.send(c, "x")
    assert.equal(1, host.wait({ev}, false, 5000))
    assert.equal(wsp.FD_READ, (host.enum_network_events(a, ev)))
    local c2 = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, n.tcp))
    assert(host.connect(c2, host.getsockname(l)))
    local msgs = host.messages(w, 5000)
    assert.equal(wsp.FD_ACCEPT, msgs[1].event)
    assert.equal("x", (host.recv(a, 10)))
    host.close(c)
    assert.equal(1, host.wait({ev}, false, 5000))
    assert.equal(wsp.FD_CLOSE, (host.enum_network_events(a, ev)) & wsp.FD_CLOSE)
    local count, rd = host.select({c2}, nil, nil, 0)
    assert.equal(0, count)
    local a2 = assert(host.accept(l))
    host.send(a2, "ready")
    count, rd = host.select({c2}, nil, nil, 5)
    assert.same({c2}, rd)
  end)

  -- (under Wine, one poll entry per set and socket lost a socket's
  -- readability when it was in the write set too)
  it("answers select for a socket in the read and the write set at once, in both", function()
    local c, a = pair()
    host.send(a, "ready")
    assert.equal(1, (host.select({c}, nil, nil, 5000)))
    local count, rd, wr, ex = host.select({c}, {c, a}, {c}, 1000)
    assert.equal(3, count)
    assert.same({c}, rd)
    assert.same({c, a}, wr)
    assert.same({}, ex)
  end)

  it("carries UDP and keeps options", function()
    local u1 = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, n.udp))
    local u2 = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, n.udp))
    assert(host.bind(u1, "127.0.0.1:0"))
    assert.equal(3, host.sendto(u2, "udp", host.getsockname(u1)))
    local data, from = host.recvfrom(u1, 100)
    assert.equal("udp", data)
    assert.equal(host.getsockname(u2).port, from.port)
    host.sendto(u2, "0123456789", host.getsockname(u1))
    local ok, msg, code, partial = host.recvfrom(u1, 4)
    H.fails_with("WSAEMSGSIZE", ok, msg, code)
    assert.equal("0123", partial)
    assert(host.setsockopt(u1, wsp.SOL_SOCKET, wsp.SO_RCVBUF, 65536))
    assert.is_true(wsp.int(host.getsockopt(u1, wsp.SOL_SOCKET, wsp.SO_RCVBUF)) >= 65536)
    assert.equal(wsp.SOCK_DGRAM, wsp.int(host.getsockopt(u1, wsp.SOL_SOCKET, wsp.SO_TYPE)))
    H.fails_with("WSAENOPROTOOPT", host.getsockopt(u1, wsp.SOL_SOCKET, 0x7777))
    assert.equal("127.0.0.1:80", host.address_to_string("127.0.0.1:80", n.tcp))
  end)
end)
