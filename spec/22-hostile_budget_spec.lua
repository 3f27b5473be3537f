-- A hostile provider script against the instruction budget and the memory
-- ceiling: every way of running on after the budget is spent, or of running
-- where no hook reaches, ends by itself with the process alive, a Winsock
-- error, a log line, and the provider still serving other sockets.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

-- Each entry of W is one way to run away; the spec sends its name to `send`.
local HOSTILE = [=[
local lwsp = require "lwsp"
local up = lwsp.upcall
local function spin() while true do end end
local W = {}

-- catching the budget's error
W["pcall-loop"] = function() while true do pcall(spin) end end
W["xpcall-loop"] = function() while true do xpcall(spin, function(m) return m end) end end
W["xpcall-spinning-handler"] = function() xpcall(spin, spin) end
W["xpcall-handler-catches"] = function() while true do xpcall(spin, function() while true do pcall(spin) end end) end end
W["wrap-in-pcall-loop"] = function() while true do pcall(coroutine.wrap(spin)) end end
W["resume-loop"] = function() while true do coroutine.resume(coroutine.create(spin)) end end
W["nested-wraps"] = function()
  while true do pcall(coroutine.wrap(function() while true do pcall(coroutine.wrap(spin)) end end)) end
end
W["tail-pcall"] = function() return pcall(spin) end
W["error-in-close-loop"] = function()
  while true do pcall(function() local x <close> = setmetatable({}, {__close = spin}) end) end
end
-- short coroutine runs, one after another, never a long one
W["coroutine-churn"] = function() while true do coroutine.wrap(function() end)() end end
W["resume-churn"] = function()
  local f = function() for _ = 1, 10 do end end
  while true do coroutine.resume(coroutine.create(f)) end
end
-- the hook itself
W["sethook-loop"] = function() while true do pcall(debug.sethook) end end
W["debug-subset"] = function()
  local gone = debug.sethook == nil and debug.setlocal == nil and debug.setupvalue == nil
    and debug.upvaluejoin == nil and debug.setmetatable == nil and debug.getregistry == nil
    and debug.getupvalue == nil and debug.setuservalue == nil and debug.debug == nil
  local kept = type(debug.traceback()) == "string" and debug.getinfo(1, "S").what == "Lua" and debug.gethook ~= nil
  return (gone and kept) and 1 or 0
end
-- finalizers (Lua runs them with hooks off)
W["gc-refused"] = function() setmetatable({}, {__gc = spin}) end
W["gc-added-later"] = function()
  local mt = {}
  setmetatable({}, mt)
  mt.__gc = spin                         -- never marked for finalisation: Lua's rule
  collectgarbage()
  collectgarbage()
  return 1
end
W["userdata-metatables"] = function()
  return (type(getmetatable(io.stdout)) ~= "table" and type(getmetatable(up.open_current_thread())) ~= "table") and 1 or 0
end
W["gc-stop"] = function() collectgarbage("stop") end
W["gc-tuning"] = function() collectgarbage("incremental", 1000, 1) end
W["gc-loop"] = function() while true do collectgarbage("step") end end
-- one long C call: pattern matching
local subject = ("a"):rep(4000)
W["find-bomb"] = function() return subject:find(".-.-.-.-.-.-b") and 1 or 0 end
W["match-bomb"] = function() return subject:match("(.-)(.-)(.-)(.-)(.-)b") and 1 or 0 end
W["gmatch-bomb"] = function() for _ in subject:gmatch(".-.-.-.-.-b") do end return 0 end
W["gsub-bomb"] = function() return (select(2, subject:gsub(".-.-.-.-b", ""))) end
W["plain-find-bomb"] = function()
  return (("a"):rep(300000):find(("a"):rep(100000) .. "b", 1, true)) and 1 or 0
end
-- C functions that call back into Lua
W["sort-spin"] = function() table.sort({3, 1, 2, 5, 4}, spin) end
W["sort-error-loop"] = function() while true do pcall(table.sort, {3, 1, 2}, function() error("x") end) end end
W["gsub-function-spin"] = function() ("abc"):gsub(".", spin) end
W["tostring-spin"] = function() return tostring(setmetatable({}, {__tostring = spin})) end
W["index-spin"] = function() return setmetatable({}, {__index = spin}).x end
W["load-endless-reader"] = function() load(function() return "x = 1 " end) end
-- error values
W["error-table-tostring"] = function() error(setmetatable({}, {__tostring = spin})) end
-- memory
W["rep-huge"] = function() return #("x"):rep(1 << 30) end
W["concat-huge"] = function()
  local s, t = ("x"):rep(1 << 20), {}
  for i = 1, 64 do t[i] = s end
  return #table.concat(t)
end
W["load-huge"] = function() return load(("x = 1 "):rep(4000000)) and 1 or 0 end
-- what a provider cannot reach
W["host-process"] = function()
  return (os.exit == nil and os.execute == nil and os.setlocale == nil and io.popen == nil
    and io.read == nil and io.input == nil and io.stdin == nil) and 1 or 0
end
W["stdin-lines"] = function() for _ in io.lines() do end end
W["binary-chunks"] = function()
  local bin = string.dump(function() return 1 end)
  local f, err = load(bin, "x", "b")
  local path = os.tmpname()
  local fh = io.open(path, "wb") fh:write(bin) fh:close()
  local g, err2 = loadfile(path, "b")
  local ok3, err3 = pcall(dofile, path)
  os.remove(path)
  local text = load("return 41 + 1")
  return (f == nil and err:find("binary chunk", 1, true) and g == nil and err2:find("binary chunk", 1, true)
    and not ok3 and err3:find("binary chunk", 1, true) and text() == 42) and 1 or 0
end
W["loadlib"] = function() return package.loadlib == nil and 1 or 0 end
W["move-nils"] = function() table.move({}, 1, math.maxinteger - 1, 1) end
W["move-some"] = function()
  local t = table.move({1, 2, 3}, 1, 3, 2)
  return (t[1] == 1 and t[2] == 1 and t[3] == 2 and t[4] == 3) and 1 or 0
end
-- a coroutine the budget stopped keeps its to-be-closed variable unrun
W["stop-closer"] = function()
  CLOSER = coroutine.create(function() local x <close> = setmetatable({}, {__close = spin}); spin() end)
  coroutine.resume(CLOSER)
end
W["close-suspended"] = function()
  local co = coroutine.create(function() local x <close> = setmetatable({}, {__close = spin}); coroutine.yield() end)
  coroutine.resume(co)
  coroutine.close(co)
end
W["close-stopped"] = function()
  local ok, msg = coroutine.close(CLOSER)
  return (not ok and msg:find("instruction budget exceeded", 1, true)) and 1 or 0
end
-- timers and APCs
W["timer-spin"] = function() lwsp.after(0, function() while true do pcall(spin) end end) return 1 end
W["timer-churn"] = function() lwsp.after(0, function() while true do coroutine.wrap(function() end)() end end) return 1 end
W["timer-table-error"] = function() lwsp.after(0, function() error({}) end) return 1 end
W["timer-late"] = function()
  lwsp.after(0, function() local t0 = os.clock() while os.clock() - t0 < 0.2 do end end)
  lwsp.after(0.02, function() lwsp.log("the late timer ran", "LATE") end)
  return 1
end
W["timer-xpcall"] = function() lwsp.after(0, function() xpcall(spin, spin) end) return 1 end
W["apc-spin"] = function()
  assert(up.queue_apc(up.open_current_thread(), function() while true do pcall(spin) end end))
  return 1
end
W["apc-table-error"] = function() assert(up.queue_apc(up.open_current_thread(), function() error({}) end)) return 1 end
-- warnings and argument errors
W["warn"] = function()
  warn("one ", "two ", "three")
  warn("@off")
  warn("hidden")
  warn("@on")
  warn("four")
  return 1
end
W["argument-error"] = function()
  local _, msg = pcall(up.set_event, "x")
  lwsp.log(msg, "ARG")
  return 1
end

local M = {
  budget = 200000,
  memory_limit = 16 * 1024 * 1024,
  socket = function(s) setmetatable(s, {__call = spin}) return true end,
  bind = pcall,
  send = function(s, data)
    if data == "ok" then return 2 end
    return W[data]()
  end,
  -- a call that cannot wait, with a to-be-closed variable that spins
  getsockname = function(s)
    local x <close> = setmetatable({}, {__close = spin})
    coroutine.yield()
  end,
}

-- results lwsp reads in C, outside any run: metamethods there never run
local trap = {__index = spin}
local boom = {__index = function() error("boom") end}
M.getpeername = function(s) return setmetatable({}, PEER == "boom" and boom or trap) end
M.select = function() return {42} end
M.getsockopt = function() return setmetatable({}, trap) end
W["peer-boom"] = function() PEER = "boom" return 1 end
W["peer-trap"] = function() PEER = "trap" return 1 end
return M
]=]

describe("#hostile a provider that fights its budget", function()
  local r

  local function socket()
    return assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  end

  -- the provider still serves: a new socket, a call
  local function serving()
    local s = socket()
    assert.equal(2, host.send(s, "ok"))
    assert(host.close(s))
  end

  -- the call fails with code, the log has a line with text since mark
  local function stopped(what, code, text)
    local mark = H.mark()
    H.fails_with(code or "WSAENETDOWN", host.send(socket(), what))
    if text ~= false then
      local line = H.find_log(mark, text or "instruction budget exceeded", true)
      assert(line, "no log line saying '" .. tostring(text or "instruction budget exceeded") .. "' for " .. what)
    end
    serving()
  end

  -- waits (alertably, so APCs run; bounded) until the log has a line with text
  local function await_log(mark, text)
    for _ = 1, 100 do
      local line = H.find_log(mark, text, true)
      if line then return line end
      host.sleep(20, true)
    end
    error("no log line saying '" .. text .. "'")
  end

  setup(function() r = H.provider(HOSTILE) end)
  teardown(H.reset)

  describe("catching the budget's error", function()
    it("a pcall in a loop is stopped", function() stopped("pcall-loop") end)
    it("an xpcall in a loop is stopped", function() stopped("xpcall-loop") end)
    it("xpcall's message handler is not called once the budget is spent", function()
      stopped("xpcall-spinning-handler")
    end)
    it("a message handler that catches in a loop is stopped", function() stopped("xpcall-handler-catches") end)
    it("a coroutine.wrap inside pcall, in a loop, is stopped", function() stopped("wrap-in-pcall-loop") end)
    it("coroutine.resume in a loop is stopped", function() stopped("resume-loop") end)
    it("nested coroutines inside pcalls are stopped", function() stopped("nested-wraps") end)
    it("a handler that returns what its pcall caught still fails", function() stopped("tail-pcall") end)
    it("a handler that is pcall itself, calling a socket table that spins, still fails", function()
      local mark = H.mark()
      H.fails_with("WSAENETDOWN", host.bind(socket(), "127.0.0.1:1"))
      assert.truthy(H.find_log(mark, "(caught by the handler, which was stopped all the same)", true))
      serving()
    end)
    it("a __close that runs away inside a pcall loop is stopped", function() stopped("error-in-close-loop") end)
  end)

  describe("short runs that add up", function()
    it("coroutine.wrap called again and again is one run", function() stopped("coroutine-churn") end)
    it("coroutine.resume of short coroutines again and again is one run", function() stopped("resume-churn") end)
  end)

  describe("the hook", function()
    it("cannot be removed: debug.sethook is not there", function() stopped("sethook-loop") end)
    it("debug keeps only what reads", function() assert.equal(1, host.send(socket(), "debug-subset")) serving() end)
  end)

  describe("finalizers", function()
    it("a __gc metamethod is refused", function() stopped("gc-refused", nil, "__gc metamethods are not available") end)
    it("a __gc added after setmetatable never runs", function()
      assert.equal(1, host.send(socket(), "gc-added-later"))
      serving()
    end)
    it("userdata metatables are out of reach", function()
      assert.equal(1, host.send(socket(), "userdata-metatables"))
      serving()
    end)
    it("collectgarbage('stop') is refused", function() stopped("gc-stop", nil, "collectgarbage('stop') is not available") end)
    it("collectgarbage takes no tuning arguments", function() stopped("gc-tuning", nil, "takes no tuning arguments") end)
    it("a loop of collection steps is stopped", function() stopped("gc-loop") end)
  end)

  describe("one long C call", function()
    it("string.find with a backtracking pattern is bounded", function()
      stopped("find-bomb", nil, "pattern matching budget exceeded")
    end)
    it("string.match with a backtracking pattern is bounded", function()
      stopped("match-bomb", nil, "pattern matching budget exceeded")
    end)
    it("string.gmatch with a backtracking pattern is bounded", function()
      stopped("gmatch-bomb", nil, "pattern matching budget exceeded")
    end)
    it("string.gsub with a backtracking pattern is bounded", function()
      stopped("gsub-bomb", nil, "pattern matching budget exceeded")
    end)
    it("a plain find that compares again and again is bounded", function()
      stopped("plain-find-bomb", nil, "pattern matching budget exceeded")
    end)
    it("table.sort's comparator that spins is stopped", function() stopped("sort-spin") end)
    it("table.sort in a pcall loop is stopped", function() stopped("sort-error-loop") end)
    it("gsub's replacement function that spins is stopped", function() stopped("gsub-function-spin") end)
    it("a __tostring that spins is stopped", function() stopped("tostring-spin") end)
    it("an __index that spins is stopped", function() stopped("index-spin") end)
    it("load with a reader that never ends is stopped", function() stopped("load-endless-reader") end)
    it("table.move of more elements than the budget is refused", function()
      stopped("move-nils", nil, "table.move of more elements than the instruction budget")
      assert.equal(1, host.send(socket(), "move-some"))
    end)
  end)

  describe("memory", function()
    it("string.rep of a gigabyte meets the ceiling", function() stopped("rep-huge", "WSAENOBUFS", false) end)
    it("table.concat past the ceiling fails", function() stopped("concat-huge", "WSAENOBUFS", false) end)
    it("load of a chunk past the ceiling fails", function() stopped("load-huge", "WSAENOBUFS", false) end)
  end)

  describe("error values", function()
    it("an error object's __tostring is never called by lwsp", function()
      stopped("error-table-tostring", nil, "(error object is a table value)")
    end)
  end)

  describe("the host process", function()
    it("os.exit, os.execute, os.setlocale, io.popen and standard input are not there", function()
      assert.equal(1, host.send(socket(), "host-process"))
      serving()
    end)
    it("load, loadfile and dofile take text only", function()
      assert.equal(1, host.send(socket(), "binary-chunks"))
      serving()
    end)
    it("package.loadlib is not there", function()
      assert.equal(1, host.send(socket(), "loadlib"))
      serving()
    end)
    it("io.lines needs a file name", function() stopped("stdin-lines", nil, "bad argument #1 to 'lines'") end)
  end)

  describe("to-be-closed variables", function()
    it("of a call that cannot wait are closed under the budget", function()
      local mark = H.mark()
      H.fails_with("WSAENETDOWN", host.getsockname(socket()))
      assert.truthy(H.find_log(mark, "yielded, but this call cannot wait", true))
      serving()
    end)
    it("of a suspended coroutine closed by coroutine.close run under the budget", function()
      stopped("close-suspended")
    end)
    it("of a coroutine the budget stopped are not run by coroutine.close", function()
      stopped("stop-closer")
      assert.equal(1, host.send(socket(), "close-stopped"))
      serving()
    end)
  end)

  describe("timers and APCs", function()
    it("a timer that catches its stop in a loop is stopped", function()
      local mark = H.mark()
      assert.equal(1, host.send(socket(), "timer-spin"))
      assert.truthy(await_log(mark, "timer raised an error: instruction budget exceeded"))
      serving()
    end)
    it("a timer of short coroutines is one run, and stopped", function()
      local mark = H.mark()
      assert.equal(1, host.send(socket(), "timer-churn"))
      assert.truthy(await_log(mark, "timer raised an error"))
      serving()
    end)
    it("a timer due while an earlier one runs long still runs", function()
      local mark = H.mark()
      assert.equal(1, host.send(socket(), "timer-late"))
      assert.truthy(await_log(mark, "the late timer ran"))
      serving()
    end)
    it("a timer's xpcall with a spinning message handler is stopped", function()
      local mark = H.mark()
      assert.equal(1, host.send(socket(), "timer-xpcall"))
      assert.truthy(await_log(mark, "timer raised an error: instruction budget exceeded"))
      serving()
    end)
    it("a timer's error that is not a string is logged by its type", function()
      local mark = H.mark()
      assert.equal(1, host.send(socket(), "timer-table-error"))
      assert.truthy(await_log(mark, "timer raised an error: (error object is a table value)"))
      assert.is_nil(H.find_log(mark, "(null)", true))
      serving()
    end)
    it("an APC that catches its stop in a loop is stopped", function()
      local mark = H.mark()
      assert.equal(1, host.send(socket(), "apc-spin"))
      assert.truthy(await_log(mark, "APC raised an error: instruction budget exceeded"))
      serving()
    end)
    it("an APC's error that is not a string is logged by its type", function()
      local mark = H.mark()
      assert.equal(1, host.send(socket(), "apc-table-error"))
      assert.truthy(await_log(mark, "APC raised an error: (error object is a table value)"))
      serving()
    end)
  end)

  describe("results lwsp reads in C", function()
    it("an address with an __index that spins is read raw", function()
      local mark = H.mark()
      assert.equal(1, host.send(socket(), "peer-trap"))
      H.fails_with("WSAENETDOWN", host.getpeername(socket()))
      assert.truthy(H.find_log(mark, "where an address was expected", true))
      serving()
    end)
    it("an address with an __index that raises is read raw", function()
      assert.equal(1, host.send(socket(), "peer-boom"))
      H.fails_with("WSAENETDOWN", host.getpeername(socket()))
      serving()
    end)
    it("a select result that holds no sockets is a fault, not a crash", function()
      local mark = H.mark()
      local s = socket()
      H.fails_with("WSAENETDOWN", host.select({s}, nil, nil, 0))
      assert.truthy(H.find_log(mark, "must return arrays of sockets", true))
      serving()
    end)
    it("an SO_LINGER table with an __index that spins is read raw (its fields are missing: a fault)", function()
      local mark = H.mark()
      H.fails_with("WSAENETDOWN", host.getsockopt(socket(), wsp.SOL_SOCKET, wsp.SO_LINGER))
      assert.truthy(H.find_log(mark, "SO_LINGER without integer l_onoff and l_linger", true))
      serving()
    end)
  end)

  describe("logging", function()
    it("a warning in pieces is one line, and '@off' silences warnings", function()
      local mark = H.mark()
      assert.equal(1, host.send(socket(), "warn"))
      assert.truthy(H.find_log(mark, "warning: one two three", true))
      assert.truthy(H.find_log(mark, "warning: four", true))
      assert.is_nil(H.find_log(mark, "hidden", true))
      assert.is_nil(H.find_log(mark, "warning: one $", false))
      serving()
    end)
    it("an argument error names the function, also when called through pcall", function()
      local mark = H.mark()
      assert.equal(1, host.send(socket(), "argument-error"))
      assert.truthy(H.find_log(mark, "bad argument #1 to 'lwsp.upcall.set_event'", true))
      local _, msg = pcall(host.socket, "tcp")
      assert.matches("bad argument #1 to 'lwsp.host.socket'", msg, 1, true)
      serving()
    end)
  end)
end)

describe("#hostile a provider script", function()
  after_each(H.reset)

  local function fails_to_start(src, text)
    local r = H.provider(src .. "\n")
    local mark = H.mark()
    H.fails_with("WSAEPROVIDERFAILEDINIT", host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(H.find_log(mark, text, true), "no log line saying '" .. text .. "'")
    -- another provider still starts and serves
    local ok = H.provider("return {socket = function() return true end, send = function() return 2 end}\n")
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, ok.tcp))
    assert.equal(2, host.send(s, "ok"))
  end

  it("whose top level loops for ever fails WSPStartup", function()
    fails_to_start("while true do end", "instruction budget exceeded")
  end)

  it("whose top level catches its stop in a loop fails WSPStartup", function()
    fails_to_start("while true do pcall(function() while true do end end) end", "instruction budget exceeded")
  end)

  for what, meta in pairs{spins = "function() while true do end end", raises = "function() error('no such field') end"} do
    it("whose table of handlers " .. what .. " in __index is read raw: the metamethod never runs", function()
      local r = H.provider("return setmetatable({socket = function() return true end}, {__index = " .. meta .. "})\n")
      local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
      H.fails_with("WSAEOPNOTSUPP", host.send(s, "x"))   -- no send handler, and none looked up through __index
    end)
  end

  it("whose cleanup handler loops is stopped, and the cleanup finishes", function()
    local r = H.provider([[return {budget = 200000, socket = function() return true end,
      cleanup = function() while true do pcall(function() while true do end end) end end}]])
    assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local mark = H.mark()
    host.cleanup()
    assert.truthy(H.find_log(mark, "handler 'cleanup' (WSPCleanup) raised an error: instruction budget exceeded", true))
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))   -- starts afresh
    assert(host.close(s))
  end)
end)

-- The bounded matcher keeps Lua's meaning: the same results and errors as
-- the application's own (stock) string library.
describe("#hostile string patterns in a provider", function()
  local CASES = {
    {"find", "hello world", "o w"}, {"find", "hello world", "l+"}, {"find", "hello", "l", -2},
    {"find", "a.b", ".", 1, true}, {"find", "abc", "", 10}, {"find", "abc", "", 4}, {"find", "abc", "^b"},
    {"find", "key = value", "^(%w+)%s*=%s*(%w+)$"}, {"find", "THE (quick) fox", "%((%a+)%)"},
    {"find", "f(a(b)c)d", "%b()"}, {"find", "THE quick", "%f[%a]%a+", 5}, {"find", "aaa", "()a()"},
    {"match", "2024-01-02", "(%d+)-(%d+)-(%d+)"}, {"match", "  trim  ", "^%s*(.-)%s*$"},
    {"match", "abcabc", "(abc)%1"}, {"match", "x=[[y]]", "%[(%[?)(.-)%]%1%]"}, {"match", "abc", "[^%a]"},
    {"match", "a-b", "[a%-]+"}, {"match", "]x", "[]]"}, {"match", "x^y", "[%^x]+"}, {"match", "hello", ".-$"},
    {"match", "a\0b", "a%z?\0b"}, {"match", "abc", "b?c"}, {"match", "aXb", "%u"}, {"match", "tab\there", "%c"},
    {"gmatch", "one two  three", "%a+"}, {"gmatch", "k1=v1, k2=v2", "(%w+)=(%w+)"}, {"gmatch", "abc", ""},
    {"gmatch", "abc", "()"}, {"gmatch", "abcabc", "b", 3},
    {"gsub", "hello world", "o", "0"}, {"gsub", "hello", "", "-"}, {"gsub", "abc", "%w", "%0%0"},
    {"gsub", "hello world", "(%w+) (%w+)", "%2 %1"}, {"gsub", "abc", "b", "%%"}, {"gsub", "aaa", "a", "b", 2},
    {"gsub", "$x $y", "%$(%w+)", {x = "1"}}, {"gsub", "abc", "^a", "A"}, {"gsub", "abc", "()", "%1"},
    -- errors
    {"find", "a", "%"}, {"find", "a", "[a"}, {"find", "a", "(a"}, {"find", "a", "a)"}, {"match", "a", "%1"},
    {"find", "a", "%f"}, {"find", "a", "%b"}, {"gsub", "a", "a", "%2"}, {"gsub", "a", "a", "%x"},
    {"gsub", "a", "(", "x"}, {"gsub", "abc", "%w", {a = true}},
  }

  -- the outcome of one case, as text
  local function outcome_source()
    return [[
local function outcome(c)
  local f = c[1]
  local ok, a, b, d, e
  if f == "gmatch" then
    ok, a = pcall(function()
      local out = {}
      for x, y in string.gmatch(c[2], c[3], c[4]) do out[#out + 1] = tostring(x) .. "/" .. tostring(y) end
      return table.concat(out, ",")
    end)
  else
    ok, a, b, d, e = pcall(string[f], c[2], c[3], c[4], c[5])
  end
  local text = table.concat({tostring(ok), tostring(a), tostring(b), tostring(d), tostring(e)}, "|")
  local out = {}
  for i = 1, #text do   -- one log line, whatever the bytes
    local ch = text:byte(i)
    out[i] = (ch < 32 or ch > 126) and ("\\" .. ch) or string.char(ch)
  end
  return table.concat(out)
end
]]
  end

  it("give the stock library's results and errors", function()
    local function ser(v)
      if type(v) == "table" then
        local parts = {}
        for k, x in pairs(v) do parts[#parts + 1] = ("[%q] = %s"):format(k, ser(x)) end
        return "{" .. table.concat(parts, ", ") .. "}"
      end
      return type(v) == "string" and ("%q"):format(v) or tostring(v)
    end
    local lines = {}
    for i, c in ipairs(CASES) do
      local items = {}
      for k = 1, 5 do items[k] = ser(c[k]) end
      lines[i] = "{" .. table.concat(items, ", ") .. "},"
    end
    local r = H.provider(outcome_source() .. [[
local lwsp = require "lwsp"
local CASES = {
]] .. table.concat(lines, "\n") .. [[
}
return {
  budget = 200000,
  socket = function() return true end,
  send = function()
    for i, c in ipairs(CASES) do lwsp.log(("%d %s"):format(i, outcome(c)), "PAT") end
    return 1
  end,
}
]])
    local outcome = assert(load(outcome_source() .. "return outcome"))()
    local mark = H.mark()
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert.equal(1, host.send(s, "go"))
    local got = {}
    for _, line in ipairs(H.logs(mark)) do
      local i, text = line:match("(%d+) (.*)$")
      if i and line:find("PAT", 1, true) then got[tonumber(i)] = text end
    end
    for i, c in ipairs(CASES) do
      assert.equal(outcome(c), got[i], ("case %d: string.%s(%q, %q)"):format(i, c[1], c[2], c[3]))
    end
    assert.equal(1, host.send(assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp)), "again"))
    H.reset()
  end)
end)

-- A loop of calls out to C is a few instructions per call however long each
-- takes: each counts as 1,000 instructions to a run the watchdog has armed
-- (debug.gethook() answers once it has), so a loop of upcalls or of calls
-- down ends after about budget / 1,000 of them, not budget / 10.
describe("#hostile calls out to C count toward the budget", function()
  after_each(H.reset)
  local BUDGET = 200000

  -- `send` loops on call(s) until stopped, counting the calls made while armed;
  -- recv returns that number
  local function looping(call, layered)
    return ([[
local wsp = require "wsp"
local up = require("lwsp").upcall
local P = %s
P.budget = %d
local N = 0
function P.recv() return tostring(N) end
function P.send(s, data)
  N = 0
  while true do
    if debug.gethook() then N = N + 1 end
    %s
  end
end
return P
]]):format(layered and 'require("wsp.layered").new()' or "{socket = function() return true end}", BUDGET, call)
  end

  local function ends_soon(r, what)
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local mark = H.mark()
    H.fails_with("WSAENETDOWN", host.send(s, "go"))
    assert.truthy(H.find_log(mark, "instruction budget exceeded", true))
    local got, err = host.recv(s, 100)
    local n = assert(tonumber(got), tostring(err))
    -- armed calls: about BUDGET / 1,000; uncharged they would be BUDGET / (a dozen instructions)
    assert(n > 0 and n <= BUDGET // 1000 + 10, what .. ": " .. tostring(n) .. " calls after the run was armed")
    assert(host.close(s))
  end

  it("a loop of upcalls ends after budget / 1,000 of them", function()
    ends_soon(H.provider(looping("pcall(up.close_socket_handle, -1)")), "upcalls")
  end)

  it("a loop of calls down ends after budget / 1,000 of them", function()
    local r = H.layered{script = H.script(looping("s.low:getsockopt(s.lh, wsp.SOL_SOCKET, wsp.SO_TYPE)", true)),
                        over = H.base(), name = "calls down"}
    ends_soon(r, "calls down")
  end)

  -- A run spends almost all its time below it: the watchdog finds it in a
  -- call down at nearly every look, and must still count it as one run.
  it("a loop of calls down that each take long ends after budget / 1,000 of them", function()
    local slow = H.provider([[
local wsp = require "wsp"
return {
  socket = function(s, af, type) s.type = type; return true end,
  getsockopt = function(s)
    local t = os.clock() + 0.004
    while os.clock() < t do end
    return s.type
  end,
  closesocket = function() return true end,
}
]])
    local r = H.layered{script = H.script(looping("s.low:getsockopt(s.lh, wsp.SOL_SOCKET, wsp.SO_TYPE)", true)),
                        over = slow, name = "slow calls down"}
    ends_soon(r, "slow calls down")
  end)
end)
