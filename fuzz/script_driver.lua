-- Driver for fuzz_script: builds a provider script from the input (handler
-- bodies from a small grammar: loops, pcall and xpcall, coroutines,
-- metatables with __gc, __index, __eq and __tostring, upcalls, big strings
-- and tables, errors with odd values, odd results), installs it through the
-- host with a small instruction budget and memory ceiling, and drives a few
-- calls into it.  Findings: a crash, a sanitizer report, a call that does not
-- end within LIMIT seconds (the budget should stop any handler long before),
-- a provider instance that outlives WSACleanup, or a host that no longer
-- carries data afterwards (memnet, loaded beside it, is checked after every
-- input).  The driver returns a finding as text; fuzz_script.c aborts on it.
--
-- LWSP_FUZZ_HOLES=1 lets the grammar make the constructs the budget does not
-- bound yet: a pcall, xpcall or coroutine inside a loop that never ends (each
-- catches the budget's error), loops in __gc, debug.sethook, patterns that
-- backtrack for ever, loops in the script's main chunk, big allocations in
-- __gc (a finalizer that lua_close runs has no memory ceiling), and full
-- collections or big strings made in a loop without end (each costs one
-- instruction of budget, however long it takes).  Without it
-- those are left out, so the target runs clean today; with it the target
-- finds them.
local lwsp = require "lwsp"
local wsp = require "wsp"
local host = require "wsp.host"

local HOLES = os.getenv("LWSP_FUZZ_HOLES") == "1"
local LIMIT = 5          -- CPU seconds any one call may take (under ASan)
local GUID = "{6C777370-4655-5A5A-5343-524950540001}"
local SCRIPT = SCRIPT_PATH

local M = host.install_lua{script = FUZZ_ROOT .. "/examples/memnet.lua"}
-- memnet stays loaded through every cleanup
local keep = assert(host.startup(M.tcp), "memnet does not start: is lua/ beside the fuzz build's lwsp.so?")
local F = host.install_lua{script = SCRIPT, guid = GUID}

local VALUES = {"true", "nil", "false", "1", "-1", "2^40", "0/0", "math.huge", "'x'", "{}", "'WSAEWOULDBLOCK'",
  "wsp.WSAEFAULT", "function() end", "coroutine.create(print)", "string.rep('r', 100000)",
  "setmetatable({}, {__index = function() error('idx') end})", "setmetatable({}, {__eq = function() return true end})",
  "nil, 'WSAENOBUFS: made up', wsp.WSAENOBUFS", "nil, {}", "nil, 10035", "nil, -7", "1, 2, 3, 4, 5"}
local ODD = {"nil", "{}", "42", "true", "print", "coroutine.create(print)", "string.rep('e', 100000)",
  "setmetatable({}, {__tostring = function() error('tostring') end})",
  "setmetatable({}, {__tostring = function() return 1 end})", "'plain'"}
local UPCALLS = {
  "pcall(wsp.upcall.query_socket_handle_context, type(s) == 'table' and s.handle or 0)",
  "do local e = wsp.upcall.create_event() if e then wsp.upcall.set_event(e) wsp.upcall.reset_event(e) wsp.upcall.close_event(e) end end",
  "if type(s) == 'table' then wsp.upcall.fd_isset(s.handle, {s.handle}) end",
  "wsp.upcall.post_message(0, 0, 0, 0)",
  "wsp.upcall.get_provider_path('" .. GUID .. "')",
  "wsp.upcall.query_blocking_callback()",
  "if type(s) == 'table' and s.handle then wsp.event(s, wsp.FD_READ, 0) end",
  "pcall(wsp.upcall.close_socket_handle, -1)",
}

-- The generator: gen(bytes) -> script source.
local function gen(bytes)
  local pos = 1
  local function byte()
    local b = bytes:byte(pos) or 0
    pos = pos + 1
    return b
  end
  local function pick(t) return t[byte() % #t + 1] end
  local out = {}
  local stmt
  -- ctx: plain (inside a loop without end: nothing that catches errors),
  -- protected (inside pcall, xpcall or a coroutine: nothing without end),
  -- gc (inside __gc: no loops), top (the handler's own level: may wait)
  local function block(d, ctx)
    local parts = {}
    for _ = 1, byte() % 3 + 1 do parts[#parts + 1] = stmt(d + 1, ctx) end
    return table.concat(parts, " ")
  end
  local function sub(ctx, t) local c = {} for k, v in pairs(ctx) do c[k] = v end for k, v in pairs(t) do c[k] = v end return c end
  function stmt(d, ctx)
    local k = d >= 4 and byte() % 5 or byte() % 17
    if k == 0 then return "x = (x or 0) + 1"
    elseif k == 1 then
      local n = (ctx.protected or ctx.gc) and not HOLES and pick{1, 10, 100} or pick{1, 100, 10000, 1000000}
      return ("do local t = {} for i = 1, %d do t[i] = i end end"):format(n)
    elseif k == 2 then
      -- (a finalizer run by lua_close has no memory ceiling: big values there are a known hole too)
      -- (and in a loop without end each is one instruction to the budget, however big: a known hole)
      local n = (ctx.gc or ctx.plain) and not HOLES and 10 or pick{10, 10000, 1 << 20, 1 << 24, 1 << 26}
      return ("do local b = string.rep('x', %d) end"):format(n)
    elseif k == 3 then return pick(UPCALLS)
    elseif k == 4 then
      -- (each finalizer lua_close runs is unbudgeted: a big message there, times thousands, is the known __gc hole)
      local v = pick(ODD)
      if ctx.gc and not HOLES and v:find("rep", 1, true) then v = "'gc'" end
      return ("error(%s)"):format(v)
    elseif k == 5 then
      if ctx.gc and not HOLES then return "x = 1" end
      return ("for i = 1, %d do %s end"):format(pick{1, 3, 10, 100}, block(d, sub(ctx, {top = false})))
    elseif k == 6 then
      if (ctx.protected or ctx.gc) and not HOLES then return "x = 2" end
      return ("while true do %s end"):format(block(d, sub(ctx, {plain = true, top = false})))
    elseif k == 7 then
      if ctx.plain and not HOLES then return "x = 3" end
      return ("pcall(function() %s end)"):format(block(d, sub(ctx, {protected = true, top = false})))
    elseif k == 8 then
      if ctx.plain and not HOLES then return "x = 4" end
      return ("xpcall(function() %s end, function(m) %s return m end)"):format(
        block(d, sub(ctx, {protected = true, top = false})), stmt(d + 1, sub(ctx, {protected = true, top = false})))
    elseif k == 9 then
      if ctx.plain and not HOLES then return "x = 5" end
      local body = block(d, sub(ctx, {protected = true, top = false}))
      if byte() % 2 == 0 then
        return ("do local co = coroutine.create(function() %s coroutine.yield(1) %s end) coroutine.resume(co) coroutine.resume(co) coroutine.resume(co) end")
          :format(body, stmt(d + 1, sub(ctx, {protected = true, top = false})))
      end
      return ("pcall(coroutine.wrap(function() %s end))"):format(body)
    elseif k == 10 then
      local gcbody = stmt(d + 1, sub(ctx, {gc = true, top = false}))
      local idx = stmt(d + 1, sub(ctx, {top = false}))
      return ("do local o = setmetatable({}, {__index = function(t, k) %s return k end, __eq = function() return %s end, "
        .. "__gc = function() %s end}) local _ = o.field local _ = (o == setmetatable({}, getmetatable(o))) end")
        :format(idx, pick{"true", "nil", "error('eq')"}, gcbody)
    elseif k == 11 then
      return ("do local _ = tostring(setmetatable({}, {__tostring = function() %s return 'x' end})) end")
        :format(stmt(d + 1, sub(ctx, {top = false})))
    elseif k == 12 then
      if HOLES and byte() % 2 == 0 then return "string.find(string.rep('a', 40), string.rep('a-', 40) .. 'b')" end
      return "string.gsub('abc', '%w', '%0%0')"
    elseif k == 13 then
      if HOLES and byte() % 2 == 0 then return pick{"debug.sethook()", "debug.sethook(function() end, '', 1000000000)"} end
      return "local _ = debug.gethook()"
    elseif k == 14 then
      -- a full collection is one instruction to the budget: a loop of them is a known hole
      if ctx.plain and not HOLES then return "collectgarbage('count')" end
      return pick{"collectgarbage()", "collectgarbage('step')", "collectgarbage('count')"}
    elseif k == 15 then
      -- waiting: only where a wait cannot repeat for ever, and with a timeout
      if not ctx.top then return "x = 6" end
      return pick{"wsp.wait(nil)", "wsp.wait(type(s) == 'table' and s or 1, 0.001)"}
    end
    return ("do local big = {} for i = 1, %d do big[i] = {i} end end"):format(ctx.gc and not HOLES and 10 or pick{10, 1000, 100000})
  end
  out[#out + 1] = "local wsp = require 'wsp'"
  out[#out + 1] = ("local M = {budget = %d, memory_limit = %d}"):format(pick{200000, 1000000}, pick{1 << 20, 8 << 20})
  if HOLES and byte() % 8 == 0 then out[#out + 1] = pick{"while true do end", "for i = 1, 1e9 do x = i end"} end
  for _, h in ipairs{{"socket", "s, af, type, protocol"}, {"bind", "s, addr"}, {"send", "s, data, flags"},
                     {"recv", "s, len, flags"}, {"getsockopt", "s, level, name"}, {"ioctl", "s, code, input"},
                     {"closesocket", "s"}, {"stringtoaddress", "s, af"}} do
    local body = byte() % 3 == 0 and "" or block(0, {top = true})
    local ret = h[1] == "socket" and byte() % 4 ~= 0 and "true" or pick(VALUES)
    out[#out + 1] = ("function M.%s(%s) %s return %s end"):format(h[1], h[2], body, ret)
  end
  out[#out + 1] = "return M"
  return table.concat(out, "\n")
end

local function timed(what, f, ...)
  local t0 = NOW()
  local r = table.pack(pcall(f, ...))
  local dt = NOW() - t0
  if dt > LIMIT then error(("%s took %.1f s of CPU"):format(what, dt), 0) end
  return table.unpack(r, 2, r.n)
end

local function run(bytes)
  local src = gen(bytes)
  local f = assert(io.open(SCRIPT, "w"))
  f:write(src)
  f:close()
  local s = timed("socket", host.socket, wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, F.tcp)
  timed("string_to_address", host.string_to_address, "1.2.3.4", wsp.AF_INET, F.tcp)
  if math.type(s) == "integer" then
    timed("bind", host.bind, s, "127.0.0.1:0")
    timed("ioctl", host.ioctl, s, wsp.FIONREAD)
    timed("send", host.send, s, "hello")
    timed("recv", host.recv, s, 64)
    timed("getsockopt", host.getsockopt, s, wsp.SOL_SOCKET, wsp.SO_TYPE)
    local ov = host.overlapped()
    local pending = select(3, timed("wsarecv", host.wsarecv, s, 16, ov, {routine = true})) == wsp.WSA_IO_PENDING
    timed("close", host.close, s)
    if pending then timed("sleep", host.sleep, 0, true) end
  end
  timed("cleanup", host.cleanup)
  host.completions()
  if host.bench_instance(GUID) then return "the provider's instance outlived WSACleanup" end
  -- memnet, beside it, still carries data
  local l = host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, M.tcp)
  local c = host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, M.tcp)
  local ok = l and c and host.bind(l, "127.0.0.1:0") and host.listen(l, 1) and host.connect(c, host.getsockname(l))
  local a = ok and host.accept(l)
  local got = a and host.send(c, "ping") and host.recv(a, 16)
  for _, h in ipairs{l, c, a} do if h then host.close(h) end end
  if got ~= "ping" then return "the host no longer carries data after the input" end
  return nil
end

return function(bytes)
  assert(keep)   -- (held here, so memnet's startup lives as long as the driver)
  local ok, finding = pcall(run, bytes)
  if not ok then return finding end
  return finding
end
