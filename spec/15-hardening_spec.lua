-- Runaway and greedy scripts: a per-run instruction budget and a memory
-- ceiling turn them into Winsock errors while the provider keeps serving.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

local GREEDY = [[
local wsp = require "wsp"
local hoard = {}
return {
  budget = 200000,
  memory_limit = 8 * 1024 * 1024,
  socket = function(s) return true end,
  send = function(s, data)
    if data == "loop" then while true do end end
    if data == "hoard" then
      for i = 1, 1e9 do hoard[i] = ("x"):rep(1024) .. i end
    end
    if data == "release" then hoard = {}; collectgarbage(); return 7 end
    if data == "wrap-loop" then coroutine.wrap(function() while true do end end)() end
    if data == "resume-loop" then
      local ok, msg = coroutine.resume(coroutine.create(function() while true do end end))
      if not ok and msg:find("instruction budget exceeded", 1, true) then return 3 end
      return 0
    end
    return #data
  end,
  recv = function(s, len)
    wsp.wait(s)                       -- pending until woken, then runs away
    while true do end
  end,
  ioctl = function(s) wsp.wake(s) return nil end,
}
]]

describe("a provider's limits", function()
  local r, s
  before_each(function()
    r = H.provider(GREEDY)
    s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  end)
  after_each(H.reset)

  it("stop a handler that loops forever, name it in the log, and keep serving", function()
    local mark = H.mark()
    H.fails_with("WSAENETDOWN", host.send(s, "loop"))
    local line = H.find_log(mark, "handler 'send' (WSPSend) raised an error", true)
    assert.truthy(line)
    assert.truthy(line:find("instruction budget exceeded", 1, true))
    assert.equal(2, host.send(s, "ok"))
  end)

  it("stop a pending operation's handler that runs away after it was woken", function()
    local ev = host.create_event()
    local ov = host.overlapped(ev)
    H.fails_with("WSA_IO_PENDING", host.wsarecv(s, 10, ov))
    host.ioctl(s, 1, nil, 0)             -- wakes it
    assert.is_true(host.event_state(ev))
    assert.equal(wsp.WSAENETDOWN, ov.OffsetHigh)
    assert.equal(2, host.send(s, "ok"))
  end)

  it("stop a handler that loops forever inside a coroutine of its own", function()
    local mark = H.mark()
    H.fails_with("WSAENETDOWN", host.send(s, "wrap-loop"))
    local line = H.find_log(mark, "handler 'send' (WSPSend) raised an error", true)
    assert.truthy(line and line:find("instruction budget exceeded", 1, true))
    -- coroutine.resume reports the stop to the handler, which is stopped all the same
    H.fails_with("WSAENETDOWN", host.send(s, "resume-loop"))
    assert.equal(2, host.send(s, "ok"))
  end)

  it("turn an allocation past the memory ceiling into WSAENOBUFS, then recover", function()
    H.fails_with("WSAENOBUFS", host.send(s, "hoard"))
    assert.equal(7, host.send(s, "release"))
    assert.equal(2, host.send(s, "ok"))
  end)
end)

-- The budget is kept by a watchdog: a run gets the count hook only once it
-- has lasted a watchdog tick, so a short handler runs with no hook at all.
local PATIENT = [[
return {
  budget = 1000000000,
  socket = function(s) return true end,
  send = function(s, data)
    if data == "hook?" then return debug.gethook() and 1 or 0 end
    if data == "long" then                     -- well within the budget, longer than a tick
      local t0 = os.clock()
      while os.clock() - t0 < 0.3 do for _ = 1, 10000 do end end
      return debug.gethook() and 1 or 0
    end
    if data == "co-hook" then                  -- the hook is the budget's: a script cannot set its own
      return (debug.sethook == nil and debug.gethook ~= nil) and 5 or 0
    end
    if data == "coroutines" then               -- resume and wrap keep their meaning
      local gen = coroutine.wrap(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
      local x, y = gen(1), gen(10)
      local ok, err = pcall(coroutine.wrap(function() error("boom") end))
      local co = coroutine.create(function(v) coroutine.yield(v) end)
      local r1, v1 = coroutine.resume(co, 5)
      local r2 = coroutine.resume(co)
      local r3, dead = coroutine.resume(co)
      if x == 2 and y == 20 and not ok and err:find(":%d+: boom$") and r1 and v1 == 5 and r2 and not r3
        and dead == "cannot resume dead coroutine" and not pcall(coroutine.resume, 42) then
        return 4
      end
      return 0
    end
    return #data
  end,
}
]]

describe("the instruction budget's watchdog", function()
  local s
  before_each(function()
    local r = H.provider(PATIENT)
    s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  end)
  after_each(H.reset)

  it("leaves a short handler unhooked", function()
    for _ = 1, 20 do assert.equal(0, host.send(s, "hook?")) end
  end)

  it("hooks a run that lasts past a tick, and lets it finish within its budget", function()
    assert.equal(1, host.send(s, "long"))
    assert.equal(0, host.send(s, "hook?"))   -- the next run starts unhooked again
  end)

  it("keeps coroutine.resume and coroutine.wrap as Lua defines them", function()
    assert.equal(4, host.send(s, "coroutines"))
    assert.equal(5, host.send(s, "co-hook"))
  end)
end)
