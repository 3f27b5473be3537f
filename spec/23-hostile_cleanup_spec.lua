-- A provider's last WSPCleanup against every kind of call in flight, and a
-- provider that tries to reach the host that loaded it.  Lua layers over the
-- native base carry the calls: a handler inside a call down with the lock
-- released, an inherited call down, a blocking wait, a pending overlapped
-- operation, a GetOverlappedResult wait, a timer, an APC.  Every case ends by
-- itself, the process stays up, and the provider starts again and serves.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

-- A layered provider over the native base whose receive handler does, by the
-- length asked, one hostile thing; any other length is an ordinary receive.
local HOSTILE = [[
local wsp = require "wsp"
local lwsp = require "lwsp"
local P = require("wsp.layered").new()
local base = P.base
P.description = "hostile layer (spec 23)"
P.budget = 2000000

local function code(...) local a, _, c = ... if a == nil then return wsp.errname(c) end return "ok" end

local acts = {}
-- 101, 102: inside a call down with the lock released, with and without a timeout
acts[101] = function(s) wsp.log("IN-DOWN " .. s.handle); s.low:select({s.lh}, nil, nil, 1.5); return base.recv(s, 100, 0) end
acts[102] = function(s) wsp.log("IN-DOWN " .. s.handle); s.low:select({s.lh}, nil, nil); return base.recv(s, 100, 0) end
-- 103: calls down in a loop that ignores their failures (the budget ends it)
acts[103] = function(s)
  wsp.log("IN-DOWN " .. s.handle)
  while true do pcall(s.low.select, s.low, {s.lh}, nil, nil, 0.01) end
end
-- 104: a handler that never ends on its own (the budget ends it)
acts[104] = function(s) wsp.log("IN-DOWN " .. s.handle); local n = 0; while true do n = n + 1 end end
-- 105: inside a call down; then, the cleanup begun, a new lower layer and a call down
acts[105] = function(s)
  wsp.log("IN-DOWN " .. s.handle)
  local r = code(s.low:select({s.lh}, nil, nil, 1.5))
  wsp.log("AFTER select=" .. r .. " lower=" .. code(lwsp.lower(s.low:info().dwCatalogEntryId))
          .. " send=" .. code(s.low:send(s.lh, "x")))
  return nil, wsp.WSAENETDOWN
end
-- 4106: what `require "lwsp"` and friends give inside a provider
acts[4106] = function()
  local out = {}
  local function has(name, v) out[#out + 1] = name .. "=" .. (v ~= nil and "yes" or "no") end
  has("host", lwsp.host); has("trace", lwsp.trace); has("wsc", lwsp.wsc); has("set_log", lwsp.set_log)
  has("registry.set", lwsp.registry.set); has("registry.remove", lwsp.registry.remove)
  has("registry.set_root", lwsp.registry.set_root); has("registry.get", lwsp.registry.get)
  has("upcall", lwsp.upcall); has("after", lwsp.after); has("lower", lwsp.lower); has("provider", lwsp.provider)
  has("wsp.host", (pcall(require, "wsp.host")) or nil)
  has("wsp.trace", (pcall(require, "wsp.trace")) or nil)
  return table.concat(out, " "), 0
end
-- 4107: the module opened again by every way a script has
acts[4107] = function()
  local out = {}
  package.loaded.lwsp = nil
  local ok, again = pcall(require, "lwsp")
  out[#out + 1] = "require:" .. tostring(ok and again.host)
  -- the routes around it are closed too: no registry, no loadlib in a provider
  out[#out + 1] = "getregistry:" .. type(debug.getregistry)
  if package.loadlib then
    local open = package.loadlib(lwsp.path(), "luaopen_lwsp")
    local ok, m = pcall(open)
    out[#out + 1] = "loadlib:" .. tostring(ok and m.host)
  else
    out[#out + 1] = "loadlib:absent"
  end
  return table.concat(out, " "), 0
end
-- 108: a timer that goes down with the lock released
acts[108] = function(s)
  wsp.after(0, function() wsp.log("IN-TIMER"); s.low:select({s.lh}, nil, nil, 1.5) end)
  return "armed", 0
end
-- 109: a timer that sets itself again, for ever
acts[109] = function()
  local function tick() wsp.after(0.001, tick) end
  tick()
  return "ticking", 0
end
-- 110: a wait nobody ends
acts[110] = function(s) wsp.log("IN-WAIT " .. s.handle); wsp.wait({}); return "woken", 0 end
-- 111: a lower socket put in blocking mode
acts[111] = function(s) return code(s.low:ioctl(s.lh, wsp.FIONBIO, wsp.pack_int(0))), 0 end
-- 112: an APC queued to the calling thread
acts[112] = function()
  local t = assert(wsp.upcall.open_current_thread())
  APC_THREAD = t
  assert(wsp.upcall.queue_apc(t, function() wsp.log("APC RAN") end))
  return "queued", 0
end

function P.recv(s, len, flags)
  local act = type(len) == "number" and acts[len]
  if act then return act(s) end
  return base.recv(s, len, flags)
end

function P.cleanup()
  -- the instance is closing: a timer is not started, a wait is an error, the layer below still answers
  wsp.after(0, function() wsp.log("LATE TIMER") end)
  local waited = pcall(wsp.wait, {})
  wsp.log("CLEANUP HANDLER wait=" .. tostring(waited))
end

return P
]]

local native, hostile, xor, pass
local mark

local function install()
  native = host.install_native()
  hostile = host.install_layered{script = H.script(HOSTILE), over = native, name = "hostile"}
  xor = host.install_layered{script = H.root .. "/examples/xor.lua", over = native, name = "xor"}
  pass = host.install_layered{script = H.root .. "/examples/passthrough.lua", over = native, name = "pass"}
end

local function uninstall()
  host.cleanup()
  for _, r in ipairs{pass, xor, hostile, native} do host.uninstall_lua(r) end
end

-- A listener on the native base and a connected pair whose client side uses
-- the catalog entry given: client, accepted (native), listener.
local function pair(catalog, small)
  local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
  local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, catalog))
  if small then   -- small buffers both ways: a send of some 100 KiB waits for the peer to read
    assert(host.setsockopt(l, wsp.SOL_SOCKET, wsp.SO_RCVBUF, 4096))
    assert(host.setsockopt(c, wsp.SOL_SOCKET, wsp.SO_SNDBUF, 4096))
  end
  assert(host.bind(l, "127.0.0.1:0"))
  assert(host.listen(l, 16))
  assert(host.connect(c, host.getsockname(l)))
  local a = assert(host.accept(l))
  return c, a, l
end

-- Polls (up to 5 s) until f() is true.
local function await(f, what)
  for _ = 1, 1000 do
    if f() then return true end
    host.sleep(5)
  end
  error("waited 5 s for " .. what)
end

local function await_log(pattern)
  return await(function() return H.find_log(mark, pattern) ~= nil end, "a log line matching " .. pattern)
end

local function pending(r)
  local i = host.bench_instance(r.guid)
  return i and i.pending or 0
end

-- What examples/xor.lua puts on the wire for data (and takes back off it).
local function xored(data)
  return (data:gsub(".", function(ch) return string.char(ch:byte() ~ 0x5A) end))
end

-- The provider starts again and carries data both ways.
local function serves(r)
  local c, a = pair(r.tcp)
  local wire = r == xor and xored or function(d) return d end
  assert.equal(5, host.send(a, wire("hello")))
  assert.equal("hello", (host.recv(c, 100)))
  assert.equal(4, host.send(c, "ping"))
  assert.equal(wire("ping"), (host.recv(a, 100)))
  host.close(c)
  host.close(a)
end

-- The job failed with one of the codes named (or, when ok is allowed, ended well).
local function ended_with(job, codes)
  local res = table.pack(job:join(5000))
  assert(res[2] ~= "timeout", "the call did not end")
  if res[1] ~= nil then
    assert(codes.ok, "expected a failure, got " .. tostring(res[1]))
    return res
  end
  local name = wsp.errname(res[3])
  assert(codes[name], "unexpected " .. tostring(res[2]))
  return res
end

local INTR = {WSAEINTR = true, WSAENETDOWN = true, WSA_OPERATION_ABORTED = true, WSANOTINITIALISED = true}

describe("the last WSPCleanup against a call in flight #hostile", function()
  before_each(function() install(); mark = H.mark() end)
  after_each(uninstall)

  it("waits for a handler inside a call down with a timeout (the lock released)", function()
    local c = pair(hostile.tcp)
    local job = host.spawn("recv", c, 101)
    await_log("IN%-DOWN")
    assert.is_true(host.cleanup(false) >= 1)
    ended_with(job, INTR)
    assert.is_nil(host.bench_instance(hostile.guid))
    serves(hostile)
  end)

  it("waits for a handler inside a call down with no timeout, which ends with WSAEINTR", function()
    local c = pair(hostile.tcp)
    local job = host.spawn("recv", c, 102)
    await_log("IN%-DOWN")
    assert.is_true(host.cleanup(false) >= 1)
    ended_with(job, {WSAEINTR = true, WSAENETDOWN = true})
    serves(hostile)
  end)

  it("waits for a handler inside a call down when WSACleanup closes the sockets first", function()
    local c = pair(hostile.tcp)
    local job = host.spawn("recv", c, 101)
    await_log("IN%-DOWN")
    assert.is_true(host.cleanup() >= 1)
    -- the socket was closed under the call: Windows' native base may say so
    ended_with(job, {WSAEINTR = true, WSAENETDOWN = true, WSA_OPERATION_ABORTED = true,
      WSANOTINITIALISED = true, WSAENOTSOCK = true})
    serves(hostile)
  end)

  it("fails calls down at once once it has begun, so a handler looping on them ends", function()
    local c = pair(hostile.tcp)
    local job = host.spawn("recv", c, 103)
    await_log("IN%-DOWN")
    assert.is_true(host.cleanup(false) >= 1)
    ended_with(job, {WSAENETDOWN = true})
    assert.truthy(H.find_log(mark, "instruction budget exceeded"))
    serves(hostile)
  end)

  it("waits for a handler that runs away until its budget stops it", function()
    local c = pair(hostile.tcp)
    local job = host.spawn("recv", c, 104)
    await_log("IN%-DOWN")
    assert.is_true(host.cleanup(false) >= 1)
    ended_with(job, {WSAENETDOWN = true})
    serves(hostile)
  end)

  it("refuses a new lower layer and calls down to a handler that goes on once it has begun", function()
    local c = pair(hostile.tcp)
    local job = host.spawn("recv", c, 105)
    await_log("IN%-DOWN")
    assert.is_true(host.cleanup(false) >= 1)
    ended_with(job, {WSAENETDOWN = true})
    assert.truthy(H.find_log(mark, "AFTER select=WSAEINTR lower=WSAENETDOWN send=WSAENETDOWN", true))
    serves(hostile)
  end)

  it("ends a blocking receive waiting in a Lua handler (examples/xor.lua) with WSAEINTR", function()
    local c = pair(xor.tcp)
    local job = host.spawn("recv", c, 100)
    await(function() return pending(xor) > 0 end, "the receive to wait")
    assert.is_true(host.cleanup(false) >= 1)
    ended_with(job, {WSAEINTR = true})
    serves(xor)
  end)

  it("ends a blocking send through examples/xor.lua that waits for room below", function()
    local c = pair(xor.tcp, true)
    local job = host.spawn("send", c, ("z"):rep(1024 * 1024))
    await(function() return pending(xor) > 0 end, "the send to wait")
    assert.is_true(host.cleanup(false) >= 1)
    ended_with(job, INTR)
    serves(xor)
  end)

  it("ends an inherited blocking receive waiting on its own thread for the layer below", function()
    local c = pair(pass.tcp)
    local job = host.spawn("recv", c, 100)
    await(function() return pending(pass) > 0 end, "the receive to wait")
    assert.is_true(host.cleanup(false) >= 1)
    ended_with(job, {WSAEINTR = true})
    serves(pass)
  end)

  it("ends an inherited blocking send that waits for room in the layer below", function()
    local c = pair(pass.tcp, true)
    local job = host.spawn("send", c, ("z"):rep(1024 * 1024))
    await(function() return pending(pass) > 0 end, "the send to wait")
    assert.is_true(host.cleanup(false) >= 1)
    ended_with(job, INTR)
    serves(pass)
  end)

  it("aborts a pending overlapped receive: its event is signalled with WSA_OPERATION_ABORTED", function()
    local c = pair(xor.tcp)
    local ev = host.create_event()
    local ov = host.overlapped(ev)
    H.fails_with("WSA_IO_PENDING", host.wsarecv(c, 100, ov))
    assert.is_true(host.cleanup(false) >= 1)
    assert.equal(1, host.wait({ev}, false, 5000))
    assert.equal(wsp.WSA_OPERATION_ABORTED, ov.OffsetHigh)
    serves(xor)
  end)

  it("aborts a pending overlapped receive: its completion routine runs with WSA_OPERATION_ABORTED", function()
    local c = pair(pass.tcp)
    local ov = host.overlapped()
    host.completions()   -- (what earlier specs left)
    H.fails_with("WSA_IO_PENDING", host.wsarecv(c, 100, ov, {routine = true}))
    assert.is_true(host.cleanup(false) >= 1)
    local done = H.await_completions()
    assert.equal(1, #done)
    assert.equal(wsp.WSA_OPERATION_ABORTED, done[1].error)
    serves(pass)
  end)

  it("ends a WSPGetOverlappedResult that waits on another thread", function()
    local c = pair(xor.tcp)
    local ov = host.overlapped(host.create_event())
    H.fails_with("WSA_IO_PENDING", host.wsarecv(c, 100, ov))
    local job = host.spawn("overlapped_result", c, ov)
    assert.same({nil, "timeout"}, {job:join(20)})
    assert.is_true(host.cleanup(false) >= 1)
    ended_with(job, {WSA_OPERATION_ABORTED = true, WSANOTINITIALISED = true})
    serves(xor)
  end)

  it("joins a timer inside a call down on the service thread", function()
    local c = pair(hostile.tcp)
    assert.equal("armed", (host.recv(c, 108)))
    await_log("IN%-TIMER")
    assert.is_true(host.cleanup(false) >= 1)
    serves(hostile)
  end)

  it("stops a timer that sets itself again for ever", function()
    local c = pair(hostile.tcp)
    assert.equal("ticking", (host.recv(c, 109)))
    host.sleep(20)
    assert.is_true(host.cleanup(false) >= 1)
    assert.is_nil(host.bench_instance(hostile.guid))
    serves(hostile)
  end)

  it("ends a handler waiting on a key nobody wakes with WSAEINTR", function()
    local c = pair(hostile.tcp)
    local job = host.spawn("recv", c, 110)
    await_log("IN%-WAIT")
    assert.is_true(host.cleanup(false) >= 1)
    ended_with(job, {WSAEINTR = true})
    serves(hostile)
  end)

  it("ends an accept waiting in a Lua handler for the layer below", function()
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, xor.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 4))
    local job = host.spawn("accept", l)
    await(function() return pending(xor) > 0 end, "the accept to wait")
    assert.is_true(host.cleanup(false) >= 1)
    ended_with(job, {WSAEINTR = true})
    serves(xor)
  end)

  it("waits for a thread inside a lower Lua layer's handler, called down from an upper one", function()
    local outer = host.install_layered{script = H.root .. "/examples/passthrough.lua", over = hostile, name = "outer"}
    local c = pair(outer.tcp)
    local job = host.spawn("recv", c, 101)
    await_log("IN%-DOWN")
    assert.is_true(host.cleanup(false) >= 1)
    ended_with(job, INTR)
    assert.is_nil(host.bench_instance(outer.guid))
    assert.is_nil(host.bench_instance(hostile.guid))
    serves(outer)
    host.cleanup()
    host.uninstall_lua(outer)
  end)

  it("runs the script's cleanup handler last: no timer starts, no wait, the process goes on", function()
    local c = pair(hostile.tcp)
    assert.equal(5, host.send(c, "hello"))
    assert.is_true(host.cleanup(false) >= 1)
    assert.truthy(H.find_log(mark, "CLEANUP HANDLER wait=false", true))
    host.sleep(20)
    assert.is_nil(H.find_log(mark, "LATE TIMER", true))
    serves(hostile)
  end)
end)

describe("calls that meet a WSPCleanup under way #hostile", function()
  before_each(function() install(); mark = H.mark() end)
  after_each(uninstall)

  it("get WSANOTINITIALISED while the last WSPCleanup waits for the threads inside", function()
    local c = pair(hostile.tcp)
    local c2 = pair(hostile.tcp)
    local job = host.spawn("recv", c, 101)
    await_log("IN%-DOWN")
    local cleanup = host.spawn("cleanup", false)
    local res
    await(function() res = table.pack(host.getsockname(c2)); return res[1] == nil end, "the cleanup to begin")
    assert.equal(wsp.WSANOTINITIALISED, res[3])
    H.fails_with("WSANOTINITIALISED", host.recv(c2, 10))
    assert.is_true(cleanup:join(5000) >= 1)
    ended_with(job, INTR)
    serves(hostile)
  end)

  it("give a second WSACleanup on another thread nothing to clean twice", function()
    local c = pair(hostile.tcp)
    local job = host.spawn("recv", c, 101)
    await_log("IN%-DOWN")
    local one, two = host.spawn("cleanup", false), host.spawn("cleanup", false)
    local n1, n2 = one:join(5000), two:join(5000)
    assert.is_number(n1)
    assert.is_number(n2)
    assert.equal(0, host.cleanup(false))   -- nothing left loaded
    ended_with(job, INTR)
    serves(hostile)
    serves(xor)
  end)

  it("let WSPStartup on another thread race the last WSPCleanup: each startup succeeds and is given back", function()
    for _ = 1, 15 do
      local c = pair(pass.tcp)
      local job = host.spawn("startup", pass.tcp, 10)
      assert.equal(4, host.send(c, "ping"))
      host.cleanup(false)
      assert.equal(10, job:join(5000))
    end
    assert.is_nil(host.bench_instance(pass.guid))
    serves(pass)
  end)

  it("deliver or abort an overlapped receive completed by the service thread as the cleanup runs", function()
    for i = 1, 15 do
      local c, a = pair(xor.tcp)
      local ev = host.create_event()
      local ov = host.overlapped(ev)
      H.fails_with("WSA_IO_PENDING", host.wsarecv(c, 100, ov))
      assert.equal(2, host.send(a, "ok"))
      if i % 2 == 0 then host.sleep(i % 5) end
      host.cleanup(i % 3 == 0)
      assert.equal(1, host.wait({ev}, false, 5000))
      assert.is_true(ov.OffsetHigh == 0 or ov.OffsetHigh == wsp.WSA_OPERATION_ABORTED)
      host.close_object(ev)
    end
    serves(xor)
  end)

  it("stop the service thread while it delivers network events from the layer below", function()
    for i = 1, 10 do
      local c, a = pair(pass.tcp)
      local ev = host.create_event()
      assert(host.event_select(c, ev, wsp.FD_READ | wsp.FD_CLOSE))
      assert.equal(4096, host.send(a, ("d"):rep(4096)))
      if i % 2 == 0 then assert.equal(1, host.wait({ev}, false, 5000)) end
      host.cleanup(i % 3 == 0)
      assert.is_nil(host.bench_instance(pass.guid))
      host.close_object(ev)
    end
    serves(pass)
  end)

  it("refuse a Lua APC that would run while the last WSPCleanup waits", function()
    local c = pair(hostile.tcp)
    assert.equal("queued", (host.recv(c, 112)))
    host.sleep(10, true)
    assert.truthy(H.find_log(mark, "APC RAN", true))        -- (the APC itself works)
    mark = H.mark()
    assert.equal("queued", (host.recv(c, 112)))
    local job = host.spawn("recv", c, 101)
    await_log("IN%-DOWN")
    local cleanup = host.spawn("cleanup", false)
    await(function() return host.getsockname(c) == nil end, "the cleanup to begin")
    host.sleep(10, true)                                   -- the APC is delivered now
    assert.is_true(cleanup:join(5000) >= 1)
    ended_with(job, INTR)
    assert.is_nil(H.find_log(mark, "APC RAN", true))
    serves(hostile)
  end)
end)

describe("a provider that reaches for the host that loaded it #hostile", function()
  before_each(function() install(); mark = H.mark() end)
  after_each(uninstall)

  it("gets the provider side of lwsp only: no host, trace, wsc, set_log or registry writes", function()
    local c = pair(hostile.tcp)
    local text = host.recv(c, 4106)
    for _, no in ipairs{"host", "trace", "wsc", "set_log", "registry.set", "registry.remove", "registry.set_root",
                        "wsp.host", "wsp.trace"} do
      assert.truthy(text:find(" " .. no .. "=no", 1, true) or text:find("^" .. no .. "=no"), no .. ": " .. text)
    end
    for _, yes in ipairs{"registry.get", "upcall", "after", "lower", "provider"} do
      assert.truthy(text:find(yes .. "=yes", 1, true), yes .. ": " .. text)
    end
  end)

  it("gets no host by opening the module again, through package.loadlib, or with the registry cleared", function()
    local c = pair(hostile.tcp)
    -- require: nil (no host), or false where the provider's cleaned package.cpath has no lwsp
    local text = host.recv(c, 4107)
    assert.truthy(text == "require:nil getregistry:nil loadlib:absent"
                  or text == "require:false getregistry:nil loadlib:absent", text)
    serves(hostile)
  end)

  it("refuses a WSPCleanup from the blocking hook of a Lua handler's wait (WSAEINPROGRESS)", function()
    local c, a = pair(xor.tcp)
    local job = host.spawn("recv", c, 100, {cleanup_in_hook = "provider"})
    await(function() return job:info().hook_calls > 2 end, "the blocking hook to run")
    assert.same({nil, "timeout"}, {job:join(20)})
    assert.equal(2, host.send(a, xored("he")))
    assert.equal("he", (job:join(5000)))
    assert.equal(wsp.WSAEINPROGRESS, job:info().hook_cleanup)
    assert.truthy(H.find_log(mark, "WSPCleanup called from inside one of the provider's own calls", true))
    -- the provider keeps the startup it refused to give back, and serves the socket it had
    assert.equal(2, host.send(c, "ok"))
    assert.equal(xored("ok"), (host.recv(a, 10)))
    assert.is_table(host.bench_instance(xor.guid))
  end)

  it("refuses a WSPCleanup from the blocking hook of an inherited call down (WSAEINPROGRESS)", function()
    local c, a = pair(pass.tcp)
    local job = host.spawn("recv", c, 100, {cleanup_in_hook = "provider"})
    await(function() return job:info().hook_calls > 2 end, "the blocking hook to run")
    assert.equal(3, host.send(a, "hey"))
    assert.equal("hey", (job:join(5000)))
    assert.equal(wsp.WSAEINPROGRESS, job:info().hook_cleanup)
    assert.equal(3, host.send(c, "bye"))
    assert.equal("bye", (host.recv(a, 10)))
  end)

  it("refuses a WSPCleanup that WSACleanup makes from the blocking hook: the host keeps the provider", function()
    local c = pair(xor.tcp)
    local job = host.spawn("recv", c, 100, {cleanup_in_hook = "all"})
    await(function() return job:info().hook_calls > 2 end, "the blocking hook to run")
    assert.same({nil, "timeout"}, {job:join(20)})
    assert.truthy(H.find_log(mark, "refused its WSPCleanup (WSAEINPROGRESS): it stays loaded", true))
    assert.is_table(host.bench_instance(xor.guid))
    -- a WSACleanup from outside the provider then ends it
    assert.equal(1, host.cleanup(false))
    ended_with(job, {WSAEINTR = true})
    assert.is_nil(host.bench_instance(xor.guid))
    serves(xor)
  end)

  it("keeps its lower sockets non-blocking: FIONBIO 0 below fails with WSAEINVAL", function()
    local c = pair(hostile.tcp)
    assert.equal("WSAEINVAL", (host.recv(c, 111)))
    serves(hostile)
  end)

  it("cannot layer itself over itself: the chain's loop is refused, nothing is left behind", function()
    local self_over = host.install_layered{script = H.script(HOSTILE), guid = hostile.guid, over = hostile, name = "again"}
    local s, msg, code = host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, self_over.tcp)
    assert.is_nil(s, msg)
    assert.equal(wsp.WSAEPROVIDERFAILEDINIT, code)
    assert.truthy(H.find_log(mark, "loops", true))
    host.cleanup()
    assert.is_nil(host.bench_instance(hostile.guid))
    host.uninstall_lua(self_over)
    lwsp.registry.set(hostile.guid, H.script(HOSTILE))
    serves(hostile)
  end)

  it("cannot loop through another provider back into itself", function()
    local b = host.install_layered{script = H.root .. "/examples/passthrough.lua", over = hostile, name = "b"}
    local loop = host.install_layered{script = H.script(HOSTILE), guid = hostile.guid, over = b, name = "loop"}
    local s, _, code = host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, loop.tcp)
    assert.is_nil(s)
    assert.equal(wsp.WSAEPROVIDERFAILEDINIT, code)
    assert.truthy(H.find_log(mark, "loops", true))
    host.cleanup()
    assert.is_nil(host.bench_instance(b.guid))
    assert.is_nil(host.bench_instance(hostile.guid))
    host.uninstall_lua(loop)
    host.uninstall_lua(b)
    lwsp.registry.set(hostile.guid, H.script(HOSTILE))
    serves(hostile)
  end)
end)

-- Every kind of call in flight at once, then the last WSPCleanup at a varying
-- moment: LWSP_STRESS_ROUNDS rounds (make asan and make tsan run thousands).
describe("the last WSPCleanup against every kind of call in flight", function()
  before_each(function() install(); mark = H.mark() end)
  after_each(uninstall)

  it("never frees what a thread still uses, and the providers start again #stress", function()
    local rounds = tonumber(os.getenv("LWSP_STRESS_ROUNDS")) or 30
    for round = 1, rounds do
      local jobs, evs = {}, {}
      local k = round % 6
      -- a Lua handler inside a call down (lock released)
      if k == 0 or k == 5 then
        local c = pair(hostile.tcp)
        jobs[#jobs + 1] = host.spawn("recv", c, 101)
      end
      -- an inherited call down waiting on its own thread
      if k == 1 or k == 5 then
        local c = pair(pass.tcp)
        jobs[#jobs + 1] = host.spawn("recv", c, 100)
      end
      -- a blocking wait in a Lua handler, and a send waiting for room below
      if k == 2 or k == 5 then
        local c = pair(xor.tcp)
        jobs[#jobs + 1] = host.spawn("recv", c, 100)
        local c2 = pair(xor.tcp, true)
        jobs[#jobs + 1] = host.spawn("send", c2, ("s"):rep(512 * 1024))
      end
      -- pending overlapped operations, one completing as the cleanup runs
      if k == 3 or k == 5 then
        local c, a = pair(pass.tcp)
        local ev = host.create_event()
        local ov = host.overlapped(ev)
        H.fails_with("WSA_IO_PENDING", host.wsarecv(c, 100, ov))
        evs[#evs + 1] = {ev, ov}
        local c2, a2 = pair(xor.tcp)
        local ev2 = host.create_event()
        local ov2 = host.overlapped(ev2)
        H.fails_with("WSA_IO_PENDING", host.wsarecv(c2, 100, ov2))
        evs[#evs + 1] = {ev2, ov2}
        host.send(a, "x")
        host.send(a2, "y")
      end
      -- a timer inside a call down, and one that sets itself again
      if k == 4 or k == 5 then
        local c = pair(hostile.tcp)
        host.recv(c, 108)
        host.recv(c, 109)
      end
      if round % 3 ~= 0 then host.sleep(round % 4) end
      host.cleanup(round % 2 == 0)
      for _, j in ipairs(jobs) do ended_with(j, {ok = true, WSAEINTR = true, WSAENETDOWN = true,
                                                 WSA_OPERATION_ABORTED = true, WSANOTINITIALISED = true, WSAENOTSOCK = true}) end
      for _, e in ipairs(evs) do
        assert.equal(1, host.wait({e[1]}, false, 5000))
        assert.is_true(e[2].OffsetHigh == 0 or e[2].OffsetHigh == wsp.WSA_OPERATION_ABORTED)
        host.close_object(e[1])
      end
      for _, r in ipairs{hostile, xor, pass} do assert.is_nil(host.bench_instance(r.guid)) end
    end
    serves(hostile)
    serves(xor)
    serves(pass)
  end)
end)
