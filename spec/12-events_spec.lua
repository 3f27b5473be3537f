-- Network events: WSPEventSelect, WSPEnumNetworkEvents, WSPAsyncSelect and
-- WSPSelect, answered by lwsp's C core from the events providers report.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

local EVENTS = {
  "FD_READ", "FD_WRITE", "FD_OOB", "FD_ACCEPT", "FD_CONNECT", "FD_CLOSE", "FD_QOS", "FD_GROUP_QOS",
  "FD_ROUTING_INTERFACE_CHANGE", "FD_ADDRESS_LIST_CHANGE",
}

describe("network events reported by a provider", function()
  local r, s
  local function raise(bit, err) assert(host.ioctl(s, 0x7200, ("%d,%d"):format(bit, err or 0), 0)) end

  before_each(function()
    r = H.provider("spec/providers/eventer.lua")
    s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  end)
  after_each(H.reset)

  for i, name in ipairs(EVENTS) do
    it(name .. " reaches an event select with its error code, and enumerating clears it and resets the event", function()
      local bit, err = wsp[name], 10000 + i
      local ev = host.create_event()
      assert.is_true(host.event_select(s, ev, bit))
      assert.is_false(host.event_state(ev))
      raise(bit, err)
      assert.is_true(host.event_state(ev))
      assert.equal(1, host.wait({ev}, false, 0))
      local mask, errors = host.enum_network_events(s, ev)
      assert.equal(bit, mask)
      assert.same({[bit] = err}, errors)
      assert.is_false(host.event_state(ev))
      assert.equal(0, (host.enum_network_events(s)))
    end)

    it(name .. " reaches an async select as WSAMAKESELECTREPLY(event, error)", function()
      local bit, err = wsp[name], 20000 + i
      local w = host.window()
      assert.is_true(host.async_select(s, w, 0x0500, bit))
      raise(bit, err)
      assert.same({{msg = 0x0500, wparam = s, lparam = (err << 16) | bit, event = bit, error = err}}, host.messages(w))
      host.close_object(w)
    end)
  end

  it("ignores events the application did not select", function()
    local w = host.window()
    assert.is_true(host.async_select(s, w, 0x0401, wsp.FD_READ))
    raise(wsp.FD_WRITE)
    assert.same({}, host.messages(w))
  end)

  local function count(w) return #host.messages(w) end

  local rules = {
    {"FD_READ", "recv", function() host.recv(s, 10) end},
    {"FD_OOB", "recv with MSG_OOB", function() host.recv(s, 10, wsp.MSG_OOB) end, function() host.recv(s, 10) end},
    {"FD_ACCEPT", "accept", function() host.accept(s) end},
    {"FD_CONNECT", "connect", function() host.connect(s, "10.0.0.2:80") end},
    {"FD_WRITE", "a send that would block", function() host.send(s, "x", 1) end, function() host.send(s, "x") end},
    {"FD_QOS", "SIO_GET_QOS", function() host.ioctl(s, wsp.SIO_GET_QOS, nil, 0) end},
    {"FD_GROUP_QOS", "SIO_GET_GROUP_QOS", function() host.ioctl(s, wsp.SIO_GET_GROUP_QOS, nil, 0) end},
    {"FD_ROUTING_INTERFACE_CHANGE", "SIO_ROUTING_INTERFACE_CHANGE",
      function() host.ioctl(s, wsp.SIO_ROUTING_INTERFACE_CHANGE, nil, 0) end},
    {"FD_ADDRESS_LIST_CHANGE", "SIO_ADDRESS_LIST_CHANGE", function() host.ioctl(s, wsp.SIO_ADDRESS_LIST_CHANGE, nil, 0) end},
  }
  for _, rule in ipairs(rules) do
    local name, by, rearm, not_rearm = rule[1], rule[2], rule[3], rule[4]
    it(name .. " is recorded once, then again only after " .. by, function()
      local bit = wsp[name]
      local w = host.window()
      assert.is_true(host.async_select(s, w, 0x0401, bit))
      raise(bit)
      assert.equal(1, count(w))
      raise(bit)
      assert.equal(0, count(w))
      if not_rearm then
        not_rearm()
        raise(bit)
        assert.equal(0, count(w))
      end
      rearm()
      raise(bit)
      assert.equal(1, count(w))
    end)
  end

  it("FD_CLOSE is recorded once and never re-armed", function()
    local w = host.window()
    assert.is_true(host.async_select(s, w, 0x0401, wsp.FD_CLOSE | wsp.FD_READ))
    raise(wsp.FD_CLOSE)
    assert.equal(1, count(w))
    for _, rearm in ipairs(rules) do rearm[3]() end
    raise(wsp.FD_CLOSE)
    assert.equal(0, count(w))
  end)

  it("records conditions standing when the events are selected", function()
    raise(wsp.FD_WRITE)
    raise(wsp.FD_CLOSE, wsp.WSAECONNRESET)
    local ev = host.create_event()
    assert.is_true(host.event_select(s, ev, wsp.FD_WRITE | wsp.FD_CLOSE))
    assert.is_true(host.event_state(ev))
    local mask, errors = host.enum_network_events(s, ev)
    assert.equal(wsp.FD_WRITE | wsp.FD_CLOSE, mask)
    assert.equal(wsp.WSAECONNRESET, errors[wsp.FD_CLOSE])
  end)

  it("switches between event select and async select, each cancelling the other", function()
    local ev, w = host.create_event(), host.window()
    assert.is_true(host.async_select(s, w, 7, wsp.FD_READ))
    assert.is_true(host.event_select(s, ev, wsp.FD_READ))
    raise(wsp.FD_READ)
    assert.equal(0, count(w))
    assert.is_true(host.event_state(ev))
    host.enum_network_events(s, ev)
    host.recv(s, 1)
    assert.is_true(host.async_select(s, w, 7, wsp.FD_READ))
    raise(wsp.FD_READ)
    assert.equal(1, count(w))
    assert.is_false(host.event_state(ev))
    assert.is_true(host.async_select(s, w, 0, 0))       -- cancels
    host.recv(s, 1)
    raise(wsp.FD_READ)
    assert.equal(0, count(w))
  end)

  it("puts the socket in non-blocking mode for good", function()
    local ev = host.create_event()
    assert.is_true(host.event_select(s, ev, wsp.FD_READ))
    H.fails_with("WSAEINVAL", host.ioctl(s, wsp.FIONBIO, 0))
  end)

  it("rejects bad arguments with the documented errors", function()
    local ev = host.create_event()
    H.fails_with("WSAEINVAL", host.event_select(s, 0, wsp.FD_READ))        -- no event object
    H.fails_with("WSAEINVAL", host.event_select(s, ev, 0x4000))            -- not an FD_* mask
    H.fails_with("WSAEINVAL", host.async_select(s, 0, 1, wsp.FD_READ))     -- no window
    H.fails_with("WSAEINVAL", host.async_select(s, host.window(), 0x0401, -1))
    H.fails_with("WSAEINVAL", host.enum_network_events(s, 424242))         -- not an event
    H.fails_with("WSAENOTSOCK", host.event_select(99999, ev, wsp.FD_READ))
    assert.equal(wsp.WSAEFAULT, host.probe("enumnetworkevents:null", s))
    assert.equal(wsp.WSAEINVAL, host.probe("select:all-null", s))
  end)
end)

describe("memnet's network events", function()
  local r
  before_each(function() r = H.provider("examples/memnet.lua") end)
  after_each(H.reset)

  local function listener()
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 8))
    return l
  end

  it("carry an echo exchange driven purely by event select", function()
    local l = listener()
    local lev, cev, sev = host.create_event(), host.create_event(), host.create_event()
    assert(host.event_select(l, lev, wsp.FD_ACCEPT))
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(host.event_select(c, cev, wsp.FD_CONNECT | wsp.FD_READ | wsp.FD_WRITE | wsp.FD_CLOSE))
    assert(host.connect(c, host.getsockname(l)))
    local server, connected, echoed, closed, sent = nil, false, {}, false, 0
    local messages = {"one", "two", "three", "four", "five"}
    for _ = 1, 200 do
      local which = host.wait({lev, cev, sev}, false, 1000)
      assert.is_number(which, "no event within a second")
      if which == 1 then
        local mask = host.enum_network_events(l, lev)
        assert.equal(wsp.FD_ACCEPT, mask)
        server = assert(host.accept(l))
        assert(host.event_select(server, sev, wsp.FD_READ | wsp.FD_CLOSE))
      elseif which == 2 then
        local mask, errors = host.enum_network_events(c, cev)
        if mask & wsp.FD_CONNECT ~= 0 then assert.equal(0, errors[wsp.FD_CONNECT]); connected = true end
        if mask & wsp.FD_WRITE ~= 0 and sent == 0 then
          sent = 1
          assert.equal(#messages[1], host.send(c, messages[1]))
        end
        if mask & wsp.FD_READ ~= 0 then
          local data = assert(host.recv(c, 100))
          echoed[#echoed + 1] = data
          if #echoed < #messages then
            sent = sent + 1
            host.send(c, messages[sent])
          else
            assert(host.shutdown(c, wsp.SD_SEND))
          end
        end
        if mask & wsp.FD_CLOSE ~= 0 then closed = true end
      else
        local mask = host.enum_network_events(server, sev)
        if mask & wsp.FD_READ ~= 0 then
          local data = assert(host.recv(server, 100))
          if data ~= "" then host.send(server, data:upper()) end
        end
        if mask & wsp.FD_CLOSE ~= 0 then assert(host.close(server)) end
      end
      if closed then break end
    end
    assert.is_true(connected)
    assert.same({"ONE", "TWO", "THREE", "FOUR", "FIVE"}, echoed)
    assert.is_true(closed)
  end)

  it("make sockets readable, writable and acceptable for select, with timeouts", function()
    local l = listener()
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local n, rd, wr, ex = host.select({l}, nil, nil, 0)
    assert.equal(0, n)
    assert(host.connect(c, host.getsockname(l)))
    n, rd = host.select({l}, nil, nil, 0)
    assert.same({l}, rd)
    local a = assert(host.accept(l))
    n, rd, wr, ex = host.select({a, c}, {a, c}, {a, c}, 0)
    assert.equal(2, n)
    assert.same({}, rd)
    assert.same({a, c}, wr)
    assert.same({}, ex)
    host.send(c, "ping")
    n, rd = host.select({a, c}, nil, nil, 0)
    assert.same({a}, rd)
    local t0 = os.clock()
    n, rd = host.select({c}, nil, nil, 0.05)        -- waits, then times out
    assert.equal(0, n)
    assert.same({}, rd)
    local job = host.spawn("send", a, "pong")
    n, rd = host.select({c}, nil, nil, 5)           -- woken by another thread's send
    assert.equal(1, n)
    assert.same({c}, rd)
    assert.equal(4, job:join(5000))
  end)

  it("select across sockets of two providers", function()
    local r2 = H.provider("examples/memnet.lua")
    local u1 = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
    local u2 = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r2.udp))
    assert(host.bind(u1, "127.0.0.1:0"))
    assert(host.bind(u2, "127.0.0.1:0"))
    local n, rd, wr = host.select({u1, u2}, {u1, u2}, nil, 0)
    assert.equal(2, n)
    assert.same({}, rd)
    assert.same({u1, u2}, wr)
    local t2 = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r2.udp))
    host.sendto(t2, "hi", host.getsockname(u2))
    n, rd = host.select({u1, u2}, nil, nil, 1)
    assert.equal(1, n)
    assert.same({u2}, rd)
  end)
end)
