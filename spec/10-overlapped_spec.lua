-- Overlapped I/O through a Lua provider whose handlers wait (memnet): every
-- completion mechanism, the WSAOVERLAPPED fields at each stage, immediate
-- success and failure, GetOverlappedResult, and aborts on close and cleanup.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

local pair = H.memnet_pair

local function pending(ok, msg, code)
  H.fails_with("WSA_IO_PENDING", ok, msg, code)
  return true
end

describe("overlapped operations", function()
  local r, c, a
  before_each(function()
    r = H.provider("examples/memnet.lua")
    c, a = pair(r)
    host.completions()
  end)
  after_each(H.reset)

  it("signal the event, with the WSAOVERLAPPED fields right at each stage", function()
    local ev = host.create_event()
    local ov = host.overlapped(ev)
    pending(host.wsarecv(a, 100, ov))
    assert.equal(wsp.WSS_OPERATION_IN_PROGRESS, ov.Internal)
    assert.equal(0, ov.InternalHigh)
    H.fails_with("WSA_IO_INCOMPLETE", host.get_overlapped_result(a, ov, false))
    assert.is_false(host.event_state(ev))
    assert.equal(5, host.send(c, "hello"))
    assert.is_true(host.event_state(ev))
    assert.equal(0, ov.Internal)
    assert.equal(5, ov.InternalHigh)
    assert.equal(0, ov.Offset)
    assert.equal(0, ov.OffsetHigh)
    assert.equal("hello", ov.data)
    local bytes, flags = host.get_overlapped_result(a, ov, false)
    assert.equal(5, bytes)
    assert.equal(0, flags)
    assert.same({}, host.completions())
  end)

  it("run the completion routine on the issuing thread, only in an alertable wait, and nothing else", function()
    local ev = host.create_event()
    local ov = host.overlapped(ev)
    local port = host.port()
    assert(host.associate(a, port, 9))
    pending(host.wsarecv(a, 100, ov, {routine = true}))
    assert.equal(7, host.send(c, "routine"))
    assert.equal(7, ov.InternalHigh)            -- recorded at completion
    assert.same({}, host.completions())          -- but not delivered yet
    assert.equal("timeout", host.sleep(0, false))
    assert.is_false(host.spawn("sleep", 50):join()) -- another thread's alertable wait runs nothing
    assert.same({}, host.completions())
    assert.equal("io_completion", host.sleep(1000, true))
    local done = host.completions()
    assert.equal(1, #done)
    assert.same({error = 0, bytes = 7, overlapped = ov.address, flags = 0, thread = select(2, host.thread_id())}, done[1])
    assert.is_false(host.event_state(ev))        -- no event
    assert.same({nil, "timeout"}, {host.dequeue(port, 0)})  -- no packet
  end)

  it("post exactly one completion-port packet, and none when the event's low bit is set", function()
    local port = host.port()
    assert(host.associate(a, port, 42))
    local ov = host.overlapped()
    pending(host.wsarecv(a, 100, ov))
    host.send(c, "packet")
    local bytes, key, addr = host.dequeue(port, 1000)
    assert.equal(6, bytes)
    assert.equal(42, key)
    assert.equal(ov.address, addr)
    assert.same({nil, "timeout"}, {host.dequeue(port, 0)})
    local ev = host.create_event()
    local quiet = host.overlapped(ev | 1)
    pending(host.wsarecv(a, 100, quiet))
    host.send(c, "quiet")
    assert.is_true(host.event_state(ev))
    assert.equal("quiet", quiet.data)
    assert.same({nil, "timeout"}, {host.dequeue(port, 0)})
  end)

  it("complete at once when they can, and still notify by the caller's mechanism", function()
    local port = host.port()
    assert(host.associate(a, port, 5))
    local ev = host.create_event()
    local ov = host.overlapped(ev)
    host.send(c, "ready")
    local ok, bytes = host.wsarecv(a, 100, ov)
    assert.is_true(ok)
    assert.equal(5, bytes)
    assert.equal("ready", ov.data)
    assert.is_true(host.event_state(ev))
    assert.equal(5, (host.dequeue(port, 0)))
    local ov2 = host.overlapped()
    assert.is_true((host.wsasend(c, "sent at once", ov2, {routine = true})))
    assert.equal(12, ov2.InternalHigh)
    assert.equal("io_completion", host.sleep(1000, true))
    assert.equal(12, host.completions()[1].bytes)
  end)

  it("write the fields and notify nobody when they fail at once", function()
    local port = host.port()
    assert(host.associate(a, port, 5))
    local ev = host.create_event()
    local ov = host.overlapped(ev)
    assert(host.shutdown(a, wsp.SD_RECEIVE))
    H.fails_with("WSAESHUTDOWN", host.wsarecv(a, 100, ov))
    assert.equal(wsp.WSAESHUTDOWN, ov.OffsetHigh)
    assert.equal(wsp.WSAESHUTDOWN, ov.Internal)
    assert.is_false(host.event_state(ev))
    assert.same({nil, "timeout"}, {host.dequeue(port, 0)})
    H.fails_with("WSAEFAULT", host.wsaioctl(a, wsp.FIONREAD, nil, 2, host.overlapped(ev)))
    assert.is_false(host.event_state(ev))
  end)

  it("end when their handler's wsp.wait times out, also after the service thread has gone idle", function()
    -- each receive's handler waits 50 ms on a key nobody wakes; the service
    -- thread sleeps with nothing due between them and must see each deadline
    local w = H.provider("spec/providers/waiter.lua")
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, w.tcp))
    for _ = 1, 3 do
      local ev = host.create_event()
      local ov = host.overlapped(ev)
      pending(host.wsarecv(s, 10, ov))
      assert.equal(1, host.wait({ev}, false, 3000, false))
      assert.equal("timeout", ov.data)
      host.sleep(100, false)   -- the service thread runs out of deadlines
      host.close_object(ev)
    end
  end)

  it("let GetOverlappedResult wait for completion", function()
    local ov = host.overlapped(host.create_event())
    pending(host.wsarecv(a, 100, ov))
    local job = host.spawn("send", c, "from another thread")
    local bytes = host.get_overlapped_result(a, ov, true)
    assert.equal(19, bytes)
    assert.equal("from another thread", ov.data)
    assert.equal(19, job:join(5000))
  end)

  it("gather from and scatter into copies of the caller's WSABUF arrays", function()
    local ovs = {}
    for i = 1, 3 do
      ovs[i] = host.overlapped()
      pending(host.wsarecv(a, 4, ovs[i]))       -- the host's WSABUF arrays live on its stack
    end
    host.send(c, "abcdefghijkl")
    assert.same({"abcd", "efgh", "ijkl"}, {ovs[1].data, ovs[2].data, ovs[3].data})
  end)

  it("carry datagrams with the sender's address", function()
    local u1 = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
    local u2 = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
    assert(host.bind(u1, "127.0.0.1:0"))
    local ov = host.overlapped(host.create_event())
    pending(host.wsarecv(u1, 100, ov, {from = true}))
    local sov = host.overlapped()
    assert.is_true((host.wsasend(u2, "dgram", sov, {to = host.getsockname(u1)})))
    assert.equal("dgram", ov.data)
    assert.same(host.getsockname(u2), ov.from)
  end)

  it("are aborted by closesocket with WSA_OPERATION_ABORTED; the handle lives until the last delivery", function()
    local ev = host.create_event()
    local ov1 = host.overlapped(ev)
    local ov2 = host.overlapped()
    pending(host.wsarecv(a, 100, ov1))
    pending(host.wsarecv(a, 100, ov2, {routine = true}))
    assert.is_true(host.close(a))
    assert.is_true(host.event_state(ev))
    assert.equal(wsp.WSA_OPERATION_ABORTED, ov1.OffsetHigh)
    H.fails_with("WSA_OPERATION_ABORTED", host.get_overlapped_result(c, ov1))
    assert.truthy(host.socket_info(a))           -- the routine has not been delivered yet
    H.fails_with("WSAENOTSOCK", host.send(a, "x")) -- but the socket is closed to callers
    assert.equal("io_completion", host.sleep(1000, true))
    local done = host.completions()
    assert.equal(1, #done)
    assert.equal(wsp.WSA_OPERATION_ABORTED, done[1].error)
    H.fails_with("WSAENOTSOCK", host.socket_info(a))
  end)

  it("are aborted by the last WSPCleanup before the Lua state closes", function()
    local u = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
    assert(host.bind(u, "127.0.0.1:0"))
    local ev = host.create_event()
    local ov = host.overlapped(ev)
    pending(host.wsarecv(u, 100, ov, {from = true}))
    assert.equal(1, host.cleanup())
    assert.is_true(host.event_state(ev))
    assert.equal(wsp.WSA_OPERATION_ABORTED, ov.OffsetHigh)
  end)

  it("complete each exactly once over thousands of operations", function()
    local pairs_ = {}
    for i = 1, 50 do pairs_[i] = {pair(r)} end
    local port = host.port()
    local expect, ovs = 0, {}
    for round = 1, 20 do
      for i, p in ipairs(pairs_) do
        local pc, pa = p[1], p[2]
        assert(host.associate(pa, port, i))
        local ov = host.overlapped()
        pending(host.wsarecv(pa, 64, ov))
        ovs[#ovs + 1] = ov
        local msg = ("%d/%d"):format(round, i)
        if round % 2 == 0 then
          assert.equal(#msg, host.send(pc, msg))
        else
          local sov = host.overlapped()
          assert.is_true((host.wsasend(pc, msg, sov)))  -- pc is not associated: no packet for it
        end
        expect = expect + 1
        assert.equal(msg, ov.data)
      end
    end
    local n = 0
    while host.dequeue(port, 0) do n = n + 1 end
    assert.equal(expect, n)
    for _, ov in ipairs(ovs) do assert.is_false(ov.pending) end
  end)
end)
