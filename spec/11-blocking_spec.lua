-- Blocking calls wait in their own thread with the provider lock released,
-- poll the blocking hook, and end with WSAEINTR when cancelled or closed.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

local pair = H.memnet_pair

describe("blocking calls", function()
  local r, c, a, l
  before_each(function()
    r = H.provider("examples/memnet.lua")
    c, a, l = pair(r)
  end)
  after_each(H.reset)

  it("wait with the lock released until another thread's call wakes them", function()
    local job = host.spawn("recv", a, 100)
    assert.same({nil, "timeout"}, {job:join(50)})
    -- the provider still serves this thread while the other one waits
    assert.truthy(host.getsockname(c))
    assert.equal(4, host.send(c, "wake"))
    local data = job:join(5000)
    assert.equal("wake", data)
  end)

  it("block in accept until a connection arrives", function()
    local job = host.spawn("accept", l)
    assert.same({nil, "timeout"}, {job:join(30)})
    local c2 = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(host.connect(c2, host.getsockname(l)))
    local ns, from = job:join(5000)
    assert.is_number(ns)
    assert.same(host.getsockname(c2), from)
    assert.equal(3, host.send(c2, "new"))
    assert.equal("new", (host.recv(ns, 10)))
  end)

  it("poll the thread's blocking hook while they wait", function()
    local job = host.spawn("recv", a, 100, {count_hook = true})
    assert.same({nil, "timeout"}, {job:join(80)})
    assert.is_true(job:info().hook_calls > 0)
    host.send(c, "x")
    assert.equal("x", job:join(5000))
  end)

  it("fail with WSAEINTR when WSPCancelBlockingCall is called from the hook", function()
    local job = host.spawn("recv", a, 100, {cancel_after = 3})
    H.fails_with("WSAEINTR", job:join(5000))
    assert.equal(3, job:info().hook_calls)
    -- the socket carries on
    host.send(c, "after")
    assert.equal("after", (host.recv(a, 100)))
  end)

  it("fail with WSAEINTR when another thread closes the socket", function()
    local job = host.spawn("recv", a, 100)
    assert.same({nil, "timeout"}, {job:join(30)})
    assert.is_true(host.close(a))
    H.fails_with("WSAEINTR", job:join(5000))
  end)

  it("are interrupted by the last WSPCleanup, which waits for them to leave", function()
    -- (an accept: the sockets the host closes on its way out include a
    -- receive's peer, whose close would end a receive with no data instead)
    local job = host.spawn("accept", l)
    assert.same({nil, "timeout"}, {job:join(30)})
    assert.equal(1, host.cleanup())
    H.fails_with("WSAEINTR", job:join(5000))
  end)

  it("give WSAEWOULDBLOCK in non-blocking mode instead of waiting", function()
    assert.equal("", host.ioctl(a, wsp.FIONBIO, 1))
    H.fails_with("WSAEWOULDBLOCK", host.recv(a, 10))
    assert.equal("", host.ioctl(a, wsp.FIONBIO, 0))
    local job = host.spawn("recv", a, 10)
    assert.same({nil, "timeout"}, {job:join(30)})
    host.send(c, "blocking again")
    assert.equal("blocking ag", job:join(5000) .. "g")
  end)

  it("serve many threads at once, each getting its own data", function()
    local pairs_, jobs = {}, {}
    for i = 1, 8 do
      pairs_[i] = {pair(r)}
      jobs[i] = host.spawn("recv", pairs_[i][2], 100)
    end
    for i = 8, 1, -1 do host.send(pairs_[i][1], "thread " .. i) end
    for i = 1, 8 do assert.equal("thread " .. i, jobs[i]:join(5000)) end
  end)
end)

-- A provider that is memnet with the handlers of body (which sees wsp, net
-- and the handler table M) in place of memnet's own.
local function over_memnet(body)
  return [[
package.path = os.getenv("LWSP_EXAMPLES") .. "/?.lua;" .. package.path
local wsp = require "wsp"
local net = require "memnet"
local M = {}
for k, v in pairs(net) do M[k] = v end
]] .. body .. "\nreturn M\n"
end

local TIMED = over_memnet [[
-- recv waits for a timer on lwsp's service thread, or for its own timeout
function M.recv(s, len, flags)
  if len == 1 then
    local r = wsp.wait(s, 0.05)
    return r == "timeout" and "T" or "W", 0
  end
  wsp.after(0.05, function() s.inbox[#s.inbox + 1] = "timer"; wsp.wake(s) end)
  return net.recv(s, len, flags)
end
]]

describe("handlers that wait for time", function()
  after_each(H.reset)

  it("are woken by timers on lwsp's service thread, blocking or overlapped", function()
    local r = H.provider(TIMED)
    local c, a = pair(r)
    assert.equal("timer", (host.recv(a, 100)))
    local ev = host.create_event()
    local ov = host.overlapped(ev)
    H.fails_with("WSA_IO_PENDING", host.wsarecv(a, 100, ov))
    assert.equal(1, host.wait({ev}, false, 5000))
    assert.equal("timer", ov.data)
  end)

  it("see \"timeout\" when their wait's timeout passes", function()
    local r = H.provider(TIMED)
    local c, a = pair(r)
    assert.equal("T", (host.recv(a, 1)))
    local ev = host.create_event()
    local ov = host.overlapped(ev)
    H.fails_with("WSA_IO_PENDING", host.wsarecv(a, 1, ov))
    assert.equal(1, host.wait({ev}, false, 5000))
    assert.equal("T", ov.data)
  end)
end)

describe("many threads and operations at once", function()
  after_each(H.reset)

  it("complete every operation exactly once with the right bytes #stress", function()
    local r = H.provider("examples/memnet.lua")
    local pairs_ = {}
    for i = 1, 100 do pairs_[i] = {pair(r)} end
    local port = host.port()
    for i, p in ipairs(pairs_) do assert(host.associate(p[2], port, i)) end
    local rounds = tonumber(os.getenv("LWSP_STRESS_ROUNDS")) or 100
    local ops, bytes_expected = 0, 0
    for round = 1, rounds do
      local jobs, ovs = {}, {}
      for i, p in ipairs(pairs_) do
        local msg = ("r%d-p%d-%s"):format(round, i, ("x"):rep(i % 13))
        if i % 4 == 0 then
          jobs[#jobs + 1] = {host.spawn("recv", p[2], 200), msg}
        else
          local ov = host.overlapped()
          H.fails_with("WSA_IO_PENDING", host.wsarecv(p[2], 200, ov))
          ovs[#ovs + 1] = {ov, msg}
          bytes_expected = bytes_expected + #msg
        end
        ops = ops + 2
      end
      for i, p in ipairs(pairs_) do
        local msg = ("r%d-p%d-%s"):format(round, i, ("x"):rep(i % 13))
        if i % 3 == 0 then
          assert.equal(#msg, host.spawn("send", p[1], msg):join(5000))
        else
          assert.equal(#msg, host.send(p[1], msg))
        end
      end
      for _, j in ipairs(jobs) do assert.equal(j[2], j[1]:join(5000)) end
      for _, o in ipairs(ovs) do assert.equal(o[2], o[1].data) end
    end
    local packets, bytes = 0, 0
    while true do
      local n = host.dequeue(port, 0)
      if not n then break end
      packets, bytes = packets + 1, bytes + n
    end
    assert.equal(rounds * 75, packets)
    assert.equal(bytes_expected, bytes)
    assert.equal(rounds * 200, ops)
  end)
end)

local ASKS = over_memnet [[
-- recv answers whether it may wait, and what a timer is told
function M.recv(s, len, flags)
  local seen = {tostring(wsp.may_wait())}
  wsp.after(0, function() seen[#seen + 1] = "timer " .. tostring(wsp.may_wait()); wsp.wake(seen) end)
  if wsp.may_wait() then wsp.wait(seen) else seen[2] = "timer -" end
  return table.concat(seen, ", "), 0
end
]]

describe("wsp.may_wait", function()
  after_each(H.reset)

  it("says whether the running call may wait: blocking and overlapped yes, non-blocking no", function()
    local r = H.provider(ASKS)
    local c, a = pair(r)
    assert.equal("true, timer false", (host.recv(a, 100)))
    local ov = host.overlapped(host.create_event())
    H.fails_with("WSA_IO_PENDING", host.wsarecv(a, 100, ov))
    assert.equal(1, host.wait({ov.hEvent}, false, 5000))
    assert.equal("true, timer false", ov.data)
    assert.equal("", host.ioctl(a, wsp.FIONBIO, 1))
    assert.equal("false, timer -", (host.recv(a, 100)))
  end)
end)
