-- The host's application calls given bad arguments: sizes, counts and
-- timeouts out of range, unknown names, objects used after they were freed,
-- metamethods called by hand, an overlapped structure re-used while pending.
-- Each case asserts the exact refusal and that the host still carries data
-- afterwards.  Also: a handler's results that carry metatables (found by the
-- script fuzzer).
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

-- The refusal a call must give: a Lua error with exactly this message.
-- (The position of the caller that Lua puts in front is left out.)
local function refuses(msg, fn)
  local ok, err = pcall(fn)
  assert(not ok, "expected the refusal: " .. msg)
  assert.equal(msg, (tostring(err):gsub("^[^\n:]+:%d+: ", "")))
end

-- The host still carries data over memnet.
local function works(r)
  local c, a, l = H.memnet_pair(r)
  assert.equal(4, host.send(c, "ping"))
  assert.equal("ping", (host.recv(a, 16)))
  assert.is_true(host.close(c))
  assert.is_true(host.close(a))
  assert.is_true(host.close(l))
end

local TIMEOUT = "timeout out of range (0..2147483647)"

describe("the host's calls refuse sizes, counts and timeouts out of range #hostile", function()
  local r, s
  before_each(function()
    r = H.provider("examples/memnet.lua")
    s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  end)
  after_each(function() H.reset() end)

  it("spawn('recv') with a negative or huge length", function()
    refuses("bad argument #3 to 'spawn' (length out of range (0..67108864))", function() host.spawn("recv", s, -1) end)
    refuses("bad argument #3 to 'spawn' (length out of range (0..67108864))", function() host.spawn("recv", s, 64 * 1024 * 1024 + 1) end)
    works(r)
  end)

  it("spawn('sleep') with a negative, fractional or NaN time", function()
    refuses("bad argument #2 to 'spawn' (" .. TIMEOUT .. ")", function() host.spawn("sleep", -5) end)
    refuses("bad argument #2 to 'spawn' (number has no integer representation)", function() host.spawn("sleep", 1.5) end)
    refuses("bad argument #2 to 'spawn' (number has no integer representation)", function() host.spawn("sleep", 0 / 0) end)
    assert.is_false(host.spawn("sleep", 1):join(5000))
    works(r)
  end)

  it("spawn with a call name it does not know, or a bad option", function()
    refuses("bad argument #1 to 'spawn' (invalid option 'nope')", function() host.spawn("nope", s) end)
    refuses("bad argument #4 to 'spawn' (option 'cancel_after' must be an integer (0..2147483647))",
            function() host.spawn("recv", s, 4, {cancel_after = -1}) end)
    works(r)
  end)

  it("job:join with a negative timeout", function()
    local j = host.spawn("sleep", 1)
    refuses("bad argument #1 to 'join' (" .. TIMEOUT .. ")", function() j:join(-5) end)
    assert.is_false(j:join(5000))
    works(r)
  end)

  it("sleep with a negative or too long time (it would block for ever)", function()
    refuses("bad argument #1 to 'sleep' (" .. TIMEOUT .. ")", function() host.sleep(-5) end)
    refuses("bad argument #1 to 'sleep' (" .. TIMEOUT .. ")", function() host.sleep(1 << 31) end)
    assert.equal("timeout", host.sleep(0))
    works(r)
  end)

  it("wait with a negative timeout, or no events at all", function()
    local ev = assert(host.create_event())
    refuses("bad argument #3 to 'wait' (" .. TIMEOUT .. ")", function() host.wait({ev}, false, -1) end)
    refuses("bad argument #1 to 'wait' (1 to 64 events)", function() host.wait({}, false) end)
    local many = {}
    for i = 1, 65 do many[i] = ev end
    refuses("bad argument #1 to 'wait' (1 to 64 events)", function() host.wait(many, false, 0) end)
    assert.equal("timeout", host.wait({ev}, false, 0))
    host.close_event(ev)
    works(r)
  end)

  it("dequeue and messages with a negative timeout", function()
    local port, w = assert(host.port()), assert(host.window())
    refuses("bad argument #2 to 'dequeue' (" .. TIMEOUT .. ")", function() host.dequeue(port, -1) end)
    refuses("bad argument #2 to 'messages' (" .. TIMEOUT .. ")", function() host.messages(w, -1) end)
    assert.same({nil, "timeout"}, {host.dequeue(port, 0)})
    assert.same({}, host.messages(w, 0))
    host.close_object(port)
    host.close_object(w)
    works(r)
  end)

  it("select with a negative, NaN or huge timeout", function()
    local msg = "bad argument #4 to 'select' (timeout out of range (0..2147483647 seconds))"
    refuses(msg, function() host.select({s}, nil, nil, -1) end)
    refuses(msg, function() host.select({s}, nil, nil, 0 / 0) end)
    refuses(msg, function() host.select({s}, nil, nil, 1e300) end)
    works(r)
  end)

  -- one refusal a case: what, the message, the call (values that C would
  -- have truncated into something else, or lengths past the host's buffers)
  local CASES = {
    {"bind's length past the host's address buffer", "bad argument #3 to 'bind' (length out of range (0..128))",
     function() host.bind(s, "127.0.0.1:0", 1000) end},
    {"accept's length past the host's address buffer", "bad argument #2 to 'accept' (length out of range (0..128))",
     function() host.accept(s, 1000) end},
    {"accept's verdict that is no CF_ value", "bad argument #3 to 'accept' (verdict out of range (0..2))",
     function() host.accept(s, nil, 7) end},
    {"an address family past 32 bits", "bad argument #1 to 'socket' (address family out of range (-2147483648..2147483647))",
     function() host.socket((1 << 32) + wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp) end},
    {"a catalog id that wraps onto an existing one", "bad argument #1 to 'remove' (catalog id out of range (0..4294967295))",
     function() host.remove(r.tcp - (1 << 32)) end},
    {"negative send flags", "bad argument #3 to 'send' (flags out of range (0..4294967295))", function() host.send(s, "x", -1) end},
    {"an ioctl input past 32 bits", "bad argument #3 to 'ioctl' (input out of range (-2147483648..4294967295))",
     function() host.ioctl(s, wsp.FIONBIO, (1 << 32) + 1) end},
    {"an ioctl output length that wraps to a small one", "bad argument #4 to 'ioctl' (length out of range (0..1024))",
     function() host.ioctl(s, wsp.FIONREAD, nil, 4 - (1 << 32)) end},
    {"a socket option value past 32 bits", "bad argument #4 to 'setsockopt' (value out of range (-2147483648..4294967295))",
     function() host.setsockopt(s, wsp.SOL_SOCKET, wsp.SO_RCVBUF, 1 << 40) end},
    {"a recv_disconnect length that wraps to a small one", "bad argument #2 to 'recv_disconnect' (length out of range (0..256))",
     function() host.recv_disconnect(s, 256 - (1 << 32)) end},
    {"a getsockopt length past the host's buffer", "bad argument #4 to 'getsockopt' (length out of range (0..628))",
     function() host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_TYPE, 629) end},
    {"a listen backlog past 32 bits", "bad argument #2 to 'listen' (backlog out of range (-2147483648..2147483647))",
     function() host.listen(s, 1 << 40) end},
    {"negative wsarecv flags", "bad argument #4 to 'wsarecv' (option 'flags' must be an integer (0..4294967295))",
     function() host.wsarecv(s, 16, host.overlapped(), {flags = -1}) end},
    {"fractional wsasend flags", "bad argument #4 to 'wsasend' (option 'flags' must be an integer (0..4294967295))",
     function() host.wsasend(s, "x", host.overlapped(), {flags = 1.5}) end},
    {"a negative byte count posted to a port", "bad argument #2 to 'post' (bytes out of range (0..4294967295))",
     function() host.post(1, -1, 0) end},
    {"a string_to_address family past 32 bits", "bad argument #2 to 'string_to_address' (address family out of range (-2147483648..2147483647))",
     function() host.string_to_address("1.2.3.4", 1 << 33) end},
  }
  for _, k in ipairs(CASES) do
    it(k[1], function()
      refuses(k[2], k[3])
      works(r)
    end)
  end

  it("leaves the entry a wrapped catalog id would have named", function()
    refuses("bad argument #1 to 'remove' (catalog id out of range (0..4294967295))", function() host.remove(r.tcp - (1 << 32)) end)
    local ids = {}
    for _, e in ipairs(host.catalog()) do ids[e.dwCatalogEntryId] = true end
    assert.is_true(ids[r.tcp])
    works(r)
  end)

  it("a bad argument to socket_info leaves the host's lock free", function()
    refuses("bad argument #1 to 'socket_info' (number expected, got string)", function() host.socket_info("x") end)
    -- another thread needs the lock to start and to run its call
    assert.is_false(host.spawn("sleep", 1):join(5000))
    assert.equal(r.tcp, host.socket_info(s).catalog)
    works(r)
  end)
end)

describe("fault injection, probes and startups refuse what does not exist #hostile", function()
  local r
  before_each(function() r = H.provider("examples/memnet.lua") end)
  after_each(function() host.inject(); H.reset() end)

  it("inject refuses a point that does not exist", function()
    refuses("bad argument #1 to 'inject' (invalid option 'nope')", function() host.inject("nope", {every = 1}) end)
    refuses("bad argument #1 to 'inject' (invalid option 'WSPSend')", function() host.inject("WSPSend", {every = 1}) end)
    assert.same({}, host.injected())
    works(r)
  end)

  it("inject refuses counts and errors out of range, and a probability that is no probability", function()
    refuses("bad argument #2 to 'inject' ('every' must be an integer (0..2147483647))",
            function() host.inject("WPUCreateEvent", {every = 1e300}) end)
    refuses("bad argument #2 to 'inject' ('count' must be an integer (0..2147483647))",
            function() host.inject("WPUCreateEvent", {every = 1, count = -1}) end)
    refuses("bad argument #2 to 'inject' ('error' must be an integer (1..2147483647))",
            function() host.inject("WPUCreateEvent", {every = 1, error = 0}) end)
    refuses("bad argument #2 to 'inject' ('probability' must be a number (0..1))",
            function() host.inject("WPUCreateEvent", {probability = 0 / 0}) end)
    refuses("bad argument #2 to 'inject' ('probability' must be a number (0..1))",
            function() host.inject("WPUCreateEvent", {probability = 2}) end)
    local ev = assert(host.create_event())
    host.close_event(ev)
    works(r)
  end)

  it("arming a point again replaces what it had", function()
    assert.is_true(host.inject("WPUCreateEvent", {every = 1}))
    H.fails_with("WSAENOBUFS", host.create_event())
    assert.is_true(host.inject("WPUCreateEvent", {every = 1000}))
    local ev = assert(host.create_event())
    host.close_event(ev)
    assert.same({WPUCreateEvent = 0}, host.injected())
  end)

  it("raw_startup refuses a version that does not fit a WORD, and an unknown variant", function()
    refuses("bad argument #2 to 'raw_startup' (version out of range (0..65535))", function() host.raw_startup(r.tcp, 0x10202) end)
    refuses("bad argument #3 to 'raw_startup' (invalid option 'nope')", function() host.raw_startup(r.tcp, 0x0202, "nope") end)
    assert.equal(0, (host.raw_startup(r.tcp, 0x0202)))
    works(r)
  end)

  it("a provider object's load and startup refuse catalog ids out of range", function()
    refuses("bad argument #1 to 'startup' (catalog id out of range (0..4294967295))", function() host.startup(-1) end)
    refuses("bad argument #1 to 'load' (catalog id out of range (0..4294967295))", function() host.load(1 << 32) end)
    works(r)
  end)
end)

describe("the bench calls refuse bad sizes, counts and names #hostile", function()
  local r, c, a, l
  before_each(function()
    r = H.provider("examples/memnet.lua")
    c, a, l = H.memnet_pair(r)
  end)
  after_each(function() H.reset() end)

  it("bench_stream with negative or zero sizes, or a CPU that cannot exist", function()
    refuses("bad argument #3 to 'bench_stream' (total out of range (0..1099511627776))", function() host.bench_stream(c, a, -1, 64) end)
    refuses("bad argument #4 to 'bench_stream' (chunk out of range (1..16777216))", function() host.bench_stream(c, a, 64, 0) end)
    refuses("bad argument #4 to 'bench_stream' (chunk out of range (1..16777216))", function() host.bench_stream(c, a, 64, -64) end)
    -- a CPU set is 1024 CPUs on Linux, one 64-bit affinity mask on Windows
    local cpu_max = package.config:sub(1, 1) == "\\" and 63 or 1023
    refuses("bad argument #5 to 'bench_stream' (cpu out of range (-1.." .. cpu_max .. "))",
      function() host.bench_stream(c, a, 64, 64, 100000) end)
    assert.is_number(host.bench_stream(c, a, 256, 64))
    works(r)
  end)

  it("bench_calls with an unknown call or a negative count", function()
    refuses("bad argument #2 to 'bench_calls' (invalid option 'nope')", function() host.bench_calls(c, "nope", 1) end)
    refuses("bad argument #3 to 'bench_calls' (count out of range (0..1000000000))", function() host.bench_calls(c, "getsockopt", -1) end)
    assert.is_number(host.bench_calls(c, "getsockopt", 10))
    works(r)
  end)

  it("bench_overlapped and bench_overlapped_stream with an unknown mode or sizes out of range", function()
    refuses("bad argument #3 to 'bench_overlapped' (invalid option 'nope')", function() host.bench_overlapped(a, c, "nope", 1) end)
    refuses("bad argument #4 to 'bench_overlapped' (count out of range (0..1000000000))", function() host.bench_overlapped(a, c, "event", -1) end)
    refuses("bad argument #3 to 'bench_overlapped_stream' (invalid option 'nope')",
            function() host.bench_overlapped_stream(a, c, "nope", 64, 1) end)
    refuses("bad argument #4 to 'bench_overlapped_stream' (total out of range (0..1099511627776))",
            function() host.bench_overlapped_stream(a, c, "event", -1, 1) end)
    refuses("bad argument #5 to 'bench_overlapped_stream' (depth out of range (1..64))",
            function() host.bench_overlapped_stream(a, c, "event", 64, 65) end)
    assert.is_number(host.bench_overlapped(a, c, "port", 3))
    works(r)
  end)

  it("bench_overlapped that fails with its receive pending leaks the receive's structure instead of freeing it", function()
    local mark = H.mark()
    -- the receive is posted on a, the send on the listener fails at once
    refuses("send failed: " .. wsp.WSAENOTCONN, function() host.bench_overlapped(a, l, "port", 1) end)
    assert.truthy(H.find_log(mark, "is kept, not freed", true))
    assert.is_true(host.close(a))   -- the pending receive ends with its socket
    works(r)
  end)
end)

describe("objects used after they are freed, and their metamethods called by hand #hostile", function()
  local r, s
  before_each(function()
    r = H.provider("examples/memnet.lua")
    s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  end)
  after_each(function() H.reset() end)

  it("an overlapped structure freed by its __gc refuses every use", function()
    local ov = host.overlapped()
    local mt = getmetatable(ov)
    mt.__gc(ov)
    mt.__gc(ov)   -- twice is nothing more
    refuses("bad argument #1 to 'index' (overlapped is freed)", function() local _ = ov.Internal end)
    refuses("bad argument #1 to 'newindex' (overlapped is freed)", function() ov.Offset = 1 end)
    refuses("bad argument #3 to 'wsarecv' (overlapped is freed)", function() host.wsarecv(s, 16, ov) end)
    refuses("bad argument #3 to 'wsasend' (overlapped is freed)", function() host.wsasend(s, "x", ov) end)
    refuses("bad argument #5 to 'wsaioctl' (overlapped is freed)", function() host.wsaioctl(s, wsp.FIONREAD, nil, 4, ov) end)
    refuses("bad argument #2 to 'get_overlapped_result' (overlapped is freed)", function() host.get_overlapped_result(s, ov) end)
    works(r)
  end)

  it("an overlapped structure's __close frees it like __gc", function()
    local ov = host.overlapped()
    getmetatable(ov).__close(ov)
    refuses("bad argument #1 to 'index' (overlapped is freed)", function() local _ = ov.pending end)
    works(r)
  end)

  it("an overlapped structure's __gc called by hand while it is pending leaks it, and the completion still lands", function()
    local c, a = H.memnet_pair(r)
    local ev = assert(host.create_event())
    local ov = host.overlapped(ev)
    H.fails_with("WSA_IO_PENDING", host.wsarecv(a, 16, ov))
    local mark = H.mark()
    getmetatable(ov).__gc(ov)
    assert.truthy(H.find_log(mark, "collected while pending: kept, not freed", true))
    refuses("bad argument #1 to 'index' (overlapped is freed)", function() local _ = ov.data end)
    assert.equal(5, host.send(c, "later"))
    assert.equal(1, host.wait({ev}, false, 5000))
    host.close_event(ev)
    works(r)
  end)

  it("a job freed by its __gc refuses join and info; __gc and __close again are nothing", function()
    local j = host.spawn("sleep", 1)
    assert.is_false(j:join(5000))
    local mt = getmetatable(j)
    mt.__gc(j)
    mt.__close(j)
    refuses("calling 'join' on bad self (job is gone)", function() j:join(0) end)
    refuses("calling 'info' on bad self (job is gone)", function() j:info() end)
    works(r)
  end)

  it("a job's __gc called by hand while its call runs leaves it running", function()
    local j = host.spawn("sleep", 100)
    local mark = H.mark()
    getmetatable(j).__gc(j)
    assert.truthy(H.find_log(mark, "collected while its thread was still in its call", true))
    assert.is_false(j:join(5000))
    works(r)
  end)

  -- found by fuzz/fuzz_host.c: cleanup() freed the provider a spawned
  -- call was still in (a use after free under ASan)
  it("cleanup() while a spawned call is in its provider ends the call, and the provider stays until it is out", function()
    local c, a = H.memnet_pair(r)
    local j = host.spawn("recv", a, 16, {count_hook = true})
    -- (the job is inside its call once the call runs its blocking hook: a
    -- receive begun only after the cleanup would see the closed pair instead)
    local deadline = os.clock() + 5
    while j:info().hook_calls == 0 and os.clock() < deadline do host.sleep(5) end
    assert.is_true(j:info().hook_calls > 0, "the spawned receive never blocked")
    assert.equal(1, host.cleanup())
    H.fails_with("WSAEINTR", j:join(5000))
    H.fails_with("WSAENOTSOCK", host.close(c))
    works(r)
  end)

  it("a provider object freed by its __gc or __close answers WSANOTINITIALISED", function()
    local p = assert(host.startup(r.tcp))
    assert.equal(0x0202, p:data().wVersion)
    getmetatable(p).__gc(p)
    getmetatable(p).__close(p)
    H.fails_with("WSANOTINITIALISED", p:data())
    H.fails_with("WSANOTINITIALISED", p:cleanup())
    works(r)
  end)

  it("a metamethod given another type's userdata is refused", function()
    local ov, j = host.overlapped(), host.spawn("sleep", 1)
    refuses("bad argument #1 to '__gc' (lwsp.overlapped expected, got lwsp.job)", function() getmetatable(ov).__gc(j) end)
    refuses("bad argument #1 to '__gc' (lwsp.job expected, got lwsp.overlapped)", function() getmetatable(j).__gc(ov) end)
    assert.is_false(j:join(5000))
    works(r)
  end)
end)

describe("an overlapped structure re-used while its operation is pending #hostile", function()
  local r, c, a, ev, ov
  local BUSY = "overlapped is in use by a pending operation"
  before_each(function()
    r = H.provider("examples/memnet.lua")
    c, a = H.memnet_pair(r)
    ev = assert(host.create_event())
    ov = host.overlapped(ev)
    H.fails_with("WSA_IO_PENDING", host.wsarecv(a, 16, ov))
  end)
  after_each(function() host.close_event(ev); H.reset() end)

  it("is refused by wsarecv, wsasend and wsaioctl, then taken again once it completed", function()
    refuses("bad argument #3 to 'wsarecv' (" .. BUSY .. ")", function() host.wsarecv(a, 16, ov) end)
    refuses("bad argument #3 to 'wsasend' (" .. BUSY .. ")", function() host.wsasend(c, "x", ov) end)
    refuses("bad argument #5 to 'wsaioctl' (" .. BUSY .. ")", function() host.wsaioctl(a, wsp.FIONREAD, nil, 4, ov) end)
    assert.equal(5, host.send(c, "hello"))
    assert.equal(1, host.wait({ev}, false, 5000))
    assert.equal("hello", ov.data)   -- the pending receive's buffer was never freed under it
    host.reset_event(ev)
    assert.is_true(host.wsasend(c, "again", ov))
    works(r)
  end)

  it("refuses writes to its fields while pending", function()
    refuses("bad argument #1 to 'newindex' (" .. BUSY .. ")", function() ov.Internal = 0 end)
    refuses("bad argument #1 to 'newindex' (" .. BUSY .. ")", function() ov.hEvent = 0 end)
    assert.is_true(ov.pending)
    assert.equal(1, host.send(c, "x"))
    assert.equal(1, host.wait({ev}, false, 5000))
    ov.Internal = 0
    works(r)
  end)

  it("refuses a wait on a structure marked pending by hand, which no operation would end", function()
    assert.equal(1, host.send(c, "x"))
    assert.equal(1, host.wait({ev}, false, 5000))
    ov.Internal = wsp.WSS_OPERATION_IN_PROGRESS
    refuses("bad argument #2 to 'get_overlapped_result' (overlapped has no pending operation to wait for)",
            function() host.get_overlapped_result(a, ov, true) end)
    H.fails_with("WSA_IO_INCOMPLETE", host.get_overlapped_result(a, ov, false))
    ov.Internal = 0
    works(r)
  end)
end)

-- Found by fuzz/fuzz_script.c: lwsp read a handler's results with lua_getfield,
-- which runs an __index metamethod where no error may be raised; one that
-- raised took the process down.
describe("a handler's results that carry metatables #hostile", function()
  local RAISES = "setmetatable({}, {__index = function() error('no such field') end})"
  local r
  after_each(function() H.reset() end)

  it("an address result whose __index raises fails the call, and the provider keeps serving", function()
    r = H.provider(([[
      local M = {}
      function M.socket() return true end
      function M.stringtoaddress(text) if text == "odd" then return %s end return {family = 2, address = "1.2.3.4", port = 0} end
      function M.getsockopt(s, level, name) if name == 128 then return %s end return 7 end
      function M.getqosbyname() return %s end
      function M.select(rd) return {%s} end
      return M]]):format(RAISES, RAISES, RAISES, RAISES))
    local mark = H.mark()
    H.fails_with("WSAENETDOWN", host.string_to_address("odd", wsp.AF_INET, r.tcp))
    assert.truthy(H.find_log(mark, "returned table where an address was expected", true))
    assert.equal("1.2.3.4", assert(host.string_to_address("x", wsp.AF_INET, r.tcp)).address)
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    H.fails_with("WSAENETDOWN", host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_LINGER))   -- no raw l_onoff, l_linger
    assert.is_table(host.get_qos_by_name(s, "x"))
    H.fails_with("WSAENETDOWN", host.select({s}, nil, nil, 0))   -- a ready set of no sockets
    assert.equal(7, wsp.int(assert(host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_TYPE))))
  end)

  it("a script whose handler table's __index raises still starts", function()
    r = H.provider([[
      -- a handler table with a metatable
      return setmetatable({socket = function() return true end}, {__index = function() error("no such handler") end})]])
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert.is_true(host.close(s))
  end)
end)

-- Found by fuzz/fuzz_script.c: lwsp's coroutine.resume let lua_resume refuse
-- a dead coroutine, which pushes its message on that coroutine outside any
-- protected call; at the memory ceiling that allocation failed and the
-- process aborted.
describe("coroutines resumed when they cannot be, at the memory ceiling #hostile", function()
  after_each(function() H.reset() end)

  it("a dead coroutine resumed while memory is short gives an error, and the provider keeps serving", function()
    local r = H.provider([[
      -- a nested coroutine holds a big table while its parent resumes a dead one
      local M = {budget = 200000, memory_limit = 1048576}
      -- (the handler as fuzz_script made it)
      function M.socket(s, af, type, protocol) string.gsub('abc', '%w', '%0%0') string.gsub('abc', '%w', '%0%0') do local co = coroutine.create(function() do local co = coroutine.create(function() do local big = {} for i = 1, 100000 do big[i] = {i} end end coroutine.yield(1) x = (x or 0) + 1 end) coroutine.resume(co) coroutine.resume(co) coroutine.resume(co) end x = (x or 0) + 1 x = (x or 0) + 1 coroutine.yield(1) x = (x or 0) + 1 end) coroutine.resume(co) coroutine.resume(co) coroutine.resume(co) end return true end
      function M.getsockopt(s)
        local dead = coroutine.create(function() end)
        coroutine.resume(dead)
        local ok, msg = coroutine.resume(dead)
        local running = coroutine.running()
        local ok2, msg2 = coroutine.resume(running)
        return (not ok and msg == "cannot resume dead coroutine" and not ok2
                and msg2 == "cannot resume non-suspended coroutine") and 1 or 0
      end
      return M]])
    local s1, msg = host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp)
    assert(s1 or msg:find("WSAENOBUFS", 1, true) == 1, msg)
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.udp))
    assert.equal(1, wsp.int(assert(host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_TYPE))))
  end)
end)

-- Found by fuzz/fuzz_script.c after some 16,000 inputs: memnet counted its
-- ephemeral ports up past 65535, and an address with such a port is one lwsp
-- refuses, so getsockname failed on every socket bound after that.
describe("memnet's ephemeral ports #hostile", function()
  after_each(function() H.reset() end)

  it("wrap round to the start of the range once it is used up", function()
    local r = H.provider("examples/memnet.lua")
    local first
    for i = 1, 65536 - 49152 + 2 do
      local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
      assert(host.bind(s, "127.0.0.1:0"))
      local a = assert(host.getsockname(s))
      assert(a.port >= 49152 and a.port <= 65535, a.port)
      first = first or a.port
      if i == 65536 - 49152 + 1 then assert.equal(first, a.port) end
      assert.is_true(host.close(s))
    end
    works(r)
  end)
end)

-- The extension functions (AcceptEx, ConnectEx, DisconnectEx,
-- GetAcceptExSockaddrs, WSARecvMsg) called the way a careless application calls them,
-- through the native base, a layer that inherits them in C, and layers
-- whose Lua handlers carry them; then Lua handlers that misbehave.
describe("the extension functions given bad arguments and bad handlers #hostile", function()
  after_each(function() H.reset() end)

  local CARRIER = [[
local wsp = require "wsp"
local P = require("wsp.layered").new()
local base = P.base
function P.connectex(s, addr, data) return base.connectex(s, addr, data) end
function P.acceptex(s, ns, len) return base.acceptex(s, ns, len) end
function P.disconnectex(s, flags) return base.disconnectex(s, flags) end
function P.wsarecvmsg(s, len, control, flags) return base.wsarecvmsg(s, len, control, flags) end
return P
]]
  -- each builds its stack afresh (what H.reset removes)
  local STACKS = {
    {"the native base", function(native) return native end},
    {"a layer that inherits them", function(native)
      return H.layered{script = H.root .. "/examples/passthrough.lua", over = native, name = "passthrough"}
    end},
    {"a layer that carries them", function(native)
      return H.layered{script = H.script(CARRIER), over = native, name = "carrier"}
    end},
    {"two layers that carry them", function(native)
      local one = H.layered{script = H.script(CARRIER), over = native, name = "carrier"}
      return H.layered{script = H.script(CARRIER), over = one, name = "carrier2"}
    end},
  }

  it("refuse NULL and short pointers, stale handles and missing overlappeds, and the stack goes on", function()
    for _, st in ipairs(STACKS) do
      local what, r = st[1], st[2](H.base())
      local function tcp() return assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp)) end
      local l = tcp()
      assert(host.bind(l, "127.0.0.1:0"))
      assert(host.listen(l, 4))
      local c, as = tcp(), tcp()
      assert(host.bind(c, "127.0.0.1:0"))
      local expect = {
        ["connectex:null-name"] = "WSAEFAULT", ["connectex:short-name"] = "WSAEFAULT",
        ["connectex:null-data"] = "WSAEFAULT", ["connectex:no-overlapped"] = "WSAEINVAL",
        ["connectex:stale-handle"] = "WSAENOTSOCK", ["disconnectex:bad-flags"] = "WSAEINVAL",
        ["disconnectex:stale-handle"] = "WSAENOTSOCK",
      }
      for probe, name in pairs(expect) do
        assert.equal(wsp[name], host.ext_probe(probe, c), what .. ": " .. probe)
      end
      for probe, name in pairs{["acceptex:null-buffer"] = "WSAEFAULT", ["acceptex:short-address"] = "WSAEFAULT",
                               ["acceptex:stale-accept-socket"] = "WSAENOTSOCK", ["acceptex:no-overlapped"] = "WSAEINVAL"} do
        assert.equal(wsp[name], host.ext_probe(probe, l, as), what .. ": " .. probe)
      end
      assert.equal(0, host.ext_probe("getacceptexsockaddrs:null", l))
      local u = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
      assert(host.bind(u, "127.0.0.1:0"))
      for probe, name in pairs{["wsarecvmsg:null-msg"] = "WSAEFAULT", ["wsarecvmsg:null-buffers"] = "WSAEFAULT",
                               ["wsarecvmsg:no-buffers"] = "WSAEINVAL", ["wsarecvmsg:short-name"] = "WSAEFAULT",
                               ["wsarecvmsg:no-count"] = "WSAEFAULT", ["wsarecvmsg:stale-handle"] = "WSAENOTSOCK"} do
        assert.equal(wsp[name], host.ext_probe(probe, u), what .. ": " .. probe)
      end
      H.fails_with("WSAEOPNOTSUPP", host.wsarecvmsg(c, 10))   -- a stream socket (and, on Windows, every socket)
      -- unknown and short GUIDs
      H.fails_with("WSAEINVAL", host.ioctl(c, wsp.SIO_GET_EXTENSION_FUNCTION_POINTER, string.rep("\7", 16), 8))
      H.fails_with("WSAEFAULT", host.ioctl(c, wsp.SIO_GET_EXTENSION_FUNCTION_POINTER, string.rep("\7", 15), 8))
      H.fails_with("WSAEFAULT", host.ioctl(c, wsp.SIO_GET_EXTENSION_FUNCTION_POINTER,
                                           string.pack("<I4I2I2", 0x25a207b9, 0xddf3, 0x4660) .. "\142\233\118\229\140\116\6\62", 4))
      -- and a real ConnectEx still goes through
      local ev = host.create_event()
      local ov = host.overlapped(ev)
      local ok, err = host.connectex(c, host.getsockname(l), "still", ov)
      assert(ok or err:find("WSA_IO_PENDING"), what .. ": " .. tostring(err))
      assert.equal(1, host.wait({ev}, false, 5000), what)
      assert.equal(0, ov.OffsetHigh, what)
      local a = assert(host.accept(l))
      assert.equal("still", H.recv_within(a, 5, 5), what)
      H.reset()
    end
  end)

  it("complete a carried AcceptEx whose accept socket closes meanwhile with WSA_OPERATION_ABORTED", function()
    local native = H.base()
    local r = H.layered{script = H.script(CARRIER), over = native, name = "carrier"}
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 4))
    local as = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local ev = host.create_event()
    local ov = host.overlapped(ev)
    H.fails_with("WSA_IO_PENDING", host.acceptex(l, as, 16, ov))
    assert(host.close(as))
    assert.equal(1, host.wait({ev}, false, 5000))
    assert.equal(wsp.WSA_OPERATION_ABORTED, ov.OffsetHigh)
    -- the listener goes on accepting
    local as2 = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    host.reset_event(ev)
    local ov2 = host.overlapped(ev)
    H.fails_with("WSA_IO_PENDING", host.acceptex(l, as2, 0, ov2))
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
    assert(host.connect(c, host.getsockname(l)))
    assert.equal(1, host.wait({ev}, false, 5000))
    assert.equal(0, ov2.OffsetHigh)
  end)

  -- each handler misbehaves once its call down (if any) is done; the call fails, the log says why
  local BAD = [[
local wsp = require "wsp"
local P = require("wsp.layered").new()
local base = P.base
P.budget = 200000
local mode = wsp.config.mode
function P.connectex(s, addr, data)
  if mode == "raise-at-once" then error("connectex blew up at once") end
  local n = base.connectex(s, addr, data)
  if mode == "string" then return "lots" end
  if mode == "too-many" then return n + 1000 end
  if mode == "raise-after" then error("connectex blew up after the call down") end
  if mode == "runaway" then while true do end end
  if mode == "bogus-error" then return nil, "WSAEBOGUS" end
  return n
end
function P.acceptex(s, ns, len)
  local data, loc, rem = base.acceptex(s, ns, len)
  if mode == "number" then return 42 end
  if mode == "long" then return string.rep("x", len + 1), loc, rem end
  if mode == "no-address" then return data, {}, "nowhere" end
  if mode == "nothing" then return end
  return data, loc, rem
end
function P.wsarecvmsg(s, len, control, flags)
  local data, from, ctl, fl = base.wsarecvmsg(s, len, control, flags)
  if mode == "number" then return 42 end
  if mode == "no-address" then return data, "nowhere" end
  if mode == "nothing" then return end
  if mode == "bad-control" then return data, from, {{level = "ip", type = 8, data = ""}} end
  if mode == "control-string" then return data, from, "raw" end
  if mode == "raise-after" then error("wsarecvmsg blew up after the call down") end
  if mode == "bogus-error" then return nil, "WSAEBOGUS" end
  return data, from, ctl, fl
end
function P.disconnectex(s, flags)
  if mode == "nothing" then return end
  if mode == "number" then return 7 end
  return base.disconnectex(s, flags)
end
return P
]]
  local function bad(mode)
    local native = H.base()
    local r = H.layered{script = H.script(BAD), over = native, name = "bad-" .. mode, config = {mode = mode}}
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 8))
    return r, native, l
  end
  -- the outcome of an overlapped call: failed at once, or pending and then completed
  local function outcome(ev, ov, ok, err, code)
    if ok then return 0 end
    if code ~= wsp.WSA_IO_PENDING then return code end
    assert.equal(1, host.wait({ev}, false, 5000))
    return ov.OffsetHigh
  end

  for mode, logged in pairs{["raise-at-once"] = "connectex blew up at once", string = "where the count of bytes sent",
                            ["too-many"] = "where the count of bytes sent", ["raise-after"] = "after the call down",
                            runaway = "budget", ["bogus-error"] = "WSAEBOGUS"} do
    it("fail a ConnectEx whose handler " .. mode .. " with WSAENETDOWN and a log line", function()
      local r, native, l = bad(mode)
      local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
      assert(host.bind(c, "127.0.0.1:0"))
      local mark = H.mark()
      local ev = host.create_event()
      local ov = host.overlapped(ev)
      assert.equal(wsp.WSAENETDOWN, outcome(ev, ov, host.connectex(c, host.getsockname(l), "x", ov)))
      assert.truthy(H.find_log(mark, logged, true), table.concat(H.logs(mark), "\n"))
      -- the instance still serves ordinary calls
      local l2 = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
      assert(host.bind(l2, "127.0.0.1:0"))
      assert(host.listen(l2, 8))
      local c2 = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
      assert(host.connect(c2, host.getsockname(l2)))
      local a = assert(host.accept(l2))
      assert.equal(2, host.send(c2, "ok"))
      assert.equal("ok", H.recv_within(a, 2, 5))
    end)
  end

  for mode, logged in pairs{number = "where the data received", long = "bytes of data for a buffer of",
                            ["no-address"] = "where an address was expected", nothing = "where the data received"} do
    it("fail an AcceptEx whose handler returns " .. mode .. " with WSAENETDOWN and a log line", function()
      local r, native = bad(mode)
      local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
      assert(host.bind(l, "127.0.0.1:0"))
      assert(host.listen(l, 8))
      local as = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
      local mark = H.mark()
      local ev = host.create_event()
      local ov = host.overlapped(ev)
      local ok, err, code = host.acceptex(l, as, 8, ov)
      local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
      assert(host.connect(c, host.getsockname(l)))
      assert.equal(3, host.send(c, "abc"))
      assert.equal(wsp.WSAENETDOWN, outcome(ev, ov, ok, err, code))
      assert.truthy(H.find_log(mark, logged, true), table.concat(H.logs(mark), "\n"))
    end)
  end

  for _, mode in ipairs{"nothing", "number"} do
    it("fail a DisconnectEx whose handler returns " .. mode .. " with WSAENETDOWN", function()
      local r, _, l = bad(mode)
      local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
      assert(host.connect(c, host.getsockname(l)))
      local mark = H.mark()
      H.fails_with("WSAENETDOWN", host.disconnectex(c, nil, 0))
      assert.truthy(H.find_log(mark, "where true was expected", true), table.concat(H.logs(mark), "\n"))
    end)
  end

  for mode, logged in pairs{number = "where data (a string) was expected",
                            ["no-address"] = "where the sender's address was expected",
                            nothing = "where data (a string) was expected",
                            ["bad-control"] = "control data whose entry 1 is not",
                            ["control-string"] = "where control data (a table) was expected",
                            ["raise-after"] = "wsarecvmsg blew up after the call down", ["bogus-error"] = "WSAEBOGUS"} do
    it("fail a WSARecvMsg whose handler " .. mode .. " with WSAENETDOWN and a log line", function()
      local r, native = bad(mode)
      local u = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
      assert(host.bind(u, "127.0.0.1:0"))
      local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, native.udp))
      local mark = H.mark()
      local ev = host.create_event()
      local ov = host.overlapped(ev)
      local ok, err, code = host.wsarecvmsg(u, 16, ov)
      assert(host.wsasendmsg(s, "dgram", host.getsockname(u)))
      assert.equal(wsp.WSAENETDOWN, outcome(ev, ov, ok, err, code))
      assert.truthy(H.find_log(mark, logged, true), table.concat(H.logs(mark), "\n"))
      -- blocking, the same; then the socket still receives with recvfrom
      assert(host.wsasendmsg(s, "again", host.getsockname(u)))
      H.fails_with("WSAENETDOWN", host.wsarecvmsg(u, 16))
      assert(host.wsasendmsg(s, "plain", host.getsockname(u)))
      assert.equal("plain", (host.recvfrom(u, 16)))
    end)
  end
end)
