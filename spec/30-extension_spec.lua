-- Winsock's extension functions (AcceptEx, ConnectEx, DisconnectEx,
-- TransmitFile, WSARecvMsg, WSASendMsg, GetAcceptExSockaddrs), got as an
-- application gets them (WSAIoctl, then the call), over the native base.
local H = require "helpers"
local wsp, host = H.wsp, H.host

-- the same application over the native base, one and two wsp.layered
-- passthrough layers (each extension function inherited in C)
local function stack(which)
  local r = H.base()
  for i = 1, which do
    r = H.layered{script = H.root .. "/examples/passthrough.lua", over = r, name = "layer" .. i}
  end
  return r
end
local STACKS = {"the native base", "one Lua layer over the native base", "two Lua layers over the native base"}

describe("extension functions", function()
  after_each(H.reset)

  for layers, which in ipairs(STACKS) do
    describe("through " .. which, function()
      local r
      before_each(function() r = stack(layers - 1) end)

      local function tcp() return assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp)) end
      local function listener()
        local l = tcp()
        assert(host.bind(l, "127.0.0.1:0"))
        assert(host.listen(l, 8))
        return l
      end

      it("serves an echo over a completion port: AcceptEx with and without data, ConnectEx with data", function()
        local l = listener()
        local port = host.port()
        assert(host.associate(l, port, 1))
        for _, rcvlen in ipairs{0, 64} do
          local as = tcp()
          assert(host.associate(as, port, 2))
          local aov = host.overlapped()
          H.fails_with("WSA_IO_PENDING", host.acceptex(l, as, rcvlen, aov))
          local c = tcp()
          assert(host.bind(c, "127.0.0.1:0"))
          local cport = host.port()
          assert(host.associate(c, cport, 3))
          local cov = host.overlapped()
          H.fails_with("WSA_IO_PENDING", host.connectex(c, host.getsockname(l), "hello", cov))
          local sent, key, addr = host.dequeue(cport, 5000)
          assert.equal(5, sent)
          assert.equal(3, key)
          assert.equal(cov.address, addr)
          local got, akey = host.dequeue(port, 5000)
          assert.equal(rcvlen > 0 and 5 or 0, got)
          assert.equal(1, akey)                      -- the listener's key: AcceptEx completes on it
          assert.equal(rcvlen > 0 and "hello" or "", aov.data)
          local loc, rem = host.acceptex_sockaddrs(l, aov)
          assert.same(host.getsockname(l), loc)
          assert.same(host.getsockname(c), rem)
          assert(host.setsockopt(as, wsp.SOL_SOCKET, wsp.SO_UPDATE_ACCEPT_CONTEXT, string.pack("<I8", l)))
          assert(host.setsockopt(c, wsp.SOL_SOCKET, wsp.SO_UPDATE_CONNECT_CONTEXT, ""))
          assert.same(host.getsockname(c), host.getpeername(as))
          if rcvlen == 0 then assert.equal("hello", (host.recv(as, 10))) end
          -- the echo, overlapped on the accepted socket
          local eov = host.overlapped()
          assert(host.send(as, "echo"))
          local ok, err = host.wsarecv(c, 10, eov)   -- done at once or pending: a packet either way
          assert(ok or err:find("WSA_IO_PENDING"))
          assert.equal(4, (host.dequeue(cport, 5000)))
          assert.equal("echo", eov.data)
          assert(host.close(c))
          assert(host.close(as))
        end
      end)

      it("sends a file with TransmitFile, with head and tail, blocking and overlapped", function()
        local l = listener()
        local c = tcp()
        assert(host.connect(c, host.getsockname(l)))
        local a = assert(host.accept(l))
        local path = H.tmp .. "/transmit.bin"
        local body = {}
        for i = 1, 5000 do body[i] = string.char(i % 251) end
        body = table.concat(body):rep(20)               -- 100,000 bytes
        local f = assert(io.open(path, "wb")); f:write(body); f:close()
        local fh = assert(host.open_file(path))
        assert(host.transmitfile(c, fh, nil, {head = "HEAD", tail = "TAIL"}))
        local ov = host.overlapped(host.create_event())
        ov.Offset = 99990
        local r1, e1 = host.transmitfile(c, fh, ov, {bytes = 5})
        assert(r1 or e1:find("WSA_IO_PENDING"))
        assert.equal(1, host.wait({ov.hEvent}, false, 5000))
        assert.equal(0, ov.OffsetHigh)
        local want = "HEAD" .. body .. "TAIL" .. body:sub(99991, 99995)
        local got = ""
        while #got < #want do
          local part = assert(host.recv(a, 300000))
          got = got .. part
        end
        assert.equal(#want, #got)
        assert.equal(want, got)
        host.close_file(fh)
      end)

      it("sends memory and file elements with TransmitPackets, then disconnects", function()
        local l = listener()
        local c = tcp()
        assert(host.connect(c, host.getsockname(l)))
        local a = assert(host.accept(l))
        local path = H.tmp .. "/packets.txt"
        local f = assert(io.open(path, "wb")); f:write("0123456789abcdefghij"); f:close()
        local fh = assert(host.open_file(path))
        assert(host.transmitpackets(c, {"<", {file = fh, offset = 10, length = 5}, "|", {file = fh, offset = 15}, ">"}))
        local ev = host.create_event()
        local ov = host.overlapped(ev)
        local ok, err = host.transmitpackets(c, {{file = fh, offset = 0, length = 3}, "!"}, ov,
                                             {flags = wsp.TF_DISCONNECT})
        assert(ok or err:find("WSA_IO_PENDING"))
        assert.equal(1, host.wait({ev}, false, 5000))
        assert.equal(0, ov.OffsetHigh)
        assert.equal(4, ov.InternalHigh)
        local got = ""
        repeat
          local part = assert(host.recv(a, 100))
          got = got .. part
        until part == ""
        assert.equal("<abcde|fghij>012!", got)          -- then the orderly close TF_DISCONNECT sent
        H.fails_with("WSAEINVAL", host.transmitpackets(c, {"x"}, nil, {flags = wsp.TF_REUSE_SOCKET}))
        host.close_file(fh)
      end)

      it("reuses a socket after DisconnectEx(TF_REUSE_SOCKET) for a second ConnectEx", function()
        local l = listener()
        local c = tcp()
        assert(host.bind(c, "127.0.0.1:0"))
        local ev = host.create_event()
        for round = 1, 2 do
          local ov = host.overlapped(ev)
          H.fails_with("WSA_IO_PENDING", host.connectex(c, host.getsockname(l), "round" .. round, ov))
          assert.equal(1, host.wait({ev}, false, 5000))
          assert.equal(0, ov.OffsetHigh)
          local a = assert(host.accept(l))
          assert.equal("round" .. round, (host.recv(a, 10)))
          host.reset_event(ev)
          local dov = host.overlapped(ev)
          local ok, err = host.disconnectex(c, dov, wsp.TF_REUSE_SOCKET)
          assert(ok or err:find("WSA_IO_PENDING"))
          assert.equal(1, host.wait({ev}, false, 5000))
          assert.equal(0, dov.OffsetHigh)
          assert.equal("", (host.recv(a, 10)))       -- the peer saw the orderly close
          host.reset_event(ev)
          assert(host.close(a))
        end
        H.fails_with("WSAENOTCONN", host.disconnectex(c, nil, 0))
      end)

      -- (the native base answers with recvmsg off Windows, with Winsock's WSARecvMsg on it)
      it("receives a UDP datagram with WSARecvMsg and its destination address", function()
        local u = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
        assert(host.bind(u, "127.0.0.1:0"))
        assert(host.setsockopt(u, wsp.IPPROTO_IP, wsp.IP_PKTINFO, string.pack("<i4", 1)))
        local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
        assert(host.bind(s, "127.0.0.1:0"))
        assert(host.wsasendmsg(s, "datagram", host.getsockname(u)))
        local m = assert(host.wsarecvmsg(u, 100))
        assert.equal("datagram", m.data)
        assert.same(host.getsockname(s), m.from)
        assert.equal("127.0.0.1", m.destination.address)
        assert.is_true(m.ifindex > 0)
        -- overlapped, with a routine, and a control buffer too short for the address
        host.completions()
        local ov = host.overlapped()
        H.fails_with("WSA_IO_PENDING", host.wsarecvmsg(u, 4, ov, {routine = true, control = 8}))
        assert(host.wsasendmsg(s, "truncated", host.getsockname(u)))
        local done = H.await_completions()
        assert.equal(1, #done)
        assert.equal(wsp.WSAEMSGSIZE, done[1].error)
        local res = host.recvmsg_result(ov)
        assert.equal("trun", res.data)
        assert.equal(wsp.MSG_TRUNC | wsp.MSG_CTRUNC, res.flags & (wsp.MSG_TRUNC | wsp.MSG_CTRUNC))
        assert.is_nil(res.destination)
        -- on a stream socket it is refused
        H.fails_with("WSAEOPNOTSUPP", host.wsarecvmsg(tcp(), 10))
      end)

      it("refuses bad GUIDs, short buffers, an unbound ConnectEx, and aborts what a close leaves pending", function()
        local l = listener()
        H.fails_with("WSAEINVAL", host.ioctl(l, wsp.SIO_GET_EXTENSION_FUNCTION_POINTER, string.rep("\1", 16), 8))
        H.fails_with("WSAEFAULT", host.ioctl(l, wsp.SIO_GET_EXTENSION_FUNCTION_POINTER, string.rep("\1", 8), 8))
        local mine = host.extension(l, "AcceptEx")
        assert.is_number(mine)
        -- a layer answers with its own functions, not the base's (which would not know its handles)
        local native = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, H.base().tcp))
        if layers == 1 then assert.equal(host.extension(native, "AcceptEx"), mine)
        else assert.not_equal(host.extension(native, "AcceptEx"), mine) end
        local c = tcp()
        H.fails_with("WSAEINVAL", host.connectex(c, host.getsockname(l), "", host.overlapped()))
        H.fails_with("WSAEINVAL", host.connectex(c, host.getsockname(l), "", nil))   -- no overlapped
        local as = tcp()
        H.fails_with("WSAEFAULT", host.acceptex(l, as, 0, host.overlapped(), {["local"] = 10}))
        H.fails_with("WSAEINVAL", host.acceptex(as, tcp(), 0, host.overlapped()))   -- not listening
        H.fails_with("WSAEINVAL", host.disconnectex(c, nil, 0x80))
        -- closing the listener aborts a pending AcceptEx
        local ev = host.create_event()
        local ov = host.overlapped(ev)
        H.fails_with("WSA_IO_PENDING", host.acceptex(l, as, 16, ov))
        assert(host.close(l))
        assert.equal(1, host.wait({ev}, false, 5000))
        assert.equal(wsp.WSA_OPERATION_ABORTED, ov.OffsetHigh)
      end)

      it("aborts an AcceptEx and a WSARecvMsg left pending at the last cleanup", function()
        local l = listener()
        local ev = host.create_event()
        local ov = host.overlapped(ev)
        H.fails_with("WSA_IO_PENDING", host.acceptex(l, tcp(), 16, ov))
        local u = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
        assert(host.bind(u, "127.0.0.1:0"))
        local uev = host.create_event()
        local uov = host.overlapped(uev)
        H.fails_with("WSA_IO_PENDING", host.wsarecvmsg(u, 10, uov))
        host.cleanup()
        assert.equal(1, host.wait({ev}, false, 5000))
        assert.equal(1, host.wait({uev}, false, 5000))
        assert.equal(wsp.WSA_OPERATION_ABORTED, ov.OffsetHigh)
        assert.equal(wsp.WSA_OPERATION_ABORTED, uov.OffsetHigh)
      end)

      it("answers SIO_BSP_HANDLE* with the top socket and SIO_BASE_HANDLE with the base provider's", function()
        local s = tcp()
        for _, code in ipairs{wsp.SIO_BSP_HANDLE, wsp.SIO_BSP_HANDLE_SELECT, wsp.SIO_BSP_HANDLE_POLL} do
          local out = assert(host.ioctl(s, code, nil, 8))
          assert.equal(s, (string.unpack("<I8", out)))
          H.fails_with("WSAEFAULT", host.ioctl(s, code, nil, 4))
        end
        local base = string.unpack("<I8", assert(host.ioctl(s, wsp.SIO_BASE_HANDLE, nil, 8)))
        if layers == 1 then
          assert.equal(s, base)
        else
          assert.not_equal(s, base)                 -- the native base's own socket under the layers
          local info = assert(host.socket_info(base))
          assert.is_table(info)
        end
        H.fails_with("WSAEFAULT", host.ioctl(s, wsp.SIO_BASE_HANDLE, nil, 4))
      end)
    end)
  end

  describe("in the layered examples", function()
    local lwsp = H.lwsp
    local function over(native, script, extra)
      local dir = H.tmp .. "/" .. lwsp.guid():sub(2, 9)
      H.mkdir(dir)
      assert(io.open(dir .. "/" .. script, "w")):write(assert(io.open(H.root .. "/examples/" .. script)):read("a")):close()
      for name, text in pairs(extra or {}) do assert(io.open(dir .. "/" .. name, "w")):write(text):close() end
      return H.layered{script = dir .. "/" .. script, over = native, name = script}
    end

    it("the firewall refuses a ConnectEx its rules deny and lets the rest through", function()
      local native = H.base()
      local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
      assert(host.bind(l, "127.0.0.1:0"))
      assert(host.listen(l, 8))
      local port = host.getsockname(l).port
      local f = over(native, "firewall.lua", {["firewall.rules"] = ("deny 127.0.0.1 %d\n"):format(port)})
      local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, f.tcp))
      assert(host.bind(c, "127.0.0.1:0"))
      local mark = H.mark()
      H.fails_with("WSAECONNREFUSED", host.connectex(c, host.getsockname(l), "x", host.overlapped()))
      assert.truthy(H.find_log(mark, ("denied 127.0.0.1:%d"):format(port), true))
      local other = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
      assert(host.bind(other, "127.0.0.1:0"))
      assert(host.listen(other, 8))
      local ev = host.create_event()
      local ov = host.overlapped(ev)
      H.fails_with("WSA_IO_PENDING", host.connectex(c, host.getsockname(other), "through", ov))
      assert.equal(1, host.wait({ev}, false, 5000))
      assert.equal(0, ov.OffsetHigh)
      local a = assert(host.accept(other))
      assert.equal("through", (host.recv(a, 20)))
    end)

    it("the meter counts the traffic of connections made by ConnectEx and accepted by AcceptEx", function()
      local native = H.base()
      local m = over(native, "meter.lua")
      local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, m.tcp))
      assert(host.bind(l, "127.0.0.1:0"))
      assert(host.listen(l, 8))
      local as = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, m.tcp))
      local aev, cev = host.create_event(), host.create_event()
      local aov, cov = host.overlapped(aev), host.overlapped(cev)
      H.fails_with("WSA_IO_PENDING", host.acceptex(l, as, 0, aov))
      local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, m.tcp))
      assert(host.bind(c, "127.0.0.1:0"))
      H.fails_with("WSA_IO_PENDING", host.connectex(c, host.getsockname(l), "", cov))
      assert.equal(1, host.wait({aev}, false, 5000))
      assert.equal(1, host.wait({cev}, false, 5000))
      assert.equal(5, host.send(c, "12345"))
      assert.equal("12345", (host.recv(as, 10)))
      assert.equal(3, host.send(as, "abc"))
      assert.equal("abc", (host.recv(c, 10)))
      local mark = H.mark()
      host.close(c)
      host.close(as)
      local lines = table.concat(H.logs(mark), "\n")
      assert.truthy(lines:find("sent 5 B in 1 call(s), received 3 B in 1 call(s)", 1, true), lines)
      assert.truthy(lines:find("sent 3 B in 1 call(s), received 5 B in 1 call(s)", 1, true), lines)
    end)

    it("the meter counts the data a ConnectEx sends and an AcceptEx receives", function()
      local native = H.base()
      local m = over(native, "meter.lua")
      local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, m.tcp))
      assert(host.bind(l, "127.0.0.1:0"))
      assert(host.listen(l, 8))
      local as = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, m.tcp))
      local aev, cev = host.create_event(), host.create_event()
      local aov, cov = host.overlapped(aev), host.overlapped(cev)
      H.fails_with("WSA_IO_PENDING", host.acceptex(l, as, 64, aov))
      local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, m.tcp))
      assert(host.bind(c, "127.0.0.1:0"))
      H.fails_with("WSA_IO_PENDING", host.connectex(c, host.getsockname(l), "hello", cov))
      assert.equal(1, host.wait({cev}, false, 5000))
      assert.equal(1, host.wait({aev}, false, 5000))
      assert.equal("hello", aov.data)
      assert(host.setsockopt(as, wsp.SOL_SOCKET, wsp.SO_UPDATE_ACCEPT_CONTEXT, string.pack("<I8", l)))
      assert.equal(2, host.send(as, "ok"))
      assert.equal("ok", H.recv_within(c, 2, 5))
      local mark = H.mark()
      host.close(c)
      host.close(as)
      local lines = table.concat(H.logs(mark), "\n")
      assert.truthy(lines:find("sent 5 B in 1 call(s), received 2 B in 1 call(s)", 1, true), lines)
      assert.truthy(lines:find("sent 2 B in 1 call(s), received 5 B in 1 call(s)", 1, true), lines)
    end)
  end)

  it("the host refuses bad arguments to its extension calls with a Lua argument error", function()
    local r = H.base()
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert.has_error(function() host.extension(s, "NoSuchFunction") end)
    assert.has_error(function() host.acceptex(s, s, -1, host.overlapped()) end)
    assert.has_error(function() host.acceptex(s, s, 0, host.overlapped(), {["local"] = 5000}) end)
    assert.has_error(function() host.wsarecvmsg(s, 2 ^ 40) end)
    assert.has_error(function() host.transmitpackets(s, {42}) end)
    local many = {}
    for i = 1, 65 do many[i] = "x" end
    assert.has_error(function() host.transmitpackets(s, many) end)
    assert.has_error(function() host.connectex(s, "not an address", "", host.overlapped()) end)
    -- a handle no provider knows is the provider's error, not a crash
    H.fails_with("WSAENOTSOCK", host.connectex(123456789, "127.0.0.1:9", "", host.overlapped()))
  end)

  describe("in the trace", function()
    after_each(function() require("wsp.trace").stop() end)

    it("names the ioctl's GUID and records the layer's ConnectEx and its result", function()
      local trace = require "wsp.trace"
      local native = H.base()
      local r = H.layered{script = H.root .. "/examples/passthrough.lua", over = native, name = "traced layer"}
      local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
      assert(host.bind(l, "127.0.0.1:0"))
      assert(host.listen(l, 8))
      local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
      assert(host.bind(c, "127.0.0.1:0"))
      trace.start()
      H.fails_with("WSA_IO_PENDING", host.connectex(c, host.getsockname(l), "hi", host.overlapped()))
      trace.stop()
      local ioctl, call
      for _, rec in ipairs(trace.records()) do
        if rec.name == "WSPIoctl" and rec.socket == c and rec.kind == "call" then ioctl = rec end
        if rec.name == "ConnectEx" and rec.socket == c and rec.kind == "return" then call = rec end
      end
      assert.truthy(ioctl, "no WSPIoctl record")
      assert.equal("SIO_GET_EXTENSION_FUNCTION_POINTER, WSAID_ConnectEx", ioctl.args)
      assert.truthy(call, "no ConnectEx record")
      assert.equal("WSA_IO_PENDING", call.errname)
    end)
  end)

  describe("with hostile handlers", function()
    local SRC = [[
local wsp = require "wsp"
local P = require("wsp.layered").new()
P.budget = 200000
function P.connectex(s, addr, data) error("connectex blew up") end
function P.acceptex(s) while true do end end
function P.disconnectex(s, flags) return nil, "nonsense" end
function P.wsasendmsg(s, to, flags) return nil, "WSAEACCES" end
return P
]]
    it("contains a handler that raises, runs away or returns nonsense: the call fails, the process goes on", function()
      local native = H.base()
      local r = H.layered{script = H.script(SRC), over = native, name = "hostile"}
      local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
      assert(host.bind(l, "127.0.0.1:0"))
      assert(host.listen(l, 8))
      local mark = H.mark()
      local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
      assert(host.bind(c, "127.0.0.1:0"))
      H.fails_with("WSAENETDOWN", host.connectex(c, host.getsockname(l), "x", host.overlapped()))
      assert.truthy(H.find_log(mark, "connectex blew up", true))
      local rl = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
      assert(host.bind(rl, "127.0.0.1:0"))
      assert(host.listen(rl, 8))
      local ok, err = host.acceptex(rl, assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp)), 0, host.overlapped())
      assert.is_nil(ok)
      assert.truthy(err:find("WSAENETDOWN") or err:find("WSAENOBUFS"), err)
      H.fails_with("WSAENETDOWN", host.disconnectex(c, nil, 0))
      local u = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
      H.fails_with("WSAEACCES", host.wsasendmsg(u, "x", "127.0.0.1:9"))
      -- the instance still serves ordinary calls
      assert(host.connect(c, host.getsockname(l)))
      local a = assert(host.accept(l))
      assert.equal(2, host.send(c, "ok"))
      assert.equal("ok", (host.recv(a, 10)))
    end)
  end)
end)
