-- Fault injection: upcalls and calls to the layer below fail on demand (or
-- at random, seeded); every failure surfaces as the right Winsock error, no
-- socket or operation is leaked, and every pending operation completes once.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

local function live(guid)
  local st = host.bench_instance(guid)
  return st and st.sockets or 0
end

describe("injected upcall failures", function()
  local r
  before_each(function() r = H.provider("examples/memnet.lua") end)
  after_each(function() host.inject() H.reset() end)

  it("WPUCreateSocketHandle: socket() fails with its error and leaks no socket", function()
    assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert.equal(1, live(r.guid))
    host.inject("WPUCreateSocketHandle", {every = 1, error = wsp.WSAEMFILE})
    for _ = 1, 5 do H.fails_with("WSAEMFILE", host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp)) end
    assert.equal(1, live(r.guid))
    assert.equal(5, host.injected().WPUCreateSocketHandle)
    host.inject()
    assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  end)

  it("WPUCreateSocketHandle in accept: the connection attempt fails cleanly", function()
    local c, a, l = H.memnet_pair(r)
    local c2 = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(host.connect(c2, host.getsockname(l)))
    local before = live(r.guid)
    host.inject("WPUCreateSocketHandle", {count = 1, every = 1, error = wsp.WSAENOBUFS})
    H.fails_with("WSAENOBUFS", host.accept(l))
    assert.equal(before, live(r.guid))
    assert(host.accept(l))                        -- the queued connection is still there
  end)

  it("WPUQuerySocketHandleContext: the provider cannot find the socket (WSAENOTSOCK)", function()
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    host.inject("WPUQuerySocketHandleContext", {every = 1, error = wsp.WSAENOTSOCK})
    H.fails_with("WSAENOTSOCK", host.bind(s, "127.0.0.1:0"))
    host.inject()
    assert(host.bind(s, "127.0.0.1:0"))
  end)

  it("WPUCompleteOverlappedRequest: the operation still ends once, its fields written", function()
    local c, a = H.memnet_pair(r)
    local ev = host.create_event()
    local ov = host.overlapped(ev)
    H.fails_with("WSA_IO_PENDING", host.wsarecv(a, 100, ov))
    host.inject("WPUCompleteOverlappedRequest", {every = 1, error = wsp.WSAEINVAL})
    local mark = H.mark()
    host.send(c, "data")
    assert.equal(4, ov.InternalHigh)
    assert.is_false(ov.pending)
    assert.is_false(host.event_state(ev))          -- the notification is what failed
    assert.truthy(H.find_log(mark, "WPUCompleteOverlappedRequest failed", true))
    assert.equal(0, host.bench_instance(r.guid).pending)
  end)

  it("WPUSetEvent and WPUPostMessage: network events fail to signal, and say so", function()
    local c, a = H.memnet_pair(r)
    local ev = host.create_event()
    assert(host.event_select(a, ev, wsp.FD_READ))
    host.inject("WPUSetEvent", {every = 1, error = wsp.WSA_INVALID_HANDLE})
    local mark = H.mark()
    host.send(c, "x")
    assert.is_false(host.event_state(ev))
    assert.truthy(H.find_log(mark, "WPUSetEvent for socket", true))
    assert.equal(wsp.FD_READ, (host.enum_network_events(a, ev)))   -- still recorded
  end)
end)

describe("injected failures of the layer below", function()
  local native, layer
  before_each(function()
    native = H.base()
    layer = H.layered{script = H.root .. "/examples/passthrough.lua", over = native, name = "faulty"}
  end)
  after_each(function() host.inject() H.reset() end)

  local function pair()
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 16))
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, layer.tcp))
    assert(host.connect(c, host.getsockname(l)))
    return c, assert(host.accept(l)), l
  end

  it("surface as the application's errors", function()
    host.inject("lower.socket", {count = 1, every = 1, error = wsp.WSAEMFILE})
    H.fails_with("WSAEMFILE", host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, layer.tcp))
    assert.equal(0, host.bench_instance(layer.guid).sockets)
    local c, a = pair()
    host.inject("lower.send", {count = 1, every = 1, error = wsp.WSAENETRESET})
    H.fails_with("WSAENETRESET", host.send(c, "x"))
    assert.equal(1, host.send(c, "y"))
    assert.equal("y", (host.recv(a, 10)))
    host.inject("lower.recv", {count = 1, every = 1, error = wsp.WSAECONNABORTED})
    host.send(a, "z")
    H.fails_with("WSAECONNABORTED", host.recv(c, 10))
    assert.equal("z", (host.recv(c, 10)))
  end)

  it("at random, seeded: every call succeeds or fails with the injected error, nothing leaks", function()
    host.inject("lower.send", {probability = 0.2, seed = 42, error = wsp.WSAENETRESET})
    host.inject("lower.recv", {probability = 0.2, error = wsp.WSAENETRESET})
    local sent, received, failures = 0, 0, 0
    for round = 1, 20 do
      local c, a = pair()
      for i = 1, 10 do
        local msg = ("%d-%d;"):format(round, i)
        local n, _, code = host.send(c, msg)
        if n then sent = sent + n else assert.equal(wsp.WSAENETRESET, code); failures = failures + 1 end
      end
      host.shutdown(c, wsp.SD_SEND)
      local got = {}
      while true do
        local data = host.recv(a, 1000)
        if not data or data == "" then break end
        got[#got + 1] = data
      end
      received = received + #table.concat(got)
      host.close(c)
      host.close(a)
    end
    assert.is_true(failures > 0)
    assert.equal(sent, received)                      -- what was accepted arrived, nothing more
    assert.equal(0, host.bench_instance(layer.guid).sockets)
    assert.is_true(host.injected()["lower.send"] > 0)
  end)
end)

describe("each fault point", function()
  local r, native, layer
  before_each(function()
    r = H.provider("spec/providers/upcaller.lua")
    native = H.base()
    layer = H.layered{script = H.root .. "/examples/passthrough.lua", over = native, name = "points"}
  end)
  after_each(function() host.inject() host.cleanup() H.reset() end)

  local function run(s, code)
    local out = assert(host.ioctl(s, 0x7100, code, 1024))
    return assert(load(out))()
  end

  local upcalls = {
    {"WPUModifyIFSHandle", function(s) return run(s, ("return up.modify_ifs_handle(%d, 0x9200)"):format(r.tcp)) end},
    {"WPUCreateEvent", function(s) return run(s, "return up.create_event()") end},
    -- (a provider may set, reset and close only events it made itself)
    {"WPUSetEvent", function(s) return run(s, "return up.set_event(up.create_event())") end},
    {"WPUResetEvent", function(s) return run(s, "return up.reset_event(up.create_event())") end},
    {"WPUCloseEvent", function(s) return run(s, "return up.close_event(up.create_event())") end},
    {"WPUOpenCurrentThread", function(s) return run(s, "return up.open_current_thread()") end},
    {"WPUQueueApc", function(s) return run(s, "local t = up.open_current_thread() return up.queue_apc(t, print)") end},
  }
  for _, u in ipairs(upcalls) do
    it(u[1] .. " fails with the injected error, seen by the provider", function()
      local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
      host.inject(u[1], {every = 1, error = wsp.WSAEPROCLIM})
      H.fails_with("WSAEPROCLIM", u[2](s))
      assert.equal(1, host.injected()[u[1]])
    end)
  end

  it("WPUPostMessage fails, and the provider sees false", function()
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local w = host.window()
    assert.is_true(host.async_select(s, w, 0x401, wsp.FD_READ))
    host.inject("WPUPostMessage", {every = 1})
    assert.is_false(run(s, ("return up.post_message(%d, 0x401, %d, 3)"):format(w, s)))
    assert.same({}, host.messages(w))
  end)

  local lowers = {
    {"lower.bind", function(c) return host.bind(c, "127.0.0.1:0") end},
    {"lower.listen", function(c) assert(host.bind(c, "127.0.0.1:0")); return host.listen(c, 1) end},
    {"lower.connect", function(c, l) return host.connect(c, host.getsockname(l)) end},
    {"lower.getsockopt", function(c) return host.getsockopt(c, wsp.SOL_SOCKET, wsp.SO_TYPE) end},
    {"lower.setsockopt", function(c) return host.setsockopt(c, wsp.SOL_SOCKET, wsp.SO_RCVBUF, 4096) end},
    {"lower.ioctl", function(c) return host.ioctl(c, wsp.FIONREAD) end},
    {"lower.getsockname", function(c) assert(host.bind(c, "127.0.0.1:0")); return host.getsockname(c) end},
    {"lower.shutdown", function(c, l) assert(host.connect(c, host.getsockname(l))); return host.shutdown(c, wsp.SD_BOTH) end},
    {"lower.close", function(c) return host.close(c) end},
    {"lower.select", function(c, l) assert(host.connect(c, host.getsockname(l))); return host.select({c}, nil, nil, 0) end},
  }
  for _, f in ipairs(lowers) do
    it(f[1] .. " surfaces as the application's error and leaks nothing", function()
      local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
      assert(host.bind(l, "127.0.0.1:0"))
      assert(host.listen(l, 4))
      local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, layer.tcp))
      host.inject(f[1], {every = 1, count = 1, error = wsp.WSAENETDOWN})
      H.fails_with("WSAENETDOWN", f[2](c, l))
      assert.equal(1, host.injected()[f[1]])
      host.inject()
      assert(host.close(c))          -- after lower.close failed, the socket is still open: closing works now
      assert.equal(0, host.bench_instance(layer.guid).sockets)
    end)
  end

  it("lower.accept surfaces in accept, and the connection can still be accepted", function()
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, layer.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 4))
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
    assert(host.connect(c, host.getsockname(l)))
    host.inject("lower.accept", {every = 1, count = 1, error = wsp.WSAENOBUFS})
    H.fails_with("WSAENOBUFS", host.accept(l))
    assert.is_number((host.accept(l)))
  end)
end)
