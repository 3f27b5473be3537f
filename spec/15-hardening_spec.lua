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

  it("turn an allocation past the memory ceiling into WSAENOBUFS, then recover", function()
    H.fails_with("WSAENOBUFS", host.send(s, "hoard"))
    assert.equal(7, host.send(s, "release"))
    assert.equal(2, host.send(s, "ok"))
  end)
end)
