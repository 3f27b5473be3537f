-- WSPStartup and WSPCleanup as ws2_32 and layered providers call them.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

local COUNTER = [[
local lwsp = require "lwsp"
lwsp.log("script loaded", "counter")
return {
  socket = function(s) return true end,
  cleanup = function() lwsp.log("cleanup ran", "counter") end,
}
]]

local function count(since, pattern)
  local n = 0
  for _, line in ipairs(H.logs(since)) do if line:find(pattern, 1, true) then n = n + 1 end end
  return n
end

describe("WSPStartup", function()
  after_each(H.reset)

  it("negotiates version 2.2 and rejects older versions", function()
    local r = H.provider(COUNTER)
    local code, data = host.raw_startup(r.tcp, 0x0202)
    assert.equal(0, code)
    assert.equal(0x0202, data.wVersion)
    assert.equal(0x0202, data.wHighVersion)
    code, data = host.raw_startup(r.tcp, 0x0303)
    assert.equal(0, code)
    assert.equal(0x0202, data.wVersion)
    local mark = H.mark()
    assert.equal(wsp.WSAVERNOTSUPPORTED, (host.raw_startup(r.tcp, 0x0101)))
    assert.equal(wsp.WSAVERNOTSUPPORTED, (host.raw_startup(r.tcp, 0x0102)))
    assert.truthy(H.find_log(mark, "version 1.1 requested", true))
  end)

  it("fails with WSAEFAULT or WSAEPROVIDERFAILEDINIT on NULL arguments and upcalls", function()
    local r = H.provider(COUNTER)
    assert.equal(wsp.WSAEFAULT, (host.raw_startup(r.tcp, 0x0202, "null-data")))
    assert.equal(wsp.WSAEFAULT, (host.raw_startup(r.tcp, 0x0202, "null-info")))
    local mark = H.mark()
    assert.equal(wsp.WSAEPROVIDERFAILEDINIT, (host.raw_startup(r.tcp, 0x0202, "null-upcall")))
    assert.truthy(H.find_log(mark, "upcall table has NULL entries", true))
  end)

  it("fills WSPDATA with the script's description", function()
    local r = H.provider("examples/memnet.lua")
    local p = assert(host.startup(r.tcp))
    local d = p:data()
    assert.equal(0x0202, d.wVersion)
    assert.equal("memnet: an in-process network (lwsp example)", d.szDescription)
    assert.is_true(p:cleanup())
  end)

  it("keeps one instance per GUID and counts startups against cleanups", function()
    local r = H.provider(COUNTER)
    local mark = H.mark()
    local a = assert(host.startup(r.tcp))
    local b = assert(host.startup(r.udp))   -- another entry, same GUID
    local c = assert(host.startup(r.tcp))
    assert.equal(1, count(mark, "script loaded"))
    assert.equal(3, a:data().startups)
    assert.is_true(a:cleanup())
    assert.is_true(b:cleanup())
    assert.equal(0, count(mark, "cleanup ran"))
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp)) -- still serving
    assert.is_true(host.close(s))
    host.cleanup()                      -- the ws2_32-style load made by socket()
    assert.equal(0, count(mark, "cleanup ran"))
    assert.is_true(c:cleanup())
    assert.equal(1, count(mark, "cleanup ran"))
    H.fails_with("WSANOTINITIALISED", c:cleanup())
    -- a fresh startup runs the script again
    local d = assert(host.startup(r.tcp))
    assert.equal(2, count(mark, "script loaded"))
    assert.is_true(d:cleanup())
  end)

  it("loads providers lazily, once, when the first socket is opened", function()
    local r = H.provider(COUNTER)
    local mark = H.mark()
    assert.equal(0, count(mark, "script loaded"))
    local s1 = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local s2 = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
    assert.equal(1, count(mark, "script loaded"))
    assert.equal(1, host.cleanup())
    assert.equal(1, count(mark, "cleanup ran"))
    H.fails_with("WSAENOTSOCK", host.close(s1))
    H.fails_with("WSAENOTSOCK", host.close(s2))
  end)
end)

describe("WSPStartup of two providers at once", function()
  after_each(H.reset)

  -- The first provider's script waits at its top level for a file the
  -- second one's script writes: it sees it only if the second WSPStartup
  -- runs while the first script still does (no global lock held meanwhile).
  it("runs a provider's script without holding up another provider's WSPStartup", function()
    local flag = H.tmp .. "/startup-flag-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e9))
    os.remove(flag)
    local waiter = H.provider(([[
local s = assert(io.open(%q, "w"))
s:close()
local t = os.clock() + 5
while os.clock() < t do
  local f = io.open(%q)
  if f then f:close(); return {socket = function() return true end} end
end
error("the other provider's script never ran")
]]):format(flag .. ".running", flag))
    local writer = H.provider(([[
local f = assert(io.open(%q, "w"))
f:write("started")
f:close()
return {socket = function() return true end}
]]):format(flag))
    local job = host.spawn("startup", waiter.tcp, 1)
    for _ = 1, 500 do                                     -- (until the first script runs)
      local f = io.open(flag .. ".running")
      if f then f:close() break end
      host.sleep(10)
    end
    local p = assert(host.startup(writer.tcp))
    assert.equal(1, job:join(10000), "the first provider's WSPStartup failed")
    assert(p:cleanup())
    os.remove(flag)
    os.remove(flag .. ".running")
  end)
end)

describe("provider scripts that cannot run", function()
  after_each(H.reset)

  local function fails_to_start(r, pattern)
    local mark = H.mark()
    H.fails_with("WSAEPROVIDERFAILEDINIT", host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local line = H.find_log(mark, pattern)
    assert.truthy(line, "no log line matching " .. pattern)
    return line
  end

  it("reports a missing script with its path", function()
    local r = host.install_lua{script = H.tmp .. "/does-not-exist.lua"}
    local line = fails_to_start(r, "cannot load provider script")
    assert.truthy(line:find(H.tmp .. "/does-not-exist.lua", 1, true))
    host.uninstall_lua(r)
  end)

  it("reports a syntax error with file and line", function()
    local r = H.provider("return {\n  socket = function(s) return true end,\n  bind = function( end\n}\n")
    local line = fails_to_start(r, "cannot load provider script")
    assert.truthy(line:find(":3:", 1, true), line)
  end)

  it("reports a script that raises, with a traceback", function()
    local r = H.provider("local x = 1\nerror('refusing to start')\n")
    local line = fails_to_start(r, "refusing to start")
    assert.truthy(line:find("stack traceback", 1, true))
  end)

  it("reports a script that returns no handler table", function()
    local r = H.provider("return 42\n")
    fails_to_start(r, "returned number, not a table of handlers")
  end)

  it("reports a handler that is not a function", function()
    local r = H.provider("return {socket = 'nope'}\n")
    fails_to_start(r, "handler 'socket' is a string, not a function")
  end)

  it("warns about misspelt handler names but still starts", function()
    local mark = H.mark()
    local r = H.provider("return {socket = function() return true end, sendd = function() end}\n")
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert.truthy(H.find_log(mark, "'sendd' is not an SPI handler name", true))
    assert.is_true(host.close(s))
  end)

  -- #posix: writes the registry file directly; on Windows HKLM is written only
  -- through registry.set, which refuses relative paths itself (spec/01)
  it("refuses a relative script path in the registry #posix", function()
    local r = H.provider(COUNTER)
    local f = assert(io.open(lwsp.registry.where() .. "/" .. r.guid, "w"))
    f:write("relative/provider.lua\n")
    f:close()
    fails_to_start(r, "it must be absolute")
  end)

  it("reports a GUID with no registry entry", function()
    local r = H.provider(COUNTER)
    assert(lwsp.registry.remove(r.guid))
    fails_to_start(r, "no script registered")
  end)

  it("never loads modules from the current directory #subprocess", function()
    local dir = H.tmp .. "/cwd"
    H.mkdir(dir)
    local f = assert(io.open(dir .. "/planted_module.lua", "w"))
    f:write("return 'planted'\n")
    f:close()
    local r = H.provider([[
local lwsp = require "lwsp"
local ok = pcall(require, "planted_module")
lwsp.log("planted module loaded: " .. tostring(ok), "cwdcheck")
for e in package.path:gmatch("[^;]+") do
  if e:sub(1, 1) ~= "/" then lwsp.log("relative path entry: " .. e, "cwdcheck") end
end
return {socket = function() return true end}
]])
    local cmd = ("cd '%s' && LUA_PATH='./?.lua;;' lua5.4 -e \"package.path='%s/lua/?.lua;%s/lua/?/init.lua;'..package.path; package.cpath='%s/build/?.so;'..package.cpath; "
      .. "local l=require'lwsp'; l.registry.set_root('%s'); l.set_log('%s'); local h=require'wsp.host'; "
      .. "assert(h.install(h.protocol_info{guid='%s'}, l.path(), 'base')); local s=h.socket(2,1,0); h.cleanup()\"")
      :format(dir, H.root, H.root, H.root, lwsp.registry.where(), H.logfile, r.guid)
    local logfile = H.tmp .. "/cwd.log"
    cmd = cmd:gsub(H.logfile:gsub("%p", "%%%0"), logfile)
    assert.is_true(os.execute(cmd))
    local text = assert(io.open(logfile)):read("a")
    assert.truthy(text:find("planted module loaded: false", 1, true), text)
    assert.falsy(text:find("relative path entry", 1, true), text)
  end)
end)

-- Windows: the system's hive (HKLM) and the user's (HKCU).  lwsp's own host
-- runs elevated under Wine; a process that is not elevated is started with
-- the linked (limited) token by spec/tools/limited.c.
if H.windows then
  local HKLM = "HKEY_LOCAL_MACHINE\\SOFTWARE\\lwsp\\Providers"
  local HKCU = "HKEY_CURRENT_USER\\Software\\lwsp\\Providers"

  -- run by a process that is not elevated: registers in HKCU by default,
  -- takes the script from HKLM when both have one, passes configuration
  local CHILD = [=[
local lwsp = require "lwsp"
local wsp = require "wsp"
local host = require "wsp.host"
lwsp.set_log(%q)
print("where " .. tostring(lwsp.registry.where()))
local r = host.install_lua{script = %q, config = {greeting = "from HKCU"}}
local s, e = host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp)
print("own " .. (s and "started" or tostring(e)))
for _, l in ipairs((lwsp.log_lines())) do
  if l:find("config greeting=from HKCU", 1, true) then print("config reached the provider") end
end
local both = host.install_lua{guid = %q, script = %q}
local s2, e2 = host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, both.tcp)
print("both " .. (s2 and "started" or tostring(e2)))
host.cleanup()
host.uninstall_lua(r)
assert(lwsp.registry.remove(%q))
print("HKCU left " .. tostring(lwsp.registry.list()[r.guid]))
]=]

  describe("the registry on Windows", function()
    after_each(function()
      H.reset()
      assert(lwsp.registry.set_root("HKLM"))
    end)

    it("registers in HKLM in an elevated process and never takes a script from HKCU there", function()
      assert(lwsp.registry.set_root("HKCU"))
      assert.equal(HKCU, lwsp.registry.where())
      local r = H.provider(COUNTER)
      assert.truthy(lwsp.registry.list()[r.guid])
      assert(lwsp.registry.set_root("HKLM"))
      assert.equal(HKLM, lwsp.registry.where())
      assert.is_nil(lwsp.registry.list()[r.guid])
      local mark = H.mark()
      H.fails_with("WSAEPROVIDERFAILEDINIT", host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
      assert.truthy(H.find_log(mark, "is registered under " .. HKCU .. " only, which an elevated process never reads", true))
      assert(lwsp.registry.set_root("HKCU"))
      assert(lwsp.registry.remove(r.guid))
    end)

    it("refuses a registry root other than HKCU or HKLM", function()
      local ok, err = lwsp.registry.set_root("C:\\lwsp\\registry")
      assert.is_nil(ok)
      assert.truthy(err:find("HKCU or HKLM", 1, true), err)
    end)

    it("keeps a provider's configuration beside its script's entry and removes it with the entry", function()
      local r = H.provider(COUNTER)
      assert(H.host.write_config(r.guid, {n = 7}))
      assert.equal("return {[\"n\"] = 7}\n", lwsp.registry.config(r.guid))
      assert(lwsp.registry.remove(r.guid))
      assert.is_nil(lwsp.registry.config(r.guid))
    end)

    it("in a process that is not elevated, registers in HKCU, reads HKLM first, and passes configuration", function()
      local shared = H.provider(COUNTER)                      -- the system's (HKLM): it starts
      local own = H.script([[
local lwsp = require "lwsp"
local wsp = require "wsp"
lwsp.log("config greeting=" .. tostring(wsp.config.greeting))
return {socket = function() return true end}
]])
      local broken = H.script("error('the user\\'s script, which HKLM\\'s entry overrides')\n")
      local child = H.script(CHILD:format(H.tmp .. "\\child.log", own, shared.guid, broken, shared.guid))
      local lua = assert(os.getenv("LWSP_LUA_EXE"))
      local limited = lua:gsub("lua%.exe$", "limited.exe")
      -- (LWSP_REGISTRY unset: the child's own default)
      local p = assert(io.popen(('cd /d "%s" && set LWSP_REGISTRY=&& "%s" "%s" "%s" 2>&1'):format(H.root, limited, lua, child)))
      local out = p:read("a"):gsub("\r\n", "\n")
      p:close()
      assert.truthy(out:find("where " .. HKCU, 1, true), out)
      assert.truthy(out:find("own started", 1, true), out)
      assert.truthy(out:find("config reached the provider", 1, true), out)
      assert.truthy(out:find("both started", 1, true), out)
      assert.truthy(out:find("HKCU left nil", 1, true), out)
    end)
  end)
end

