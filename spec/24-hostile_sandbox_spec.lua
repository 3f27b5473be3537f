-- A hostile provider script: raw pointers, other providers' handles and
-- bytecode from Lua; where its code is loaded from; values that would be cut.
-- Each case ends with the process alive and the provider still serving.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

local sep = H.windows and "\\" or "/"

-- The snippet runner of spec/providers/upcaller.lua (ioctl 0x7100 runs Lua in
-- the provider; WSPGetOverlappedResult runs on_result), as a script in this
-- run's temporary folder, so that a spec can put modules beside it.
local function upcaller_source()
  local f = assert(io.open(H.root .. "/spec/providers/upcaller.lua"))
  local src = f:read("a")
  f:close()
  return ("package.path = %q .. package.path\n"):format(H.root .. sep .. "spec" .. sep .. "providers" .. sep .. "?.lua;") .. src
end

local function run(s, code)
  local out, msg, c = host.ioctl(s, 0x7100, code, 1024)
  if not out then return nil, msg, c end
  return assert(load(out))()
end

-- The provider still serves: a fresh socket on it answers.
local function serving(r)
  local t = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  assert.equal(42, run(t, "return 40 + 2"))
  assert.is_true(host.close(t))
end

-- A call that fails because the snippet raised, with the reason in the log.
local function raises(s, code, text)
  local mark = H.mark()
  H.fails_with("WSAENETDOWN", host.ioctl(s, 0x7100, code, 1024))
  local line = H.find_log(mark, "handler 'ioctl' (WSPIoctl) raised an error", true)
  assert.truthy(line, "no log line for the error")
  assert.truthy(line:find(text, 1, true), line)
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

describe("#hostile overlapped structures reach a provider only as checked objects", function()
  local r, s
  before_each(function()
    r = H.provider(upcaller_source())
    s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  end)
  after_each(H.reset)

  it("refuses an integer as an overlapped (0x41414141 would be dereferenced)", function()
    raises(s, "return up.complete_overlapped_request(s.handle, 0x41414141, 0, 5)", "overlapped expected")
    serving(r)
  end)

  it("refuses a string, a table, nil or another lwsp object as an overlapped", function()
    raises(s, "return up.complete_overlapped_request(s.handle, 'AAAA', 0, 5)", "expected")
    raises(s, "return up.complete_overlapped_request(s.handle, {address = 1}, 0, 5)", "expected")
    raises(s, "return up.complete_overlapped_request(s.handle, nil, 0, 5)", "expected")
    -- a thread id object is another type, with other memory behind it
    raises(s, "return up.complete_overlapped_request(s.handle, up.open_current_thread(), 0, 5)", "expected")
    serving(r)
  end)

  it("refuses an overlapped object kept after its call returned", function()
    local ov = host.overlapped(host.create_event())
    run(s, "on_result = function(s, ov) KEPT = ov return 0, 0 end")
    assert.equal(0, host.get_overlapped_result(s, ov, false))
    -- its address can be read (to tell calls apart), never used
    assert.equal(ov.address, run(s, "return KEPT.address"))
    assert.equal("overlapped (its call returned)", run(s, "return tostring(KEPT)"))
    raises(s, "return KEPT.Internal", "overlapped used after its call returned")
    raises(s, "return up.complete_overlapped_request(s.handle, KEPT, 0, 5)", "overlapped used after its call returned")
    assert.equal(0, ov.InternalHigh)   -- untouched
    serving(r)
  end)

  it("reads the live overlapped's fields during its call", function()
    local ov = host.overlapped(host.create_event())
    run(s, "on_result = function(s, ov) F = {ov.Internal, ov.InternalHigh, ov.Offset, ov.OffsetHigh, tostring(ov)} return 0, 0 end")
    assert.equal(0, host.get_overlapped_result(s, ov, false))
    assert.same({0, 0, 0, 0, "overlapped (live)"}, run(s, "return F"))
  end)

  it("completes an overlapped only on the socket it was given for", function()
    local other = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local ev = host.create_event()
    local ov = host.overlapped(ev)
    run(s, ("on_result = function(s, ov) R = {up.complete_overlapped_request(%d, ov, 0, 9)} return 0, 0 end"):format(other))
    assert.equal(0, host.get_overlapped_result(s, ov, false))
    H.fails_with("WSAEINVAL", run(s, "return table.unpack(R)"))
    assert.is_false(host.event_state(ev))
    assert.equal(0, ov.InternalHigh)
    serving(r)
  end)

  it("refuses to complete an overlapped that lwsp will complete (a pending operation's)", function()
    -- a provider whose recv waits: the application's overlapped receive stays pending in lwsp
    local p = H.provider("local M = (function(...)\n" .. upcaller_source() .. "\nend)(...)\n" .. [[
local wsp = require "wsp"
M.recv = function(s) wsp.wait(s) return "late" end
return M
]])
    local t = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, p.tcp))
    local ev = host.create_event()
    local ov = host.overlapped(ev)
    H.fails_with("WSA_IO_PENDING", host.wsarecv(t, 10, ov))
    run(t, "on_result = function(s, ov) R = {up.complete_overlapped_request(s.handle, ov, 0, 3)} return 0, 0 end")
    assert.equal(0, host.get_overlapped_result(t, ov, false))
    H.fails_with("WSAEINVAL", run(t, "return table.unpack(R)"))
    assert.is_false(host.event_state(ev))
    assert.is_true(host.close(t))             -- lwsp completes it, once: aborted
    assert.is_true(host.event_state(ev))
    assert.equal(wsp.WSA_OPERATION_ABORTED, ov.OffsetHigh)
    serving(p)
  end)

  it("refuses an error or byte count outside the DWORD range", function()
    local ov = host.overlapped(host.create_event())
    run(s, "on_result = function(s, ov) R = {pcall(up.complete_overlapped_request, s.handle, ov, 0, 1 << 32)} return 0, 0 end")
    assert.equal(0, host.get_overlapped_result(s, ov, false))
    local ok, msg = run(s, "return table.unpack(R)")
    assert.is_false(ok)
    assert.truthy(msg:find("32-bit", 1, true), msg)
    run(s, "on_result = function(s, ov) R = {pcall(up.complete_overlapped_request, s.handle, ov, -1, 1)} return 0, 0 end")
    assert.equal(0, host.get_overlapped_result(s, ov, false))
    assert.is_false((run(s, "return table.unpack(R)")))
    assert.equal(0, ov.InternalHigh)
    serving(r)
  end)
end)

describe("#hostile a provider touches only its own handles, events and windows", function()
  local r, s, other, os_
  before_each(function()
    r = H.provider(upcaller_source())
    other = H.provider("examples/memnet.lua")
    s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    os_ = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, other.udp))
    assert.is_true(host.bind(os_, "127.0.0.1:7301"))
  end)
  after_each(H.reset)

  -- the other provider's socket still carries data
  local function other_works()
    local b = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, other.udp))
    assert.equal(3, host.sendto(b, "abc", "127.0.0.1:7301"))
    assert.equal("abc", (host.recvfrom(os_, 10)))
    host.close(b)
  end

  it("cannot close another provider's socket handle", function()
    local mark = H.mark()
    H.fails_with("WSAENOTSOCK", run(s, ("return up.close_socket_handle(%d)"):format(os_)))
    assert.truthy(H.find_log(mark, "was not created by this provider's script", true))
    other_works()
    serving(r)
  end)

  it("cannot close the handle of one of its own lwsp sockets behind lwsp's back", function()
    H.fails_with("WSAENOTSOCK", run(s, "return up.close_socket_handle(s.handle)"))
    assert.equal(42, run(s, "return 42"))   -- s is still there
    assert.is_true(host.close(s))
  end)

  it("cannot query another provider's socket context", function()
    H.fails_with("WSAENOTSOCK", run(s, ("return up.query_socket_handle_context(%d)"):format(os_)))
    assert.is_number(run(s, "return up.query_socket_handle_context(s.handle)"))   -- its own: yes
    other_works()
  end)

  it("cannot make a handle under another provider's catalog entry", function()
    local before = #host.catalog()
    H.fails_with("WSAEINVALIDPROVIDER", run(s, ("return up.create_socket_handle(%d, 0x41414141)"):format(other.udp)))
    H.fails_with("WSAEINVALIDPROVIDER", run(s, ("return up.modify_ifs_handle(%d, 0x9300)"):format(other.udp)))
    H.fails_with("WSAENOTSOCK", host.socket_info(0x9300))
    assert.equal(before, #host.catalog())
    other_works()
  end)

  it("cannot close, set or reset the application's events", function()
    local ev = host.create_event()
    H.fails_with("WSA_INVALID_HANDLE", run(s, ("return up.close_event(%d)"):format(ev)))
    H.fails_with("WSA_INVALID_HANDLE", run(s, ("return up.set_event(%d)"):format(ev)))
    assert.is_false(host.event_state(ev))
    assert.is_true(host.set_event(ev))
    H.fails_with("WSA_INVALID_HANDLE", run(s, ("return up.reset_event(%d)"):format(ev)))
    assert.is_true(host.event_state(ev))
    -- once selected on one of its sockets, it may set and reset it (never close it)
    assert.is_true(host.event_select(s, ev, wsp.FD_READ))
    assert.is_true(run(s, ("return up.reset_event(%d)"):format(ev)))
    assert.is_false(host.event_state(ev))
    assert.is_true(run(s, ("return up.set_event(%d)"):format(ev)))
    H.fails_with("WSA_INVALID_HANDLE", run(s, ("return up.close_event(%d)"):format(ev)))
    assert.is_true(host.close_event(ev))
    serving(r)
  end)

  it("posts messages only to the window and message selected for that socket", function()
    local w = host.window()
    H.fails_with("WSAEINVAL", run(s, ("return up.post_message(%d, 0x401, %d, 1)"):format(w, s)))
    assert.is_true(host.async_select(s, w, 0x401, wsp.FD_READ))
    H.fails_with("WSAEINVAL", run(s, ("return up.post_message(%d, 0x401, %d, 1)"):format(w, os_)))   -- not its socket
    H.fails_with("WSAEINVAL", run(s, ("return up.post_message(%d, 0x12, %d, 1)"):format(w, s)))      -- another message
    assert.same({}, host.messages(w))
    assert.is_true(run(s, ("return up.post_message(%d, 0x401, %d, 1)"):format(w, s)))
    assert.equal(1, #host.messages(w))
    host.close_object(w)
  end)

  it("closes the handles and events its script left open when it is cleaned up", function()
    local h = run(s, ("return up.create_socket_handle(%d, 5)"):format(r.tcp))
    local ev = run(s, "return up.create_event()")
    assert.equal(5, host.socket_info(h).context)
    assert.equal("event", host.object_type(ev))
    host.cleanup()
    H.fails_with("WSAENOTSOCK", host.socket_info(h))
    assert.is_nil(host.object_type(ev))
    serving(r)   -- started again
  end)

  it("has no lwsp.host in its state: the application's side, which takes raw handles and loads DLLs", function()
    assert.is_true(run(s, "return lwsp.host == nil and require('lwsp').host == nil and lwsp._runtime == nil " ..
                          "and not pcall(require, 'lwsp.host')"))
    assert.is_table(require "lwsp.host")   -- the application's state has it, as a module of its own
    assert.is_userdata(lwsp._runtime)      -- which shares this runtime (its log, trace and instances)
  end)

  it("cannot reach the debug functions that would swap an upcall's instance or forge an object", function()
    assert.same({true, true, true, true, true, true, true},
                {run(s, [[return debug.setupvalue == nil, debug.getregistry == nil, debug.upvaluejoin == nil,
                           debug.setmetatable == nil, debug.setlocal == nil, debug.setuservalue == nil,
                           debug.getuservalue == nil]])})
    assert.is_string(run(s, "return debug.traceback('x')"))   -- the reading ones stay
    serving(r)
  end)
end)

describe("#hostile binary chunks in a provider state", function()
  local r, s
  before_each(function()
    r = H.provider(upcaller_source())
    s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  end)
  after_each(H.reset)

  it("load refuses string.dump's product, whatever mode is asked", function()
    for _, mode in ipairs{"nil", "'b'", "'bt'"} do
      local ok, msg = run(s, ("return load(string.dump(function() return 1 end), 'x', %s)"):format(mode))
      assert.is_nil(ok)
      assert.truthy(msg:find("binary chunk", 1, true) or msg:find("mode", 1, true), msg)
    end
    serving(r)
  end)

  it("load refuses a crafted chunk instead of running it", function()
    local ok, msg = run(s, [[
      local d = string.dump(function(a) return a + 1 end)
      d = d:sub(1, 40) .. string.rep("\255", 64) .. d:sub(105)
      return load(d, "crafted", "b")
    ]])
    assert.is_nil(ok)
    assert.truthy(msg:find("binary chunk", 1, true), msg)
    serving(r)
  end)

  it("load refuses a binary chunk that comes through a reader function", function()
    local ok, msg = run(s, [[
      local d, done = string.dump(function() return 1 end), false
      return load(function() if done then return nil end done = true return d end)
    ]])
    assert.is_nil(ok)
    assert.truthy(msg:find("binary chunk", 1, true), msg)
  end)

  it("load still takes text, with a chunk name, mode and environment", function()
    assert.equal(7, run(s, "return load('return x + 2', '=t', 't', {x = 5})()"))
    assert.equal(3, run(s, "local n = 0 return load(function() n = n + 1 if n == 1 then return 'return 3' end end)()"))
    local ok, msg = run(s, "return load('return 1', '=t', 'b')")
    assert.is_nil(ok)
    assert.truthy(msg:find("text chunk", 1, true), msg)
  end)

  it("loadfile and dofile refuse a binary file", function()
    local path = H.tmp .. sep .. "dumped.luac"
    write(path, string.dump(function() return "ran" end))
    local ok, msg = run(s, ("return loadfile(%q)"):format(path))
    assert.is_nil(ok)
    assert.truthy(msg:find("binary chunk", 1, true), msg)
    raises(s, ("return dofile(%q)"):format(path), "binary chunk")
    local text = H.tmp .. sep .. "text.lua"
    write(text, "return 'text ran'")
    assert.equal("text ran", run(s, ("return dofile(%q)"):format(text)))
    assert.equal("text ran", run(s, ("return loadfile(%q)()"):format(text)))
    serving(r)
  end)

  it("require refuses a module file that holds bytecode", function()
    -- the script sits in H.tmp: its folder is on the search path
    write(H.tmp .. sep .. "binmod.lua", string.dump(function() return "ran" end))
    local ok, msg = run(s, "return pcall(require, 'binmod')")
    assert.is_false(ok)
    assert.truthy(msg:find("binary chunk", 1, true), msg)
    write(H.tmp .. sep .. "textmod.lua", "return 'text module'")
    assert.same({true, "text module"}, {run(s, "local ok, m = pcall(require, 'textmod') return ok, m")})
    serving(r)
  end)

  it("has only lwsp's searchers and no package.loadlib", function()
    assert.same({true, 3, "function", "function", "function"},
                {run(s, [[return package.loadlib == nil, #package.searchers,
                           type(package.searchers[1]), type(package.searchers[2]), type(package.searchers[3])]])})
    -- lwsp's own are C functions: nothing of Lua's original loaders is reachable through them
    assert.same({true, true}, {run(s, [[local i2, i3 = debug.getinfo(package.searchers[2], 'S'), debug.getinfo(package.searchers[3], 'S')
                                          return i2.what == 'C', i3.what == 'C']])})
    -- putting a searcher back in Lua changes nothing about binary chunks
    write(H.tmp .. sep .. "binmod2.lua", string.dump(function() return "ran" end))
    local ok, msg = run(s, [[
      table.insert(package.searchers, 2, function(name)
        local f = io.open(package.searchpath(name, package.path), 'rb')
        local d = f:read('a') f:close()
        return assert(load(d))
      end)
      return pcall(require, 'binmod2')
    ]])
    assert.is_false(ok)
    assert.truthy(msg:find("binary chunk", 1, true), msg)
    serving(r)
  end)

  it("refuses a provider script that is a binary chunk", function()
    local path = H.tmp .. sep .. "binary_provider.lua"
    write(path, string.dump(load("return {socket = function() return true end}")))
    local b = host.install_lua{script = path}
    local mark = H.mark()
    H.fails_with("WSAEPROVIDERFAILEDINIT", host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, b.tcp))
    assert.truthy(H.find_log(mark, "binary chunk", true))
    host.uninstall_lua(b)
    serving(r)
  end)
end)

describe("#hostile values a layer passes down or reports", function()
  local base, layer
  before_each(function()
    base = H.base()
    layer = H.layered{script = H.script([[
local wsp = require "wsp"
local P = require("wsp.layered").new()
local down = P.ioctl
function P.ioctl(s, code, input, outlen)
  if code ~= 0x7100 then return down(s, code, input, outlen) end
  local ok, msg = pcall(load(input, "=snippet", "t", setmetatable({s = s, wsp = wsp}, {__index = _G})))
  return tostring(ok) .. " " .. tostring(msg)
end
return P
]]), over = base, name = "passes"}
  end)
  after_each(function() host.cleanup() H.reset() end)

  it("raises on an argument for a 32-bit parameter of the layer below instead of cutting it", function()
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, layer.tcp))
    local function snippet(code) return assert(host.ioctl(c, 0x7100, code, 1024)) end
    -- (1 << 32) + 4 used to become 4
    local out = snippet("return s.low:getsockopt(s.lh, 0xffff, 0x1001, (1 << 32) + 4)")
    assert.truthy(out:find("^false .*out of the 32%-bit range"), out)
    out = snippet("return s.low:send(s.lh, 'x', 1 << 32)")
    assert.truthy(out:find("^false .*out of the 32%-bit range"), out)
    out = snippet("return s.low:shutdown(s.lh, -(1 << 31) - 1)")
    assert.truthy(out:find("^false .*out of the 32%-bit range"), out)
    -- each argument is read before the provider's lock is released for the call down
    -- (an error raised without the lock would unlock it twice: make tsan sees it)
    out = snippet("return s.low:getsockopt('not a handle', 0xffff, 0x1001)")
    assert.truthy(out:find("^false .*number expected"), out)
    out = snippet("return s.low:ioctl(s.lh, 'FIONBIO')")
    assert.truthy(out:find("^false .*number expected"), out)
    out = snippet("return s.low:select({s.lh}, nil, nil, 1e30)")
    assert.truthy(out:find("^false .*a timeout in seconds"), out)
    out = snippet("return wsp.event(s, (1 << 32) | wsp.FD_READ)")   -- used to be FD_READ
    assert.truthy(out:find("^false .*one FD_%* event"), out)
    assert.equal(4, #assert(host.getsockopt(c, wsp.SOL_SOCKET, wsp.SO_RCVBUF)))   -- still serving
    assert.is_true(host.close(c))
  end)
end)

-- A provider that reports where its code may come from.
local PATHS = [[
local lwsp = require "lwsp"
local ok, err = pcall(require, ...)
lwsp.log(("path=%s cpath=%s planted=%s"):format(package.path, package.cpath, tostring(ok)), "paths")
return {socket = function() return true end, ioctl = function(s, code, input) return load(input)() end}
]]

describe("#hostile the module search path of a provider", function()
  after_each(H.reset)

  it("is the script's folder and lwsp's own Lua folder, nothing else", function()
    local r = H.provider((PATHS:gsub("%.%.%.", "'no_such_module'")))
    local mark = H.mark()
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local path = assert(host.ioctl(s, 1, "return package.path", 1024))
    local cpath = assert(host.ioctl(s, 1, "return package.cpath", 1024))
    local mod = lwsp.path()
    local mdir = mod:match("^(.*)[/\\][^/\\]*$")
    local expect = {H.tmp .. sep .. "?.lua", mdir .. sep .. "lua" .. sep .. "?.lua", mdir .. sep .. "lua" .. sep .. "?" .. sep .. "init.lua"}
    local got = {}
    for e in path:gmatch("[^;]+") do got[#got + 1] = e end
    assert.same(expect, got)
    assert.equal(mdir .. sep .. "?" .. H.ext, cpath)
    assert.is_nil(H.find_log(mark, "leaving", true))
  end)

  it("loads no C module from outside lwsp's own folder, whatever package.cpath says", function()
    local lib = H.tmp .. sep .. "planted_c" .. H.ext
    local f = assert(io.open(lwsp.path(), "rb"))
    write(lib, f:read("a"))
    f:close()
    local r = H.provider(upcaller_source())
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local ok, msg = run(s, ("package.cpath = %q local ok, m = pcall(require, 'planted_c') return ok, m"):format(H.tmp .. sep .. "?" .. H.ext))
    assert.is_false(ok)
    assert.truthy(msg:find("module 'planted_c' not found", 1, true), msg)
    serving(r)
  end)

  it("loads C modules from lwsp's own folder", function()
    local r = H.provider(upcaller_source())
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    -- lwsp itself, required afresh, comes from there
    assert.same({"table", true}, {run(s, [[package.loaded.lwsp = nil
      local m, where = require "lwsp"
      return type(m), where == (package.cpath:gsub('%?', 'lwsp'))]])})
    serving(r)
  end)
end)

-- #posix #subprocess: copies lwsp's module into other folders and loads each
-- copy as lwsp in a process of its own (one lwsp per process: its
-- thread-locals live in the static TLS block).
describe("#hostile #posix #subprocess lwsp's own Lua folders, for a copy of lwsp's module", function()
  after_each(H.reset)

  -- Runs a provider served by a copy of lwsp's module at dir/lwsp.so, in a
  -- process whose environment starts with env; its script records what
  -- `require "planted"` gave, then its package.path and package.cpath.
  local function try(dir, tag, env)
    H.mkdir(dir)
    local f = assert(io.open(lwsp.path(), "rb"))
    write(dir .. "/lwsp.so", f:read("a"))
    f:close()
    H.mkdir(dir .. "/lwsp")   -- the host module beside it, as a tree holds it
    f = assert(io.open((lwsp.path():gsub("lwsp%.so$", "lwsp/host.so")), "rb"))
    write(dir .. "/lwsp/host.so", f:read("a"))
    f:close()
    local out, script, driver = H.tmp .. "/" .. tag .. ".out", H.tmp .. "/" .. tag .. "_provider.lua", H.tmp .. "/" .. tag .. "_driver.lua"
    write(script, ([[
local ok, m = pcall(require, "planted")
local f = io.open(%q, "w") f:write(tostring(ok and m), " ", package.path, " ", package.cpath) f:close()
return {socket = function() return true end}
]]):format(out))
    write(driver, ([[
package.path = %q
package.cpath = %q
local lwsp = require "lwsp"
assert(lwsp.path() == %q, lwsp.path())
assert(lwsp.registry.set_root(%q))
local host = require "wsp.host"
local r = host.install_lua{script = %q}
assert(host.socket(2, 1, 0, 0, r.tcp))
host.cleanup()
host.uninstall_lua(r)
]]):format(H.root .. "/lua/?.lua;" .. H.root .. "/lua/?/init.lua", dir .. "/?.so", dir .. "/lwsp.so",
           H.tmp .. "/" .. tag .. "_registry", script))
    assert.is_true(os.execute(("%s LWSP_LOG=off lua5.4 '%s'"):format(env or "", driver)))
    local g = assert(io.open(out))
    local got = g:read("a")
    g:close()
    return got:match("^(%S+) (%S*) (%S*)$")
  end

  it("never takes <module dir>/../../../share/lua/5.4 for a module outside an install tree", function()
    local T = H.tmp .. "/outside"
    H.mkdir(T .. "/share/lua/5.4")
    write(T .. "/share/lua/5.4/planted.lua", "return 'planted_from_share'")
    assert.equal("false", (try(T .. "/x/y/build", "outside")))
  end)

  it("takes <prefix>/share/lua/5.4 for a module in <prefix>/lib/lua/5.4 (the luarocks tree)", function()
    local T = H.tmp .. "/tree"
    H.mkdir(T .. "/share/lua/5.4")
    write(T .. "/share/lua/5.4/planted.lua", "return 'planted_from_share'")
    local got, path = try(T .. "/lib/lua/5.4", "tree")
    assert.equal("planted_from_share", got)
    assert.truthy(path:find(T .. "/share/lua/5.4/?.lua", 1, true), path)
  end)

  it("ignores $LUA_PATH and $LUA_CPATH in a provider", function()
    local T = H.tmp .. "/envpath"
    H.mkdir(T .. "/evil")
    write(T .. "/evil/planted.lua", "return 'planted_from_LUA_PATH'")
    local got, path, cpath = try(T .. "/build", "envpath",
      ("LUA_PATH_5_4='%s/evil/?.lua;;' LUA_PATH='%s/evil/?.lua;;' LUA_CPATH='%s/evil/?.so;;'"):format(T, T, T))
    assert.equal("false", got)
    assert.falsy((path .. cpath):find("evil", 1, true), path .. " " .. cpath)
    assert.falsy(path:find("/usr/", 1, true), path)   -- nor Lua's compiled-in defaults
    assert.equal(T .. "/build/?.so", cpath)
  end)
end)

-- #posix #subprocess: file modes and owners, set with chmod and chown (the
-- owner case needs root, as the suite runs in CI).
describe("#hostile #posix #subprocess who may have written a provider's code", function()
  local dir
  local n = 0
  before_each(function()
    n = n + 1
    dir = H.tmp .. "/trust" .. n
    H.mkdir(dir)
  end)
  after_each(H.reset)

  local function sh(cmd) assert.is_true(os.execute(cmd), cmd) end
  local function script(path)
    write(path, [[
local lwsp = require "lwsp"
local ok, m = pcall(require, "helper_mod")
lwsp.log("helper_mod: " .. tostring(ok and m), "trust")
return {socket = function() return true end}
]])
    return path
  end
  local function starts(path)
    local r = host.install_lua{script = path}
    local mark = H.mark()
    local s, msg, code = host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp)
    local logs = H.logs(mark)
    if s then host.close(s) end
    host.cleanup()
    host.uninstall_lua(r)
    return s ~= nil, table.concat(logs, "\n"), code
  end

  it("refuses a world-writable script, and takes it once it is not", function()
    local p = script(dir .. "/provider.lua")
    sh(("chmod 0666 '%s'"):format(p))
    local ok, log, code = starts(p)
    assert.is_false(ok)
    assert.equal(wsp.WSAEPROVIDERFAILEDINIT, code)
    assert.truthy(log:find("refusing provider script " .. p .. ": ", 1, true), log)
    assert.truthy(log:find("is world-writable", 1, true), log)
    sh(("chmod 0644 '%s'"):format(p))
    assert.is_true((starts(p)))
  end)

  it("refuses a script in a world-writable folder, and takes one in a sticky folder", function()
    local p = script(dir .. "/provider.lua")
    sh(("chmod 0777 '%s'"):format(dir))
    local ok, log = starts(p)
    assert.is_false(ok)
    assert.truthy(log:find("folder " .. dir .. " is world-writable", 1, true), log)
    sh(("chmod 1777 '%s'"):format(dir))   -- like /tmp: nobody else may replace our file there
    assert.is_true((starts(p)))
    sh(("chmod 0755 '%s'"):format(dir))
  end)

  it("refuses a script owned by another user that is not root", function()
    local p = script(dir .. "/provider.lua")
    sh(("chown 65534 '%s'"):format(p))
    local ok, log = starts(p)
    assert.is_false(ok)
    assert.truthy(log:find("is owned by another user (uid 65534)", 1, true), log)
  end)

  it("refuses a script under a folder owned by another user that is not root", function()
    H.mkdir(dir .. "/theirs")
    local p = script(dir .. "/theirs/provider.lua")
    sh(("chown 65534 '%s'"):format(dir .. "/theirs"))
    local ok, log = starts(p)
    assert.is_false(ok)
    assert.truthy(log:find("folder " .. dir .. "/theirs is owned by another user", 1, true), log)
  end)

  it("refuses a world-writable module, and a module owned by another user, beside a trusted script", function()
    local p = script(dir .. "/provider.lua")
    write(dir .. "/helper_mod.lua", "return 'helper'")
    assert.truthy(select(2, starts(p)):find("helper_mod: helper", 1, true))
    sh(("chmod 0666 '%s/helper_mod.lua'"):format(dir))
    local ok, log = starts(p)
    assert.is_true(ok)                        -- the script runs; its require fails
    assert.truthy(log:find("helper_mod: false", 1, true), log)
    assert.truthy(log:find("refusing module 'helper_mod' from " .. dir .. "/helper_mod.lua: ", 1, true), log)
    sh(("chmod 0644 '%s/helper_mod.lua' && chown 65534 '%s/helper_mod.lua'"):format(dir, dir))
    ok, log = starts(p)
    assert.truthy(log:find("helper_mod: false", 1, true), log)
    assert.truthy(log:find("owned by another user (uid 65534)", 1, true), log)
  end)
end)

-- #posix: registry entries are files here; on Windows HKLM is written only
-- through registry.set, which refuses what WSPStartup would (last case).
describe("#hostile #posix registry entries that would be cut", function()
  after_each(H.reset)

  local MARK = [[
local lwsp = require "lwsp"
lwsp.log("the cut path was loaded", "cut")
return {socket = function() return true end}
]]
  local function entry(r, bytes)
    write(lwsp.registry.where() .. "/" .. r.guid, bytes)
  end
  local function refused(r, text)
    local mark = H.mark()
    H.fails_with("WSAEPROVIDERFAILEDINIT", host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert.truthy(H.find_log(mark, text, true), "no log line: " .. text)
    assert.is_nil(H.find_log(mark, "the cut path was loaded", true))
  end

  it("refuses an entry over 1,023 bytes instead of loading its first 1,023", function()
    -- a real script whose path is exactly 1,023 bytes: the cut entry would name it
    local d = H.tmp .. "/long"
    while #d < 1023 - 220 do d = d .. "/" .. ("d"):rep(200) end
    H.mkdir(d)
    local p = d .. "/" .. ("p"):rep(1023 - #d - 5) .. ".lua"
    assert.equal(1023, #p)
    write(p, MARK)
    local r = H.provider(MARK)
    entry(r, p .. "x\n")
    refused(r, "is longer than 1023 bytes: refused")
    entry(r, p .. "\n")                    -- exactly 1,023 is fine
    local mark = H.mark()
    assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert.truthy(H.find_log(mark, "the cut path was loaded", true))
  end)

  it("refuses an entry with an embedded NUL instead of loading what comes before it", function()
    local r = H.provider(MARK)
    entry(r, lwsp.registry.get(r.guid) .. "\0/other.lua\n")
    refused(r, "contains a NUL byte: refused")
  end)

  it("refuses an entry of more than one line", function()
    local r = H.provider(MARK)
    entry(r, lwsp.registry.get(r.guid) .. "\n/other.lua\n")
    refused(r, "holds more than one line: refused")
  end)
end)

describe("#hostile registry.set", function()
  it("refuses a path WSPStartup would refuse: a NUL, a line break, over 1,023 bytes", function()
    local g = lwsp.guid()
    local base = H.windows and "C:\\lwsp\\x.lua" or "/lwsp/x.lua"
    assert.has_error(function() lwsp.registry.set(g, base .. "\0.lua") end, "bad argument #2 to 'set' (script path contains a NUL or a line break)")
    assert.has_error(function() lwsp.registry.set(g, base .. "\n/y.lua") end, "bad argument #2 to 'set' (script path contains a NUL or a line break)")
    assert.has_error(function() lwsp.registry.set(g, base .. ("x"):rep(1024)) end, "bad argument #2 to 'set' (script path is longer than 1023 bytes)")
    assert.is_nil(lwsp.registry.get(g))
  end)
end)

-- #posix #subprocess: the variables are read by WSPStartup, so each case runs
-- in a process of its own with its environment.
describe("#hostile #posix #subprocess LWSP_* numbers from the environment", function()
  local n = 0
  -- Runs a provider whose send loops forever when sent "loop", with env set;
  -- returns the log and what host.send gave.
  local function with_env(env)
    n = n + 1
    local T = H.tmp .. "/env" .. n
    H.mkdir(T)
    local script, driver, log = T .. "/provider.lua", T .. "/driver.lua", T .. "/lwsp.log"
    write(script, [[
return {socket = function() return true end,
        send = function(s, data) if data == "loop" then while true do end end return #data end}
]])
    write(driver, ([[
package.path = %q
package.cpath = %q
local lwsp = require "lwsp"
assert(lwsp.registry.set_root(%q))
local host = require "wsp.host"
local r = host.install_lua{script = %q}
local s = assert(host.socket(2, 1, 0, 0, r.tcp))
local _, msg = host.send(s, "loop")
lwsp.log("send gave " .. tostring(msg), "driver")
lwsp.log("then " .. tostring(host.send(s, "ok")), "driver")
host.cleanup()
host.uninstall_lua(r)
]]):format(H.root .. "/lua/?.lua;" .. H.root .. "/lua/?/init.lua", lwsp.path():gsub("lwsp%.so$", "?.so"),
           T .. "/registry", script))
    -- timeout: a budget turned off would loop for ever
    os.execute(("%s LWSP_LOG='%s' timeout 60 lua5.4 '%s'"):format(env, log, driver))
    local f = assert(io.open(log))
    local text = f:read("a")
    f:close()
    return text
  end

  it("refuses LWSP_BUDGET=abc with a log line and keeps the default budget (it did turn the budget off)", function()
    local log = with_env("LWSP_BUDGET=abc")
    assert.truthy(log:find("ignoring $LWSP_BUDGET='abc': not a whole number", 1, true), log)
    assert.truthy(log:find("send gave WSAENETDOWN", 1, true), log)   -- the loop was stopped
    assert.truthy(log:find("then 2", 1, true), log)
  end)

  it("refuses LWSP_BUDGET=1e5 and one past the range instead of reading 1 or a cut number", function()
    local log = with_env("LWSP_BUDGET=1e5")
    assert.truthy(log:find("ignoring $LWSP_BUDGET='1e5'", 1, true), log)
    assert.truthy(log:find("then 2", 1, true), log)
    log = with_env("LWSP_BUDGET=99999999999999999999")
    assert.truthy(log:find("ignoring $LWSP_BUDGET='99999999999999999999'", 1, true), log)
  end)

  it("refuses LWSP_MEMORY_LIMIT=12k and -1, and takes a plain number", function()
    local log = with_env("LWSP_MEMORY_LIMIT=12k")
    assert.truthy(log:find("ignoring $LWSP_MEMORY_LIMIT='12k'", 1, true), log)
    assert.truthy(log:find("then 2", 1, true), log)
    log = with_env("LWSP_MEMORY_LIMIT=-1")
    assert.truthy(log:find("ignoring $LWSP_MEMORY_LIMIT='-1'", 1, true), log)
    log = with_env("LWSP_BUDGET=5000000 LWSP_MEMORY_LIMIT=100000000")
    assert.falsy(log:find("ignoring", 1, true), log)
    assert.truthy(log:find("send gave WSAENETDOWN", 1, true), log)
  end)
end)

-- A provider whose handlers return what ioctl 0x7101 set (a Lua table expression).
local RETURNS = [[
local wsp = require "wsp"
local R = {}
return {
  socket = function() return true end,
  ioctl = function(s, code, input)
    if code == 0x7101 then R = load("return " .. input)() return 0 end
    return R.ioctl
  end,
  getsockopt = function(s, level, name) return R.opt end,
  enumnetworkevents = function(s, ev) return wsp.FD_READ, R.errors end,
  getqosbyname = function(s, name) return R.qos end,
  duplicatesocket = function(s, pid) return R.info end,
}
]]

describe("#hostile handler results that do not fit their C field", function()
  local r, s
  before_each(function()
    r = H.provider(RETURNS)
    s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  end)
  after_each(H.reset)

  local function set(expr) assert(host.ioctl(s, 0x7101, expr, 4)) end
  -- the call fails with WSAEINVAL, and the log names the handler, the field and the value
  local function refused(field, value, call)
    local mark = H.mark()
    H.fails_with("WSAEINVAL", call())
    local line = H.find_log(mark, "returned " .. value .. " for " .. field, true)
    assert.truthy(line, "no log line for " .. field)
    assert.truthy(line:find("WSAEINVAL", 1, true), line)
    -- still serving
    set("{ioctl = 7}")
    assert.equal(7, wsp.int(assert(host.ioctl(s, 1, nil, 4))))
  end

  it("fails a 4-byte option value outside 32 bits with WSAEINVAL (it was cut)", function()
    set("{opt = 1 << 32}")
    refused("a 4-byte option value", tostring(1 << 32), function() return host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_RCVBUF) end)
    set("{opt = -(1 << 31) - 1}")
    refused("a 4-byte option value", tostring(-(1 << 31) - 1), function() return host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_RCVBUF) end)
    -- the edges fit: as unsigned and as signed
    set("{opt = 0xffffffff}")
    assert.equal("\255\255\255\255", host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_RCVBUF))
    set("{opt = -1}")
    assert.equal("\255\255\255\255", host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_RCVBUF))
  end)

  it("fails an ioctl's integer result outside 32 bits with WSAEINVAL", function()
    set("{ioctl = 1 << 40}")
    refused("a 4-byte ioctl result (u_long)", tostring(1 << 40), function() return host.ioctl(s, 1, nil, 4) end)
    set("{ioctl = 0xffffffff}")
    assert.equal("\255\255\255\255", host.ioctl(s, 1, nil, 4))
  end)

  it("fails SO_LINGER fields outside a u_short with WSAEINVAL, and non-integers as a fault", function()
    set("{opt = {l_onoff = 70000, l_linger = 1}}")
    refused("SO_LINGER's l_onoff (a u_short)", "70000", function() return host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_LINGER) end)
    set("{opt = {l_onoff = 1, l_linger = -1}}")
    refused("SO_LINGER's l_linger (a u_short)", "-1", function() return host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_LINGER) end)
    set("{opt = {l_onoff = 'on', l_linger = 1}}")
    H.fails_with("WSAENETDOWN", host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_LINGER))
    set("{opt = {l_onoff = 1, l_linger = 65535}}")
    assert.equal(4, #host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_LINGER))
  end)

  it("fails a network event's error code outside an int with WSAEINVAL", function()
    set(("{errors = {[%d] = 1 << 31}}"):format(wsp.FD_READ))
    refused("a network event's error code", tostring(1 << 31), function() return host.enum_network_events(s) end)
    set(("{errors = {[%d] = 'WSAECONNRESET'}}"):format(wsp.FD_READ))
    H.fails_with("WSAENETDOWN", host.enum_network_events(s))
    set(("{errors = {[%d] = %d}}"):format(wsp.FD_READ, wsp.WSAECONNRESET))
    local mask, errors = host.enum_network_events(s)
    assert.equal(wsp.FD_READ, mask)
    assert.equal(wsp.WSAECONNRESET, errors[wsp.FD_READ])
  end)

  it("fails a FLOWSPEC field outside a ULONG with WSAEINVAL", function()
    set("{qos = {SendingFlowspec = {TokenRate = 1 << 32}}}")
    refused("FLOWSPEC's TokenRate (a ULONG)", tostring(1 << 32), function() return host.get_qos_by_name(s, "x") end)
    set("{qos = {ReceivingFlowspec = {PeakBandwidth = -5}}}")
    refused("FLOWSPEC's PeakBandwidth (a ULONG)", "-5", function() return host.get_qos_by_name(s, "x") end)
    set("{qos = {SendingFlowspec = {TokenRate = 0xffffffff}}}")
    assert.equal(0xffffffff, host.get_qos_by_name(s, "x").SendingFlowspec.TokenRate)
  end)

  it("fails protocol info with a field outside 32 bits, as malformed (WSAENETDOWN)", function()
    set("{info = {dwServiceFlags1 = 1 << 33}}")
    local mark = H.mark()
    H.fails_with("WSAENETDOWN", host.duplicate_socket(s, 1))
    assert.truthy(H.find_log(mark, "field dwServiceFlags1 = " .. (1 << 33) .. " does not fit 32 bits", true))
    set("{info = {ProtocolChain = {1, 1 << 32}}}")
    H.fails_with("WSAENETDOWN", host.duplicate_socket(s, 1))
    set("{info = {dwServiceFlags1 = 0xffffffff}}")
    assert.equal(0xffffffff, host.duplicate_socket(s, 1).dwServiceFlags1)
  end)

  it("logs a script's budget or memory_limit of the wrong type instead of ignoring it quietly", function()
    local mark = H.mark()
    local b = H.provider("return {budget = 'abc', memory_limit = 1.5, socket = function() return true end}\n")
    assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, b.tcp))
    assert.truthy(H.find_log(mark, "ignoring budget (string): not an integer", true))
    assert.truthy(H.find_log(mark, "ignoring memory_limit (number): not a positive integer", true))
  end)
end)
