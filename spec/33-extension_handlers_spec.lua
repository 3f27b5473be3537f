-- Extension functions carried by a layer's own Lua handlers (connectex,
-- acceptex, disconnectex): the handler decides and calls the layer below's
-- function itself (base.connectex, ...), through one and two Lua layers over
-- the native base, with the 30 entries' conventions: completion by event and
-- by completion port, blocking and non-blocking calls, views, aborts.
local H = require "helpers"
local wsp, host = H.wsp, H.host

-- refuses a ConnectEx to the port in its configuration; lets the rest down
local GUARD = [[
local wsp = require "wsp"
local P = require("wsp.layered").new()
local base = P.base
function P.connectex(s, addr, data)
  if addr.port == wsp.config.port then
    wsp.log(("refused ConnectEx to %s"):format(wsp.format_address(addr)))
    return nil, wsp.WSAECONNREFUSED
  end
  return base.connectex(s, addr, data)
end
return P
]]

-- counts what ConnectEx sends and what AcceptEx receives, and the DisconnectEx calls
local COUNTER = [[
local wsp = require "wsp"
local P = require("wsp.layered").new()
local base = P.base
P.views = wsp.config.views
local sent, received = 0, 0
function P.connectex(s, addr, data)
  local n, c = base.connectex(s, addr, data)
  if not n then return nil, c end
  sent = sent + n
  wsp.log(("%s: ConnectEx sent %d of %d (%s), %d in all"):format(wsp.config.tag, n, #data, type(data), sent))
  return n
end
function P.acceptex(s, ns, len)
  local data, loc, rem = base.acceptex(s, ns, len)
  if not data then return nil, loc end
  received = received + #data
  wsp.log(("%s: AcceptEx received %d of %d from %s, %d in all"):format(wsp.config.tag, #data, len,
          wsp.format_address(rem), received))
  return data, loc, rem
end
function P.disconnectex(s, flags)
  wsp.log(("%s: DisconnectEx 0x%x"):format(wsp.config.tag, flags))
  return base.disconnectex(s, flags)
end
return P
]]

-- sees each datagram WSARecvMsg receives, and the destination address in its control data
local DEST = [[
local wsp = require "wsp"
local P = require("wsp.layered").new()
local base = P.base
P.views = wsp.config.views
function P.wsarecvmsg(s, len, control, flags)
  local data, from, ctl, fl = base.wsarecvmsg(s, len, control, flags)
  if not data then return nil, from end
  local to = "none"
  for _, c in ipairs(ctl) do
    if c.level == wsp.IPPROTO_IP and c.type == wsp.IP_PKTINFO then to = ("%d.%d.%d.%d"):format(c.data:byte(1, 4)) end
  end
  wsp.log(("%s: datagram of %d (%s) from %s to %s, %d of control, flags 0x%x"):format(wsp.config.tag,
          type(data) == "number" and data or #data, type(data), wsp.format_address(from), to, control, fl))
  return data, from, ctl, fl
end
return P
]]

local function count(mark, text)
  local n = 0
  for _, line in ipairs(H.logs(mark)) do if line:find(text, 1, true) then n = n + 1 end end
  return n
end

describe("extension functions carried by Lua handlers", function()
  after_each(H.reset)

  for layers = 1, 2 do
    describe(("through %d Lua layer%s over the native base"):format(layers, layers > 1 and "s" or ""), function()
      local native, top
      local function tcp(r) return assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, (r or top).tcp)) end
      local function listener(r)
        local l = tcp(r)
        assert(host.bind(l, "127.0.0.1:0"))
        assert(host.listen(l, 8))
        return l
      end

      describe("a guard", function()
        local refused
        before_each(function()
          native = H.base()
          refused = listener(native)
          top = native
          for i = 1, layers do
            top = H.layered{script = H.script(GUARD), over = top, name = "guard" .. i,
                            config = {port = host.getsockname(refused).port}}
          end
        end)

        it("refuses a ConnectEx to its port at once and lets another through", function()
          local c = tcp()
          assert(host.bind(c, "127.0.0.1:0"))
          local mark = H.mark()
          local ev = host.create_event()
          local ov = host.overlapped(ev)
          H.fails_with("WSAECONNREFUSED", host.connectex(c, host.getsockname(refused), "no", ov))
          assert.equal(wsp.WSAECONNREFUSED, ov.OffsetHigh)
          assert.equal("timeout", host.wait({ev}, false, 50))   -- failed at once: nobody is notified
          assert.equal(1, count(mark, "refused ConnectEx to 127.0.0.1:" .. host.getsockname(refused).port))
          local other = listener(native)
          H.fails_with("WSA_IO_PENDING", host.connectex(c, host.getsockname(other), "through", ov))
          assert.equal(1, host.wait({ev}, false, 5000))
          assert.equal(0, ov.OffsetHigh)
          assert.equal(7, ov.InternalHigh)
          assert(host.setsockopt(c, wsp.SOL_SOCKET, wsp.SO_UPDATE_CONNECT_CONTEXT, ""))
          local a = assert(host.accept(other))
          assert.equal("through", H.recv_within(a, 7, 5))
          assert.same(host.getsockname(c), host.getpeername(a))
        end)
      end)

      describe("a counter", function()
        local function install(views)
          native = H.base()
          top = native
          for i = 1, layers do
            top = H.layered{script = H.script(COUNTER), over = top, name = "counter" .. i,
                            config = {tag = "counter" .. i, views = views}}
          end
        end

        for _, views in ipairs{false, true} do
          it(("counts ConnectEx's data and AcceptEx's, completed on ports%s"):format(views and ", with views" or ""),
             function()
            install(views)
            local l = listener()
            local port = host.port()
            assert(host.associate(l, port, 1))
            local as = tcp()
            local aov = host.overlapped()
            H.fails_with("WSA_IO_PENDING", host.acceptex(l, as, 64, aov))
            local c = tcp()
            assert(host.bind(c, "127.0.0.1:0"))
            local cport = host.port()
            assert(host.associate(c, cport, 3))
            local cov = host.overlapped()
            local mark = H.mark()
            H.fails_with("WSA_IO_PENDING", host.connectex(c, host.getsockname(l), "hello", cov))
            local sent, key, addr = host.dequeue(cport, 5000)
            assert.equal(5, sent)
            assert.equal(3, key)
            assert.equal(cov.address, addr)
            local got, akey = host.dequeue(port, 5000)
            assert.equal(5, got)
            assert.equal(1, akey)
            assert.equal("hello", aov.data)
            -- the address blocks are the top layer's: its GetAcceptExSockaddrs reads them back
            local loc, rem = host.acceptex_sockaddrs(l, aov)
            assert.same(host.getsockname(l), loc)
            assert.same(host.getsockname(c), rem)
            assert(host.setsockopt(as, wsp.SOL_SOCKET, wsp.SO_UPDATE_ACCEPT_CONTEXT, string.pack("<I8", l)))
            assert.same(host.getsockname(c), host.getpeername(as))
            for i = 1, layers do
              assert.equal(1, count(mark, ("counter%d: ConnectEx sent 5 of 5 (%s), 5 in all"):format(i,
                                          views and "userdata" or "string")))
              assert.equal(1, count(mark, ("counter%d: AcceptEx received 5 of 64 from %s, 5 in all"):format(i,
                                          wsp.format_address(host.getsockname(c)))))
            end
            -- the connection carries ordinary traffic afterwards
            assert.equal(4, host.send(as, "echo"))
            assert.equal("echo", H.recv_within(c, 4, 5))
          end)
        end

        it("completes a DisconnectEx by event, blocks one without an overlapped, and reuses the socket", function()
          install(false)
          local l = listener(native)
          local c = tcp()
          assert(host.bind(c, "127.0.0.1:0"))
          local ev = host.create_event()
          local mark = H.mark()
          for round = 1, 2 do
            local ov = host.overlapped(ev)
            H.fails_with("WSA_IO_PENDING", host.connectex(c, host.getsockname(l), "round" .. round, ov))
            assert.equal(1, host.wait({ev}, false, 5000))
            assert.equal(0, ov.OffsetHigh)
            local a = assert(host.accept(l))
            assert.equal("round" .. round, H.recv_within(a, 6, 5))
            host.reset_event(ev)
            if round == 1 then
              local dov = host.overlapped(ev)
              local ok, err = host.disconnectex(c, dov, wsp.TF_REUSE_SOCKET)
              assert(ok or err:find("WSA_IO_PENDING"), err)
              assert.equal(1, host.wait({ev}, false, 5000))
              assert.equal(0, dov.OffsetHigh)
              host.reset_event(ev)
            else
              assert(host.disconnectex(c, nil, 0))       -- blocking: done when it returns
            end
            assert.equal("", H.recv_within(a, 1, 5))      -- the peer saw the orderly close
            assert(host.close(a))
          end
          assert.equal(2, count(mark, "counter1: DisconnectEx 0x"))
          for i = 1, layers do assert.equal(1, count(mark, ("counter%d: ConnectEx sent 6 of 6 (string), 12 in all"):format(i))) end
        end)

        it("shows the carried ConnectEx in the trace: its record, the handler's run, the call below", function()
          install(false)
          local trace = require "wsp.trace"
          local l = listener(native)
          local c = tcp()
          assert(host.bind(c, "127.0.0.1:0"))
          local ev = host.create_event()
          trace.start()
          H.fails_with("WSA_IO_PENDING", host.connectex(c, host.getsockname(l), "traced", host.overlapped(ev)))
          assert.equal(1, host.wait({ev}, false, 5000))
          trace.stop()
          local call, ret, run, below
          for _, rec in ipairs(trace.records()) do
            if rec.name == "ConnectEx" and rec.socket == c and rec.kind == "call" then call = rec end
            if rec.name == "ConnectEx" and rec.socket == c and rec.kind == "return" then ret = rec end
            if rec.name == "WSPIoctl" and rec.socket == c and rec.kind == "call" then run = rec end
            if rec.name == "ConnectEx" and rec.socket ~= c and rec.kind == "call" then below = rec end
          end
          assert.truthy(call, "no ConnectEx record")
          assert.equal("WSA_IO_PENDING", ret.errname)
          assert.truthy(run and run.seq > call.seq and run.seq < ret.seq, "the handler's run is not inside the call")
          if layers > 1 then assert.truthy(below, "no ConnectEx record in the layer below") end
          trace.stop()
        end)

        it("fails a DisconnectEx without an overlapped on a non-blocking socket with WSAEWOULDBLOCK", function()
          install(false)
          local l = listener(native)
          local c = tcp()
          assert(host.connect(c, host.getsockname(l)))
          assert(host.ioctl(c, wsp.FIONBIO, string.pack("<I4", 1), 0))
          H.fails_with("WSAEWOULDBLOCK", host.disconnectex(c, nil, 0))
        end)

        it("aborts a carried AcceptEx when its listener closes, and one left at the last cleanup", function()
          install(false)
          local ev = host.create_event()
          local ov = host.overlapped(ev)
          local l = listener()
          H.fails_with("WSA_IO_PENDING", host.acceptex(l, tcp(), 16, ov))
          assert.equal("timeout", host.wait({ev}, false, 50))
          assert(host.close(l))
          assert.equal(1, host.wait({ev}, false, 5000))
          assert.equal(wsp.WSA_OPERATION_ABORTED, ov.OffsetHigh)
          local ev2 = host.create_event()
          local ov2 = host.overlapped(ev2)
          H.fails_with("WSA_IO_PENDING", host.acceptex(listener(), tcp(), 16, ov2))
          host.cleanup()
          assert.equal(1, host.wait({ev2}, false, 5000))
          assert.equal(wsp.WSA_OPERATION_ABORTED, ov2.OffsetHigh)
        end)
      end)

      describe("a layer that sees each datagram WSARecvMsg receives", function()
        local udp
        local function install(views)
          native = H.base()
          top = native
          for i = 1, layers do
            top = H.layered{script = H.script(DEST), over = top, name = "dest" .. i,
                            config = {tag = "dest" .. i, views = views}}
          end
        end
        local function sockets()
          local u = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, top.udp))
          assert(host.bind(u, "127.0.0.1:0"))
          assert(host.setsockopt(u, wsp.IPPROTO_IP, wsp.IP_PKTINFO, string.pack("<i4", 1)))
          udp = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, native.udp))
          assert(host.bind(udp, "127.0.0.1:0"))
          return u
        end
        local dest = "127.0.0.1"

        for _, views in ipairs{false, true} do
          it(("passes each datagram and its destination up, blocking and completed by event%s"):format(
               views and ", with views" or ""), function()
            install(views)
            local u = sockets()
            local from = wsp.format_address(host.getsockname(udp))
            local mark = H.mark()
            assert(host.wsasendmsg(udp, "datagram", host.getsockname(u)))
            local m = assert(host.wsarecvmsg(u, 100))
            assert.equal("datagram", m.data)
            assert.same(host.getsockname(udp), m.from)
            assert.equal("127.0.0.1", m.destination.address)
            assert.is_true(m.ifindex > 0)
            local ev = host.create_event()
            local ov = host.overlapped(ev)
            H.fails_with("WSA_IO_PENDING", host.wsarecvmsg(u, 64, ov))
            assert.equal("timeout", host.wait({ev}, false, 50))
            assert(host.wsasendmsg(udp, "second", host.getsockname(u)))
            assert.equal(1, host.wait({ev}, false, 5000))
            assert.equal(0, ov.OffsetHigh)
            assert.equal(6, ov.InternalHigh)
            local res = host.recvmsg_result(ov)
            assert.equal("second", res.data)
            assert.equal("127.0.0.1", res.destination.address)
            local kind = views and "number" or "string"
            for i = 1, layers do
              assert.equal(1, count(mark, ("dest%d: datagram of 8 (%s) from %s to %s, 128 of control, flags 0x0"):format(
                                          i, kind, from, dest)))
              assert.equal(1, count(mark, ("dest%d: datagram of 6 (%s) from %s to %s, 128 of control, flags 0x0"):format(
                                          i, kind, from, dest)))
            end
          end)
        end

        it("completes on a port, and by routine with a datagram and control data cut short", function()
          install(false)
          local u = sockets()
          local port = host.port()
          assert(host.associate(u, port, 9))
          local ov = host.overlapped()
          H.fails_with("WSA_IO_PENDING", host.wsarecvmsg(u, 32, ov))
          assert(host.wsasendmsg(udp, "ported", host.getsockname(u)))
          local got, key, addr = host.dequeue(port, 5000)
          assert.equal(6, got)
          assert.equal(9, key)
          assert.equal(ov.address, addr)
          assert.equal("ported", host.recvmsg_result(ov).data)
          -- a routine, on the caller's thread; 4 bytes of a 9-byte datagram, 8 of control
          local u2 = sockets()
          local mark = H.mark()
          host.completions()
          local rov = host.overlapped()
          H.fails_with("WSA_IO_PENDING", host.wsarecvmsg(u2, 4, rov, {routine = true, control = 8}))
          assert(host.wsasendmsg(udp, "truncated", host.getsockname(u2)))
          local done = H.await_completions()
          assert.equal(1, #done)
          assert.equal(wsp.WSAEMSGSIZE, done[1].error)
          assert.equal(4, done[1].bytes)
          local res = host.recvmsg_result(rov)
          assert.equal("trun", res.data)
          assert.equal(wsp.MSG_TRUNC, res.flags & wsp.MSG_TRUNC)
          assert.equal(wsp.MSG_CTRUNC, res.flags & wsp.MSG_CTRUNC)
          assert.is_nil(res.destination)
          for i = 1, layers do
            assert.equal(1, count(mark, ("dest%d: datagram of 4 (string)"):format(i)))
          end
        end)

        it("fails without an overlapped on a non-blocking socket, and aborts on close and at cleanup", function()
          install(false)
          local u = sockets()
          assert(host.ioctl(u, wsp.FIONBIO, string.pack("<I4", 1), 0))
          H.fails_with("WSAEWOULDBLOCK", host.wsarecvmsg(u, 10))
          local ev = host.create_event()
          local ov = host.overlapped(ev)
          H.fails_with("WSA_IO_PENDING", host.wsarecvmsg(u, 10, ov))
          assert.equal("timeout", host.wait({ev}, false, 50))
          assert(host.close(u))
          assert.equal(1, host.wait({ev}, false, 5000))
          assert.equal(wsp.WSA_OPERATION_ABORTED, ov.OffsetHigh)
          local ev2 = host.create_event()
          local ov2 = host.overlapped(ev2)
          H.fails_with("WSA_IO_PENDING", host.wsarecvmsg(sockets(), 10, ov2))
          host.cleanup()
          assert.equal(1, host.wait({ev2}, false, 5000))
          assert.equal(wsp.WSA_OPERATION_ABORTED, ov2.OffsetHigh)
        end)

        it("shows the carried WSARecvMsg in the trace around the handler's run", function()
          install(false)
          local trace = require "wsp.trace"
          local u = sockets()
          assert(host.wsasendmsg(udp, "traced", host.getsockname(u)))
          trace.start()
          local m = assert(host.wsarecvmsg(u, 10))
          trace.stop()
          assert.equal("traced", m.data)
          local call, ret, run
          for _, rec in ipairs(trace.records()) do
            if rec.name == "WSARecvMsg" and rec.socket == u and rec.kind == "call" then call = rec end
            if rec.name == "WSARecvMsg" and rec.socket == u and rec.kind == "return" then ret = rec end
            if rec.name == "WSPIoctl" and rec.socket == u and rec.kind == "call" then run = rec end
          end
          assert.truthy(call, "no WSARecvMsg record")
          assert.truthy(ret, "no WSARecvMsg return")
          assert.truthy(run and run.seq > call.seq and run.seq < ret.seq, "the handler's run is not inside the call")
        end)
      end)
    end)
  end
end)
