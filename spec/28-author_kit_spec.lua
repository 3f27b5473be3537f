-- The provider author's kit: where the registry lives, errors that point at
-- the bug in a script, configuration, wsp.test, lwsp-new and lwsp-spec run
-- from a folder outside the checkout as an ordinary user.
local H = require "helpers"
local host, wsp, lwsp = H.host, H.wsp, H.lwsp

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Runs lua5.4 -e CODE with lwsp on its paths and the given environment
-- (name = value, or false to unset); its output and exit status.
local function lua_with(env, code)
  local unset, set = {}, {}
  for k, v in pairs(env) do
    if v then set[#set + 1] = ("%s=%s"):format(k, sh_quote(v)) else unset[#unset + 1] = "-u " .. k end
  end
  local parts = table.move(set, 1, #set, #unset + 1, unset)
  local paths = ("package.path=%q..package.path package.cpath=%q..package.cpath "):format(
    H.root .. "/lua/?.lua;" .. H.root .. "/lua/?/init.lua;", H.root .. "/build/?.so;")
  local p = assert(io.popen(("env %s lua5.4 -e %s 2>&1"):format(table.concat(parts, " "), sh_quote(paths .. code))))
  local out = p:read("a")
  local _, _, status = p:close()
  return out, status
end

describe("the registry's place #posix #subprocess", function()
  local home = H.tmp .. "/home"

  it("is the user's own config folder unless LWSP_REGISTRY names one", function()
    local out = lua_with({HOME = home, XDG_CONFIG_HOME = false, LWSP_REGISTRY = false},
      'print(require("lwsp").registry.where())')
    assert.equal(home .. "/.config/lwsp/providers\n", out)
    out = lua_with({HOME = home, XDG_CONFIG_HOME = home .. "/xdg", LWSP_REGISTRY = false},
      'print(require("lwsp").registry.where())')
    assert.equal(home .. "/xdg/lwsp/providers\n", out)
    out = lua_with({HOME = home, LWSP_REGISTRY = "/etc/lwsp/providers"}, 'print(require("lwsp").registry.where())')
    assert.equal("/etc/lwsp/providers\n", out)
  end)

  it("takes an install by a user without touching /etc", function()
    local out, code = lua_with({HOME = home, XDG_CONFIG_HOME = false, LWSP_REGISTRY = false}, [[
      local lwsp = require "lwsp"
      local g = lwsp.guid()
      assert(lwsp.registry.set(g, "/x/p.lua"))
      local f = assert(io.open(os.getenv("HOME") .. "/.config/lwsp/providers/" .. g))
      print(f:read("l"), lwsp.registry.get(g))
      assert(lwsp.registry.remove(g))]])
    assert.equal(0, code, out)
    assert.equal("/x/p.lua\t/x/p.lua\n", out)
  end)

  it("refuses a relative LWSP_REGISTRY instead of falling back to another place", function()
    local out = lua_with({HOME = home, LWSP_REGISTRY = "rel/dir"}, [[
      local reg = require("lwsp").registry
      print(reg.where())
      print(reg.set(require("lwsp").guid(), "/x/p.lua"))
      print(reg.list())]])
    local msg = "LWSP_REGISTRY must be an absolute path, not 'rel/dir'"
    assert.equal(("nil\t%s\nnil\t%s\nnil\t%s\n"):format(msg, msg, msg), out)
  end)
end)

describe("errors that point at the bug in a script", function()
  local base
  before_each(function() base = H.provider("examples/memnet.lua") end)
  after_each(H.reset)

  local function layer(src) return H.layered{script = H.script(src), over = base, name = "mylayer"} end
  local function pair(top)
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, base.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 4))
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, top.tcp))
    return c, l
  end

  it("a connect handler that forgot its return fails, naming the handler and the missing return", function()
    local top = layer [[
local P = require("wsp.layered").new()
function P.connect(s, addr) P.base.connect(s, addr) end
return P
]]
    local c, l = pair(top)
    local mark = H.mark()
    H.fails_with("WSAENETDOWN", host.connect(c, host.getsockname(l)))
    local line = H.find_log(mark, "handler 'connect' (WSPConnect): returned nothing", true)
    assert.truthy(line, table.concat(H.logs(mark), "\n"))
    assert.truthy(line:find("missing a `return`? a layer ends with `return P.base.connect(...)`", 1, true), line)
  end)

  it("so do a lone nil and nothing from the other handlers that owe a result", function()
    local top = layer [[
local P = require("wsp.layered").new()
function P.bind(s, addr) local ok = P.base.bind(s, addr) if ok then return nil end end
function P.getsockname(s) end
return P
]]
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, top.tcp))
    local mark = H.mark()
    H.fails_with("WSAENETDOWN", host.bind(c, "127.0.0.1:0"))
    assert.truthy(H.find_log(mark, "handler 'bind' (WSPBind): returned nil without a Winsock error code", true))
    H.fails_with("WSAENETDOWN", host.getsockname(c))
    assert.truthy(H.find_log(mark, "handler 'getsockname' (WSPGetSockName): returned nothing", true))
  end)

  it("an unknown error name is reported as such, and a known one still fails the call with it", function()
    local top = layer [[
local P = require("wsp.layered").new()
function P.connect(s, addr)
  if addr.port == 1 then return nil, "WSAEBOGUS" end
  return nil, "WSAECONNREFUSED: not today"
end
return P
]]
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, top.tcp))
    local mark = H.mark()
    H.fails_with("WSAENETDOWN", host.connect(c, "127.0.0.1:1"))
    assert.truthy(H.find_log(mark, '"WSAEBOGUS" is not a Winsock error name', true), table.concat(H.logs(mark), "\n"))
    H.fails_with("WSAECONNREFUSED", host.connect(c, "127.0.0.1:2"))
  end)

  it("log lines name the provider's script, those lwsp writes and those the script writes", function()
    local path = H.tmp .. "/chatty.lua"
    local f = assert(io.open(path, "w"))
    f:write([[
local wsp = require "wsp"
local P = require("wsp.layered").new()
function P.bind(s, addr) wsp.log("binding") error("on purpose") end
return P
]])
    f:close()
    local top = H.layered{script = path, over = base}
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, top.tcp))
    local mark = H.mark()
    H.fails_with("WSAENETDOWN", host.bind(c, "127.0.0.1:0"))
    local tag = ("lwsp[chatty %s] "):format(top.guid)
    assert.truthy(H.find_log(mark, tag .. "binding", true), table.concat(H.logs(mark), "\n"))
    assert.truthy(H.find_log(mark, tag .. "handler 'bind' (WSPBind) raised an error", true))
  end)
end)

describe("the providers' log lines in traces", function()
  after_each(H.reset)

  it("are attached to the call that wrote them: records, text tree and page", function()
    local trace = require "wsp.trace"
    local base = H.provider("examples/memnet.lua")
    local top = H.layered{script = H.script [[
local wsp = require "wsp"
local P = require("wsp.layered").new()
function P.bind(s, addr) wsp.log("bind wanted " .. wsp.format_address(addr)) end
return P
]], over = base}
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, top.tcp))
    trace.start()
    host.bind(s, "127.0.0.1:7")
    trace.stop()
    local recs = trace.records()
    local ret
    for _, r in ipairs(recs) do if r.kind == "return" and r.name == "WSPBind" then ret = r end end
    assert.truthy(ret, "no WSPBind return")
    assert.truthy(ret.log:find("bind wanted 127.0.0.1:7", 1, true), ret.log)
    assert.truthy(ret.log:find("handler 'bind' (WSPBind): returned nothing", 1, true), ret.log)
    local text = trace.text(recs)
    assert.truthy(text:find("<- WSPBind WSAENETDOWN [^\n]*\n +| lwsp%[provider%d+ {[^}]+}%] bind wanted 127.0.0.1:7"), text)
    local page = trace.html(recs)
    assert.truthy(page:find('"log":"lwsp[provider', 1, true))
    assert.truthy(page:find('if (r.log) row(table, "log", r.log);', 1, true))
  end)
end)

describe("the Lua helpers' checks", function()
  after_each(H.reset)

  it("install_lua and install_layered say which option is missing or wrong", function()
    local ok, err = pcall(host.install_lua, {})
    assert.is_false(ok)
    assert.truthy(err:find("install_lua: option 'script' (the provider's Lua file) is missing", 1, true), err)
    ok, err = pcall(host.install_lua, "upper.lua")
    assert.truthy(err:find("install_lua: expects a table of options", 1, true), err)
    ok, err = pcall(host.install_layered, {script = H.root .. "/examples/passthrough.lua"})
    assert.truthy(err:find("install_layered: option 'over' must be what install_native, install_lua or "
      .. "install_layered returned", 1, true), err)
    ok, err = pcall(host.install_lua, {script = H.root .. "/examples/memnet.lua", config = "x"})
    assert.truthy(err:find("option 'config' must be a table", 1, true), err)
  end)

  it("an address argument that is no address says which forms are accepted", function()
    local r = H.provider("examples/memnet.lua")
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local ok, err = pcall(host.bind, s, "localhost")
    assert.is_false(ok)
    assert.truthy(err:find('not an address: give "a.b.c.d:port", "[v6]:port" or {family =', 1, true), err)
  end)

  it("the native provider answers a send on a never-connected TCP socket with WSAENOTCONN", function()
    local n = H.base()
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, n.tcp))
    H.fails_with("WSAENOTCONN", host.send(s, "x"))
  end)
end)

describe("configuration #posix", function()
  after_each(H.reset)

  it("install_lua{config =} and install_layered{config =} reach the scripts as wsp.config", function()
    local src = [[
local wsp = require "wsp"
local P = require("wsp.layered").new()
function P.getsockname(s)
  wsp.log(("config: %s %d %s"):format(wsp.config.name, wsp.config.limits.max, tostring(wsp.config.on)))
  return P.base.getsockname(s)
end
return P
]]
    local base = H.provider("examples/memnet.lua", {config = {unused = true}})
    local top = H.layered{script = H.script(src), over = base, config = {name = "a \"quoted\" name", limits = {max = 7}, on = false}}
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, top.tcp))
    assert(host.bind(s, "127.0.0.1:0"))
    local mark = H.mark()
    assert(host.getsockname(s))
    assert.truthy(H.find_log(mark, 'config: a "quoted" name 7 false', true), table.concat(H.logs(mark), "\n"))
    local path = wsp.config_path(top.guid)
    assert.truthy(io.open(path)):close()
    H.reset()
    assert.is_nil(io.open(path))           -- uninstall removes it
  end)
end)

describe("the catalog installer's --config FILE #posix", function()
  after_each(H.reset)

  it("gives the installed layer its configuration, and remove takes it away", function()
    local catalog = require "wsp.catalog"
    H.base()
    local b = catalog.host()
    local script = H.script [[
local wsp = require "wsp"
local P = require("wsp.layered").new()
local socket = P.socket
function P.socket(s, ...)
  wsp.log("configured mode " .. tostring(wsp.config.mode))
  return socket(s, ...)
end
return P
]]
    local conf = H.tmp .. "/layer.config.lua"
    local f = assert(io.open(conf, "w"))
    f:write('return {mode = "strict"}\n')
    f:close()
    local out = {}
    local status = catalog.main({"install", script, "--name", "configured", "--over", "tcp", "--config", conf},
      function(l) out[#out + 1] = l end, b)
    assert.equal(0, status, table.concat(out, "\n"))
    local guid, tcp = out[1]:match("^installed (%b{}) .* tcp=(%d+)")
    assert.truthy(tcp, out[1])
    local mark = H.mark()
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, tonumber(tcp)))
    assert.truthy(H.find_log(mark, "configured mode strict", true), table.concat(H.logs(mark), "\n"))
    host.close(s)
    host.cleanup()
    assert.truthy(io.open(wsp.config_path(guid))):close()
    assert.equal(0, (catalog.main({"remove", guid}, function() end, b)))
    assert.is_nil(io.open(wsp.config_path(guid)))
    out = {}
    assert.equal(2, (catalog.main({"install", script, "--config", H.tmp .. "/none.lua"}, function(l) out[#out + 1] = l end, b)))
    assert.truthy(out[1]:find("lwsp-catalog: --config " .. H.tmp .. "/none.lua", 1, true), out[1])
  end)
end)

-- #posix: under Wine the suite's own fixture keeps the registry (HKLM) and
-- wsp.test's teardown would undo its installs
describe("wsp.test #posix", function()
  local test = require "wsp.test"
  -- a fixture takes the process's registry and log: give them back to the suite's
  after_each(function()
    assert(lwsp.registry.set_root(H.tmp .. "/registry"))
    lwsp.set_log(H.logfile)
  end)

  it("installs a chain over memnet, makes a pair, and its done() names a socket left open", function()
    local T = test.new()
    local top = T:chain{H.root .. "/examples/passthrough.lua", base = "memnet"}
    local c, a = T:pair(top)
    assert.equal(2, host.send(c, "hi"))
    assert.equal("hi", (host.recv(a, 10)))
    assert(host.close(a))
    local ok, err = pcall(T.done, T)
    assert.is_false(ok)
    assert.truthy(err:find("1 socket(s) still open in passthrough", 1, true), err)
    -- done() cleaned up all the same: a second done() finds nothing
    T:done()
    assert.same({}, lwsp.registry.list())
  end)

  it("shows the providers' log in a failure, and captures log lines and traces", function()
    local T = test.new()
    local bad = T:provider("error('broken on purpose')\n")
    local ok, err = pcall(T.pair, T, bad)
    assert.is_false(ok)
    assert.truthy(err:find("WSAEPROVIDERFAILEDINIT", 1, true), err)
    assert.truthy(err:find("broken on purpose", 1, true), err)
    T:done()
    local r = T:memnet()
    local records, text = T:trace(function()
      local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
      assert(host.close(s))
    end)
    assert.is_true(#records > 0)
    assert.truthy(text:find("memnet (base)", 1, true) or text:find("WSPSocket(", 1, true), text)
    T:done()
  end)
end)

describe("wsp.test's servers and UDP pairs #posix #subprocess", function()
  local test = require "wsp.test"
  after_each(function()
    assert(lwsp.registry.set_root(H.tmp .. "/registry"))
    lwsp.set_log(H.logfile)
  end)

  it("starts TCP and UDP echo servers and an HTTP server on 127.0.0.1, reached through a layer", function()
    local T = test.new()
    local top = T:chain{H.root .. "/examples/passthrough.lua", base = "native"}
    local tcp = T:server("tcp")
    local c = T:check(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, top.tcp))
    T:check(host.connect(c, tcp.address))
    assert.equal(4, host.send(c, "ping"))
    assert.equal("ping", (host.recv(c, 100)))
    assert(host.close(c))
    local udp = T:server("udp")
    local u = T:check(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, top.udp))
    T:check(host.sendto(u, "dgram", udp.address))
    assert.equal("dgram", (host.recvfrom(u, 100)))
    assert(host.close(u))
    local page = assert(io.open(T.dir .. "/index.txt", "w"))
    page:write("served\n")
    page:close()
    local http = T:server("http")
    local body, status = require("wsp.util").http_get(host, wsp, top.tcp, wsp.addr(http.address), "/index.txt")
    assert.equal("served\n", body, status)
    local a, b, to = T:udp_pair(top)
    T:check(host.sendto(a, "x", to))
    assert.equal("x", (host.recvfrom(b, 10)))
    assert(host.close(a))
    assert(host.close(b))
    T:done()
    assert.is_false(pcall(T.server, T, "smtp"))
  end)
end)

-- The README's snippet, lwsp-new's templates and a spec of one's own, run by
-- bin/lwsp-spec in a folder outside the checkout as `nobody` with a HOME of
-- its own: everything passes and nothing is written outside that folder.
describe("a provider author outside the checkout #posix #subprocess #runner", function()
  local tour_script, check_tour
  local function readme_snippet()
    local text = assert(io.open(H.root .. "/README.md")):read("a")
    return (assert(text:match("Install and drive it.-```lua\n(.-)```"), "no snippet in README.md"))
  end

  -- Runs script (sh) as nobody with HOME in dir and nothing else of root's
  -- environment; its output and status.
  local function as_nobody(dir, script)
    local p = assert(io.popen(("chown -R nobody %s && env -i PATH=/usr/bin:/bin HOME=%s setpriv --reuid=nobody "
      .. "--regid=nogroup --clear-groups sh -c %s 2>&1"):format(sh_quote(dir), sh_quote(dir .. "/home"), sh_quote(script))))
    local out = p:read("a")
    local _, _, code = p:close()
    return out, code
  end

  local function copy(from, to)
    local src = assert(io.open(from)):read("a")
    local out = assert(io.open(to, "w"))
    out:write(src)
    out:close()
  end

  -- the tour's steps (docs/tour.md), as spec/19 reads them
  local function tour_steps()
    local text = assert(io.open(H.root .. "/docs/tour.md")):read("a")
    local out = {}
    for title, cmd, expect in text:gmatch("\n## ([^\n]+).-```sh\n([^\n]+)\n```\n<!%-%- expect: (.-) %-%->") do
      local want = {}
      for item in (expect .. " |"):gmatch("%s*(.-)%s*|") do want[#want + 1] = item end
      out[#out + 1] = {title = title, cmd = cmd, want = want}
    end
    assert.is_true(#out >= 15)
    return out
  end

  tour_script = function(tree)
    local lines = {"mkdir -p build"}
    for i, st in ipairs(tour_steps()) do
      local cmd = st.cmd:gsub("^bin/(lwsp%-%w+)", function(b) return sh_quote(tree .. "/bin/" .. b) end)
      lines[#lines + 1] = ("echo '== step %d'; %s 2>&1; echo \"== rc $?\""):format(i, cmd)
    end
    return table.concat(lines, "\n")
  end

  check_tour = function(out)
    for i, st in ipairs(tour_steps()) do
      local body = out:match("== step " .. i .. "\n(.-)== rc %d+\n")
      assert.truthy(body, "step " .. i .. " did not run:\n" .. out)
      local rc = out:match("== step " .. i .. "\n.-== rc (%d+)\n")
      assert.equal("0", rc, st.title .. ": " .. st.cmd .. "\n" .. body)
      for _, w in ipairs(st.want) do
        assert.truthy(body:find(w, 1, true), ("%q not in the output of %s, run as nobody:\n%s"):format(w, st.title, body))
      end
    end
  end

  it("as nobody, with the rock installed into a temporary tree: the README snippet, lwsp-new --layered "
    .. "and --base, lwsp-spec and every step of the tour all pass, writing nothing outside the folder", function()
    local dir = H.tmp .. "/author"
    H.mkdir(dir .. "/home")
    H.mkdir(dir .. "/work")
    copy(H.root .. "/examples/upper.lua", dir .. "/work/upper.lua")
    copy(H.root .. "/examples/memnet.lua", dir .. "/work/memnet.lua")
    assert(os.execute(("mkdir -p %s/tour && cp -r %s/examples %s/tour/"):format(sh_quote(dir), sh_quote(H.root), sh_quote(dir))))
    local drive = assert(io.open(dir .. "/work/drive.lua", "w"))
    drive:write(readme_snippet())
    drive:close()
    -- the rock's sources, copied as `make rock` does
    assert(os.execute(("mkdir -p %s/src && cd %s && cp -r src lua bin examples docs lwsp-scm-1.rockspec %s/src/"):format(
      sh_quote(dir), sh_quote(H.root), sh_quote(dir))))
    local tree = dir .. "/tree"
    local lpath = tree .. "/share/lua/5.4/?.lua;" .. tree .. "/share/lua/5.4/?/init.lua;;"
    local cpath = tree .. "/lib/lua/5.4/?.so;;"
    local out, code = as_nobody(dir, table.concat({
      "set -e",
      ("cd %s/src && luarocks --lua-version=5.4 --tree=%s make lwsp-scm-1.rockspec >/dev/null"):format(sh_quote(dir), sh_quote(tree)),
      "cd " .. sh_quote(dir .. "/work"),
      "touch " .. sh_quote(dir .. "/start"),
      ("LUA_PATH=%s LUA_CPATH=%s lua5.4 drive.lua"):format(sh_quote(lpath), sh_quote(cpath)),
      sh_quote(tree .. "/bin/lwsp-new") .. " counter",
      sh_quote(tree .. "/bin/lwsp-new") .. " greeter --base",
      sh_quote(tree .. "/bin/lwsp-spec") .. " -o plainTerminal spec",
      "echo written:; find " .. sh_quote(dir) .. " -newer " .. sh_quote(dir .. "/start") .. " -type f | sort",
      "echo end-written",
      -- each step of the tour, run from a copy of examples/ in the folder with the rock's commands
      "cd " .. sh_quote(dir .. "/tour"),
      tour_script(tree),
      -- nothing of nobody's anywhere else in the temporary folders (leaving out the
      -- folders of this spec run elsewhere at the same time, and compilers' own
      -- temporary files)
      "echo elsewhere:; find /tmp /var/tmp -xdev -user nobody -newer " .. sh_quote(dir .. "/start")
        .. " 2>/dev/null | grep -v -e '^" .. dir:gsub("'", "") .. "' -e '^/tmp/lua_[^/]*/author' -e '^/tmp/cc[^/]*$' || true",
    }, "\n"))
    assert.equal(0, code, out)
    assert.equal("", out:match("elsewhere:\n(.*)$"), "written outside the folder")
    check_tour(out)
    assert.truthy(out:find("HELLO\t127.0.0.1:", 1, true), out)
    assert.truthy(out:find("2 successes / 0 failures / 0 errors / 0 pending", 1, true), out)
    -- what was written: the templates, nothing left in the registry
    local written = out:match("written:\n(.-)end%-written\n")
    assert.equal(("%s/work/counter.lua\n%s/work/greeter.lua\n%s/work/spec/counter_spec.lua\n%s/work/spec/greeter_spec.lua\n")
      :format(dir, dir, dir, dir), written)
  end)

  it("as nobody, from the checkout: lwsp-spec runs a spec folder of one's own from elsewhere", function()
    local dir = H.tmp .. "/author2"
    H.mkdir(dir .. "/home")
    H.mkdir(dir .. "/spec")
    copy(H.root .. "/examples/delay.lua", dir .. "/delay.lua")
    copy(H.root .. "/examples/spec/delay_spec.lua", dir .. "/spec/delay_spec.lua")
    local out, code = as_nobody(dir, "cd " .. sh_quote(dir) .. " && " .. sh_quote(H.root .. "/bin/lwsp-spec")
      .. " -o plainTerminal")
    assert.equal(0, code, out)
    assert.truthy(out:find("2 successes / 0 failures / 0 errors / 0 pending", 1, true), out)
  end)
end)

-- WSPCleanup while the service thread had let the lock go (here: a timer's
-- connect down, after the application stopped waiting for it) lost the stop
-- signal, and the cleanup waited for ever.
describe("the service thread's stop #posix #subprocess #runner", function()
  it("is not lost when the thread had let the lock go: 10 runs each end", function()
    local scenario = H.script [[
return function(ctx)
  local host, wsp = ctx.host, ctx.wsp
  local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, ctx.base.tcp))
  assert(host.bind(l, "127.0.0.1:0"))
  assert(host.listen(l, 4))
  local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, ctx.tcp))
  local ev = host.create_event()
  assert(host.event_select(c, ev, wsp.FD_CONNECT | wsp.FD_WRITE))
  host.connect(c, host.getsockname(l))
  assert(host.wait({ev}, false, 5000))
  local a = assert(host.accept(l))
  for _, s in ipairs{c, a, l} do assert(host.close(s)) end
  return true
end
]]
    local cmd = "timeout 10 bin/lwsp-run examples/delay.lua --config examples/delay.config.lua --quiet --run " .. scenario
    local out, code = H.run(("sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do %s || exit 3; done; echo all ended'"):format(cmd))
    assert.equal(0, code, out)
    assert.truthy(out:find("all ended", 1, true), out)
  end)
end)
