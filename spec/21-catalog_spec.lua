-- wsp.catalog and lwsp-catalog: installing a Lua layer into a catalog,
-- listing, removing and repairing.  Against lwsp's host (ws2_32's part played
-- in this process) every step runs for real, traffic included; against
-- Windows' own catalog (lwsp.wsc) under Wine, whose WSC calls are stubs, the
-- catalog is read for real and an install must fail cleanly.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host
local catalog = require "wsp.catalog"

local LAYER = [[
local lwsp = require "lwsp"
local layered = require "wsp.layered"
local P = layered.new()
P.description = "catalog spec layer"
function P.send(s, data, ...)
  lwsp.log("layer carried " .. #data .. " bytes")
  return P.base.send(s, data, ...)
end
return P
]]

local function mappings(view)
  local n, t = 0, assert(lwsp.registry.list(view))
  for _ in pairs(t) do n = n + 1 end
  return t, n
end

local function ids()
  local t = {}
  for i, e in ipairs(host.catalog()) do t[i] = e.dwCatalogEntryId end
  return t
end

local function lines(argv, b)
  local out = {}
  local status = catalog.main(argv, function(l) out[#out + 1] = l end, b)
  return status, table.concat(out, "\n")
end

describe("installing a Lua layer into lwsp's host catalog", function()
  local native, script, ids0, maps0, n0
  before_each(function()
    -- a catalog and registry as on a fresh machine: what other specs left
    -- (and, under Wine, earlier runs, whose registry outlives them) would read
    -- as bases to pick or as half-installed states here
    host.cleanup()
    for _, id in ipairs(ids()) do host.remove(id) end
    for g in pairs(mappings()) do lwsp.registry.remove(g) end
    ids0, maps0 = {}, mappings()
    for _, id in ipairs(ids()) do ids0[id] = true end
    n0 = select(2, mappings())
    native = host.install_native()
    script = H.script(LAYER)
  end)
  after_each(function()
    host.cleanup()
    for _, id in ipairs(ids()) do if not ids0[id] then host.remove(id) end end
    for g in pairs(mappings()) do if not maps0[g] then lwsp.registry.remove(g) end end
  end)

  for _, and_chains in ipairs{true, false} do
    local how = and_chains and "with WSCInstallProviderAndChains" or "with WSCInstallProvider and WSCWriteProviderOrder"
    it("installs over TCP and UDP " .. how .. ", carries real TCP through the layer, lists it and removes it", function()
      local b = catalog.host{and_chains = and_chains}
      local before = #host.catalog()
      local r = assert(catalog.install{script = script, name = "spec", over = {"tcp", "udp"}, backend = b})
      -- the entries: a hidden layered entry and two chains over the native base, first in the order
      local all = host.catalog()
      assert.equal(before + 3, #all)
      local by = {}
      for _, e in ipairs(all) do by[e.dwCatalogEntryId] = e end
      local layer = by[r.layer]
      assert.equal(r.guid, layer.ProviderId)
      assert.same({}, layer.ProtocolChain)
      assert.equal("lwsp spec", layer.szProtocol)
      assert.equal(wsp.PFL_HIDDEN, layer.dwProviderFlags & wsp.PFL_HIDDEN)
      assert.same({r.layer, native.tcp}, by[r.chains.tcp].ProtocolChain)
      assert.same({r.layer, native.udp}, by[r.chains.udp].ProtocolChain)
      assert.equal("lwsp spec over [lwsp native TCP]", by[r.chains.tcp].szProtocol)
      assert.equal(0, by[r.chains.tcp].dwServiceFlags1 & wsp.XP1_IFS_HANDLES)
      assert.are_not.equal(r.guid, by[r.chains.tcp].ProviderId)
      assert.same({r.chains.tcp, r.chains.udp}, {all[1].dwCatalogEntryId, all[2].dwCatalogEntryId})
      -- the mapping, read back: the layered entry's GUID alone; the chains'
      -- GUIDs have none, and the runtime finds the script by walking the chain
      local maps = mappings()
      assert.equal(script, maps[r.guid])
      assert.is_nil(maps[by[r.chains.tcp].ProviderId])
      -- an application asking for TCP now gets the layer, over a real connection
      local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
      assert(host.bind(l, "127.0.0.1:0"))
      assert(host.listen(l, 4))
      local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0))
      assert.equal(r.chains.tcp, host.socket_info(c).catalog)
      assert(host.connect(c, host.getsockname(l)))
      local a = assert(host.accept(l))
      local mark = H.mark()
      assert.equal(13, host.send(c, "through lwsp!"))
      assert.equal("through lwsp!", host.recv(a, 100))
      assert.truthy(H.find_log(mark, "layer carried 13 bytes", true))
      assert.equal(5, host.send(a, "back!"))
      assert.equal("back!", host.recv(c, 100))
      for _, s in ipairs{c, a, l} do host.close(s) end
      -- listed, with nothing wrong
      local status, text = lines({"list"}, b)
      assert.equal(0, status)
      assert.truthy(text:find(r.guid .. "  lwsp spec  [" .. r.layer .. "]", 1, true), text)
      assert.matches("%[" .. r.chains.tcp .. "%] tcp   over lwsp native TCP", text)
      assert.matches("%[" .. r.chains.udp .. "%] udp   over lwsp native UDP", text)
      assert.is_nil(text:find("problem", 1, true))
      -- removed: entries, mappings, and TCP goes to the base again
      host.cleanup()
      status, text = lines({"remove", "spec"}, b)
      assert.equal(0, status, text)
      assert.equal(before, #host.catalog())
      assert.equal(n0, select(2, mappings()))
      local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0))
      assert.equal(native.tcp, host.socket_info(s).catalog)
      host.close(s)
      assert.same({0, "no lwsp layers installed"}, {lines({"list"}, b)})
    end)
  end

  it("after a remove, a started layer goes on, a fresh WSPStartup for its entry fails with WSAEPROVIDERFAILEDINIT and a log line, and a neighbour keeps working", function()
    local b = catalog.host()
    local gone = assert(catalog.install{script = script, name = "gone", over = {"tcp"}, backend = b})
    local neighbour = assert(catalog.install{script = H.script((LAYER:gsub("layer carried", "neighbour carried"))),
      name = "neighbour", over = {"tcp"}, backend = b})
    -- what a process that read the catalog before the remove still holds
    local held = {}
    for _, e in ipairs(host.catalog()) do held[e.dwCatalogEntryId] = e end
    local function connected(chain)
      local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
      assert(host.bind(l, "127.0.0.1:0"))
      assert(host.listen(l, 4))
      local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, chain))
      assert.equal(chain, host.socket_info(c).catalog)
      assert(host.connect(c, host.getsockname(l)))
      return c, assert(host.accept(l)), l
    end
    local function carries(c, a, what)
      local mark = H.mark()
      assert.equal(7, host.send(c, "carried"))
      assert.equal("carried", host.recv(a, 100))
      assert.truthy(H.find_log(mark, what .. " carried 7 bytes", true))
    end
    -- started, then removed
    local c, a, l = connected(gone.chains.tcp)
    carries(c, a, "layer")
    local status, text = lines({"remove", "gone"}, b)
    assert.equal(0, status, text)
    assert.is_nil((lwsp.registry.get(gone.guid)))
    -- the state started before the remove goes on
    carries(c, a, "layer")
    for _, x in ipairs{c, a, l} do host.close(x) end
    host.cleanup()                    -- the last WSPCleanup: the layer's state is gone
    -- a fresh start on the entries the old catalog named: the mapping is gone
    local function again(e, chain)
      local i = {}
      for k, v in pairs(e) do i[k] = v end
      i.dwCatalogEntryId, i.path = nil, nil
      if chain then i.ProtocolChain = chain end
      return host.install(i, lwsp.path(), chain and "chain" or "layer")
    end
    local layer = again(held[gone.layer])
    local chain = again(held[gone.chains.tcp], {layer, native.tcp})
    local mark = H.mark()
    local s, _, code = host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, chain)
    assert.is_nil(s)
    assert.equal(wsp.WSAEPROVIDERFAILEDINIT, code)
    assert.truthy(H.find_log(mark, "WSPStartup: no script registered", true))
    -- the neighbour, still installed, carries TCP
    c, a, l = connected(neighbour.chains.tcp)
    carries(c, a, "neighbour")
    for _, x in ipairs{c, a, l} do host.close(x) end
  end)

  it("installs over all four base protocols by default, IPv6 included", function()
    local r = assert(catalog.install{script = script, backend = catalog.host()})
    for _, k in ipairs{"tcp", "udp", "tcp6", "udp6"} do assert.is_number(r.chains[k]) end
    local c = assert(host.socket(wsp.AF_INET6, wsp.SOCK_DGRAM, 0))
    assert.equal(r.chains.udp6, host.socket_info(c).catalog)
    host.close(c)
  end)

  it("refuses a bad install and leaves the catalog and the registry as they were", function()
    local b = catalog.host()
    local order, _, n = ids(), mappings()
    local function refused(o, pattern)
      o.backend = b
      local r, err = catalog.install(o)
      assert.is_nil(r)
      assert.matches(pattern, err)
      assert.same(order, ids())
      assert.equal(n, select(2, mappings()))
    end
    refused({script = "relative/layer.lua"}, "absolute path")
    refused({script = H.tmp .. "/missing.lua"}, "does not load")
    refused({script = H.script("return {")}, "does not load")
    refused({script = script, over = {"sctp"}}, 'unknown protocol "sctp"')
    -- a catalog with no IPv6 base
    for _, id in ipairs{native.tcp6, native.udp6} do host.remove(id) end
    order = ids()
    refused({script = script, over = {"tcp", "tcp6"}}, "no base provider for tcp6")
    -- an install the catalog reports as done but does not hold (Wine's stubs do this)
    local stub = catalog.host{and_chains = false}
    stub.install = function() return true end
    local r, err = catalog.install{script = script, backend = stub, over = {"tcp", "udp"}}
    assert.is_nil(r)
    assert.matches("did not take the layered entry", err)
    assert.same(order, ids())
    assert.equal(n, select(2, mappings()))
    -- a failing order write undoes the entries already made
    local bad_order = catalog.host{and_chains = false}
    bad_order.write_order = function() return nil, "WSAEINVAL: refused", wsp.WSAEINVAL end
    r, err = catalog.install{script = script, backend = bad_order, over = {"tcp"}}
    assert.is_nil(r)
    assert.matches("WSCWriteProviderOrder failed: WSAEINVAL", err)
    assert.same(order, ids())
    assert.equal(n, select(2, mappings()))
  end)

  it("repairs half-installed states: a stale mapping, a lone layered entry, chains without their layer", function()
    local b = catalog.host{and_chains = false}
    local order = ids()
    -- a mapping with nothing in the catalog
    local stale = lwsp.guid()
    assert(lwsp.registry.set(stale, script))
    -- a layered entry whose chains never got installed
    local lone = lwsp.guid()
    assert(lwsp.registry.set(lone, script))
    assert(b:install(0, lone, lwsp.path(), {catalog.layer_entry(host.catalog()[1], "lwsp lone")}))
    -- a whole install whose layered entry was then removed by hand
    local r = assert(catalog.install{script = script, name = "cut", over = {"udp"}, backend = b})
    host.remove(r.layer)
    local cut_guid
    for _, e in ipairs(host.catalog()) do if e.dwCatalogEntryId == r.chains.udp then cut_guid = e.ProviderId end end
    local info = assert(catalog.inspect(b))
    local what = {}
    for _, p in ipairs(info.problems) do what[#what + 1] = p.what end
    table.sort(what)
    assert.same({"lwsp entry with no script in the registry view", "lwsp layered entry without protocol chains",
                 "protocol chain naming catalog ids that are gone",
                 "script mapping with no catalog entry", "script mapping with no catalog entry"}, what)
    local status, text = lines({"list"}, b)
    assert.equal(0, status)
    assert.matches("problem: the catalog: protocol chain naming catalog ids that are gone: " .. cut_guid, text, 1, true)
    assert.equal(1, (lines({"check"}, b)))
    status, text = lines({"repair"}, b)
    assert.equal(0, status, text)
    assert.matches("took out lwsp layer " .. lone, text, 1, true)
    assert.matches("deinstalled lwsp chain " .. cut_guid, text, 1, true)
    assert.matches("dropped the script mapping of " .. stale, text, 1, true)
    info = assert(catalog.inspect(b))
    assert.same({}, info.problems)
    assert.same({}, info.layers)
    assert.same(order, ids())
    assert.equal(n0, select(2, mappings()))
    assert.same({0, "nothing to repair"}, {lines({"repair"}, b)})
    assert.same({0, "the catalog is consistent"}, {lines({"check"}, b)})
  end)

  it("answers a wrong command with its usage", function()
    local status, text = lines({"frobnicate"}, catalog.host())
    assert.equal(2, status)
    assert.matches("usage: lwsp%-catalog install SCRIPT", text)
    assert.equal(2, (lines({"install"}, catalog.host())))
    assert.equal(1, (lines({"remove", "nobody"}, catalog.host())))
  end)
end)

describe("a new GUID (an install's layered entry and chains)", function()
  it("comes from UuidCreate on Windows and from random bytes elsewhere, version 4 with RFC 4122's variant, new each time", function()
    local seen = {}
    for _ = 1, 200 do
      local g, source = lwsp.guid()
      assert.equal(H.windows and "UuidCreate" or "random", source)
      assert.matches("^{%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x}$", g:lower())
      assert.is_nil(seen[g])
      seen[g] = true
    end
  end)
end)

describe("Windows' own catalog through lwsp.wsc", function()
  if not lwsp.wsc.available then
    it("is reported missing where there is none", function()
      local status, text = lines({"list"})
      assert.equal(1, status)
      assert.matches("no Winsock catalog on this system", text, 1, true)
      local r, err = catalog.install{script = H.script(LAYER)}
      assert.is_nil(r)
      assert.matches("no Winsock catalog on this system", err, 1, true)
      assert.is_nil(lwsp.wsc.enum())
    end)
    return
  end

  it("reads the real catalog: base entries for TCP and UDP, and finds each by id", function()
    local all = assert(lwsp.wsc.enum())
    local tcp = assert(catalog.find_base(all, "tcp"))
    assert.equal(wsp.IPPROTO_TCP, tcp.iProtocol)
    assert.equal(1, #tcp.ProtocolChain)            -- a base provider
    assert.truthy(catalog.find_base(all, "udp"))
    assert.equal(tcp.szProtocol, lwsp.wsc.entry(tcp.dwCatalogEntryId).szProtocol)
    assert.is_nil(lwsp.wsc.entry(0x7fffffff))
    -- the entries an install would make over it
    local layer = catalog.layer_entry(tcp, "lwsp x")
    assert.same({}, layer.ProtocolChain)
    assert.same({77, tcp.dwCatalogEntryId}, catalog.chain_entry(tcp, 77, lwsp.guid(), "lwsp x").ProtocolChain)
  end)

  it("installs for real, or fails saying why and leaves nothing behind", function()
    local script = H.script(LAYER)
    local before, n, n32 = #assert(lwsp.wsc.enum()), select(2, mappings()), select(2, mappings(32))
    local argv = {"install", script, "--name", "wine spec", "--over", "tcp,udp", "--in-place"}
    local dll32 = H.root .. "\\build\\mingw\\i686\\lwsp.dll"
    if io.open(dll32, "rb") then argv[#argv + 1] = "--dll32" argv[#argv + 1] = dll32 end
    local status, text = lines(argv)
    if status == 0 then
      -- a Windows that takes it (run as an administrator): listed, checked, then removed
      local _, listed = lines({"list"})
      assert.matches("lwsp wine spec", listed, 1, true)
      assert.equal(0, (lines({"remove", "wine spec"})))
    else
      assert.equal(1, status)
      assert.matches("install failed", text, 1, true)
      assert.matches("nothing was l?e?f?t? ?installed", text)
    end
    assert.equal(before, #assert(lwsp.wsc.enum()))
    assert.equal(n, select(2, mappings()))
    assert.same({0, "no lwsp layers installed"}, {lines({"list"})})
  end)

  it("reads a DLL's architecture from its PE header and expands paths as each architecture sees them", function()
    local b = catalog.wsc()
    assert.equal(lwsp.wsc.bits, b:dll_arch(lwsp.path()))
    assert.equal(64, lwsp.wsc.os_bits())
    local root = os.getenv("SystemRoot")
    assert.equal(root .. "\\system32\\x.dll", lwsp.wsc.expand("%SystemRoot%\\system32\\x.dll"))
    assert.equal(root .. "\\SysWOW64\\x.dll", lwsp.wsc.expand("%SystemRoot%\\system32\\x.dll", 32))
    assert.equal(os.getenv("ProgramFiles(x86)") .. "\\lwsp", lwsp.wsc.expand("%ProgramFiles%\\lwsp", 32))
    -- an install's GUIDs come from Windows' UuidCreate, not the random fallback
    -- (both are version 4: only the source tells them apart)
    assert.equal("UuidCreate", select(2, lwsp.guid()))
  end)

  it("tells who besides administrators can change a file, and judges a missing file by its folder", function()
    -- what the ACL says is Windows' (Wine's) to decide: the answer is nil or a reason naming the path
    for _, p in ipairs{H.tmp, lwsp.path()} do
      local why = lwsp.wsc.insecure(p)
      assert.is_true(why == nil or why:find(p .. " can be changed by ", 1, true) == 1, tostring(why))
    end
    local missing = H.tmp .. "\\no such folder\\x.lua"
    local why = lwsp.wsc.insecure(missing)
    assert.is_true(why == nil or why:find(missing .. " does not exist and ", 1, true) == 1, tostring(why))
    -- the folder and the missing file under it get the same verdict
    assert.equal(lwsp.wsc.insecure(H.tmp) == nil, why == nil)
  end)

  -- the provider as it ships (tools/mingw-provider.sh) and the Lua module build beside lua.exe
  local mingw = H.root .. "\\build\\mingw\\x86_64"

  it("test-starts the provider as lwsp-catalog install stages it: Lua linked in, loaded by its full path, WSPStartup, a socket", function()
    local b = catalog.wsc()
    local dir = H.tmp .. "\\Program Files\\lwsp"
    local st = assert(catalog.stage(b, {dll = mingw .. "\\provider\\lwsp.dll", dir = dir, script = H.script(LAYER)}))
    -- what ships, and nothing of the module build: no lwsp\host.dll, no lua54.dll
    assert.is_true(b:exists(dir .. "\\lwsp_native.dll"))
    assert.is_true(b:exists(dir .. "\\lua\\wsp\\layered.lua"))
    assert.is_false(b:exists(dir .. "\\lwsp\\host.dll"))
    assert.is_false(b:exists(dir .. "\\lua54.dll"))
    assert.same({}, (catalog.import_problems(b, st.dll, 64)))
    local guid = lwsp.guid()
    -- no mapping yet: the start fails and says so
    local ok, err = b:test_start(64, st.dll, guid)
    assert.is_nil(ok)
    assert.matches("no socket through the layer: WSAEPROVIDERFAILEDINIT", err)
    assert(lwsp.registry.set(guid, st.script))
    ok, err = b:test_start(64, st.dll, guid)
    lwsp.registry.remove(guid)
    assert.is_true(ok, err)
    -- a script that raises at load time fails the start
    local bad = lwsp.guid()
    assert(lwsp.registry.set(bad, H.script("error('broken script')")))
    ok, err = b:test_start(64, st.dll, bad)
    lwsp.registry.remove(bad)
    assert.is_nil(ok)
    assert.matches("WSAEPROVIDERFAILEDINIT", err)
  end)

  it("refuses a DLL whose dependency is missing from where other programs look (the module build, lua54.dll), which lua.exe alone would pass", function()
    local b = catalog.wsc()
    local dir = H.tmp .. "\\module build"
    for _, f in ipairs{"lwsp.dll", "lwsp\\host.dll", "lwsp_native.dll"} do assert(b:copy_file(mingw .. "\\" .. f, dir .. "\\" .. f)) end
    for _, m in ipairs(catalog.MODULES) do
      assert(b:copy_file(H.root .. "\\lua\\wsp\\" .. m .. ".lua", dir .. "\\lua\\wsp\\" .. m .. ".lua"))
    end
    assert.is_false(b:exists(dir .. "\\lua54.dll"))
    assert.same({"lua54.dll"}, (catalog.import_problems(b, dir .. "\\lwsp.dll", 64)))
    local guid = lwsp.guid()
    assert(lwsp.registry.set(guid, H.script(LAYER)))
    -- a lua.exe process has lua54.dll loaded already: started there, the DLL works
    local ok, err = catalog.test_start(lwsp.wsc.lua_exe(), dir .. "\\lwsp.dll", guid)
    assert.is_true(ok, err)
    -- the install's test start refuses it, saying why
    ok, err = b:test_start(64, dir .. "\\lwsp.dll", guid)
    lwsp.registry.remove(guid)
    assert.is_nil(ok)
    assert.matches(dir .. "\\lwsp.dll imports lua54.dll, which is not in " .. os.getenv("SystemRoot"), err, 1, true)
    assert.matches("provider build with Lua linked in", err, 1, true)
  end)

  -- the i686 build: its lua.exe is what `install --lua32` starts for the
  -- 32-bit test start (tools/mingw-build.sh builds it with its host module
  -- beside it), its provider tree what `--dll32` installs
  local mingw32 = H.root .. "\\build\\mingw\\i686"
  local LAYER32 = [[
local lwsp = require "lwsp"
local layered = require "wsp.layered"
local P = layered.new()
local socket = P.socket
function P.socket(...)
  lwsp.log(("layer socket in a %d-bit process"):format(string.packsize("T") * 8))
  return socket(...)
end
return P
]]
  local function wsc32()
    local b = catalog.wsc{lua32 = mingw32 .. "\\lua.exe"}
    assert.is_true(b:exists(b.lua32), "no " .. b.lua32 .. ": tools/mingw-build.sh builds it")
    assert.is_true(b:exists(mingw32 .. "\\lwsp\\host.dll"), "no i686 host module: tools/mingw-build.sh builds it")
    return b
  end
  -- both provider trees staged as `install` stages them on a 64-bit Windows
  local function staged(b, script)
    local dir, dir32 = H.tmp .. "\\Program Files\\lwsp " .. lwsp.guid(), H.tmp .. "\\Program Files (x86)\\lwsp " .. lwsp.guid()
    return assert(catalog.stage(b, {dll = mingw .. "\\provider\\lwsp.dll", dir = dir,
      dll32 = mingw32 .. "\\provider\\lwsp.dll", dir32 = dir32, script = script})), dir, dir32
  end

  it("test-starts the i686 provider in a 32-bit process started from the x86_64 lua.exe, reading the 32-bit registry view", function()
    local b = wsc32()
    local st, _, dir32 = staged(b, H.script(LAYER32))
    assert.equal(dir32 .. "\\lwsp.dll", st.dll32)
    assert.equal(32, b:dll_arch(st.dll32))
    assert.equal(32, b:dll_arch(dir32 .. "\\lwsp_native.dll"))
    assert.is_true(b:exists(dir32 .. "\\lua\\wsp\\layered.lua"))
    assert.is_false(b:exists(dir32 .. "\\lua54.dll"))
    assert.same({}, (catalog.import_problems(b, st.dll32, 32)))
    local guid = lwsp.guid()
    -- mapped in the 64-bit view only: the 32-bit process reads WOW6432Node and finds no script
    assert(lwsp.registry.set(guid, st.script, 64))
    local ok, err = b:test_start(32, st.dll32, guid)
    assert.is_nil(ok)
    assert.matches("WSPStartup: no script registered for {", err, 1, true)
    assert.matches("no socket through the layer: WSAEPROVIDERFAILEDINIT", err, 1, true)
    -- mapped as install maps it, in both views: a socket through the layer, in a 32-bit process
    assert(lwsp.registry.set(guid, st.script, 32))
    local out
    ok, out = b:test_start(32, st.dll32, guid)
    lwsp.registry.remove(guid, 32)
    lwsp.registry.remove(guid, 64)
    assert.is_true(ok, out)
    assert.matches("layer socket in a 32-bit process", out, 1, true)
    assert.matches("lwsp test start: ok (a 32-bit process)", out, 1, true)
    -- the 64-bit start of the same install runs in a 64-bit process
    local g64 = lwsp.guid()
    assert(lwsp.registry.set(g64, st.script, 64))
    ok, out = b:test_start(64, st.dll, g64)
    lwsp.registry.remove(g64, 64)
    assert.is_true(ok, out)
    assert.matches("layer socket in a 64-bit process", out, 1, true)
    -- a script that raises at load time fails the 32-bit start
    local bad = lwsp.guid()
    assert(lwsp.registry.set(bad, H.script("error('broken script')"), 32))
    ok, err = b:test_start(32, st.dll32, bad)
    lwsp.registry.remove(bad, 32)
    assert.is_nil(ok)
    assert.matches("WSAEPROVIDERFAILEDINIT", err)
  end)

  it("in the 32-bit process, a script that raises passes the start under its own view's on-failure passthrough (install writes the choice after the starts)", function()
    local b = wsc32()
    local st = staged(b, H.script("error('broken script')"))
    local guid = lwsp.guid()
    assert(lwsp.registry.set(guid, st.script, 32))
    assert(lwsp.registry.set(guid, st.script, 64))
    -- the choice in the 64-bit view only: the 32-bit layer fails
    assert(lwsp.registry.set_on_failure(guid, "passthrough", 64))
    local ok, err = b:test_start(32, st.dll32, guid)
    assert.is_nil(ok)
    assert.matches("no socket through the layer: WSAEPROVIDERFAILEDINIT", err, 1, true)
    -- in its own view: every call goes to the layer below, and the socket opens
    assert(lwsp.registry.set_on_failure(guid, "passthrough", 32))
    local out
    ok, out = b:test_start(32, st.dll32, guid)
    lwsp.registry.remove(guid, 32)
    lwsp.registry.remove(guid, 64)
    assert.is_true(ok, out)
    assert.matches("broken script", out, 1, true)
    assert.matches("its install says on-failure passthrough", out, 1, true)
    assert.matches("lwsp test start: ok (a 32-bit process)", out, 1, true)
  end)

  it("refuses for the 32-bit view an i686 DLL importing what SysWOW64 lacks, though System32 or a lua.exe would have it", function()
    local b = wsc32()
    local sys32 = b:expand("%SystemRoot%\\System32\\x", 32):gsub("\\x$", "")
    assert.equal(os.getenv("SystemRoot") .. "\\SysWOW64", sys32)
    -- the i686 module build (lua54.dll beside lua.exe only)
    local dir = H.tmp .. "\\module build 32"
    for _, f in ipairs{"lwsp.dll", "lwsp\\host.dll", "lwsp_native.dll"} do assert(b:copy_file(mingw32 .. "\\" .. f, dir .. "\\" .. f)) end
    for _, m in ipairs(catalog.MODULES) do
      assert(b:copy_file(H.root .. "\\lua\\wsp\\" .. m .. ".lua", dir .. "\\lua\\wsp\\" .. m .. ".lua"))
    end
    assert.equal(32, b:dll_arch(dir .. "\\lwsp.dll"))
    assert.same({"lua54.dll"}, (catalog.import_problems(b, dir .. "\\lwsp.dll", 32)))
    local guid = lwsp.guid()
    assert(lwsp.registry.set(guid, H.script(LAYER32), 32))
    -- started in the i686 lua.exe, which has lua54.dll loaded, it works
    local ok, err = catalog.test_start(b.lua32, dir .. "\\lwsp.dll", guid)
    assert.is_true(ok, err)
    assert.matches("layer socket in a 32-bit process", err, 1, true)
    -- the install's test start refuses it
    ok, err = b:test_start(32, dir .. "\\lwsp.dll", guid)
    lwsp.registry.remove(guid, 32)
    assert.is_nil(ok)
    assert.matches(dir .. "\\lwsp.dll imports lua54.dll, which is not in " .. sys32 .. ":", err, 1, true)
    -- a DLL only the 64-bit system folder holds (wow64.dll, as on Windows):
    -- the shipped DLLs with their msvcrt.dll import renamed to it
    assert.is_true(b:exists(b:expand("%SystemRoot%\\System32\\wow64.dll", 64)))
    assert.is_false(b:exists(b:expand("%SystemRoot%\\System32\\wow64.dll", 32)))
    local function renamed(from, to)
      local bytes, n = assert(b:read(from)):gsub("msvcrt%.dll%z", "wow64.dll\0\0")
      assert.equal(1, n)
      local f = assert(io.open(to, "wb"))
      f:write(bytes)
      f:close()
      return to
    end
    local d32 = renamed(mingw32 .. "\\provider\\lwsp.dll", H.tmp .. "\\wow64 importer 32.dll")
    local d64 = renamed(mingw .. "\\provider\\lwsp.dll", H.tmp .. "\\wow64 importer 64.dll")
    assert.same({"advapi32.dll", "kernel32.dll", "wow64.dll", "ws2_32.dll"}, (function()
      local t = assert(b:dll_imports(d32)) table.sort(t) return t end)())
    assert.same({"wow64.dll"}, (catalog.import_problems(b, d32, 32)))
    assert.matches(d32 .. " imports wow64.dll, which is not in " .. sys32 .. ":", catalog.check_imports(b, d32, 32), 1, true)
    assert.same({}, (catalog.import_problems(b, d64, 64)))
    assert.is_nil(catalog.check_imports(b, d64, 64))
    ok, err = b:test_start(32, d32, lwsp.guid())
    assert.is_nil(ok)
    assert.matches("imports wow64.dll, which is not in " .. sys32, err, 1, true)
  end)

  it("refuses a DLL or a lua.exe of the other architecture from its PE header, before any process starts", function()
    local b = wsc32()
    local st = staged(b, H.script(LAYER32))
    local guid = lwsp.guid()
    assert(lwsp.registry.set(guid, st.script, 32))
    assert(lwsp.registry.set(guid, st.script, 64))
    -- the x86_64 DLL given as the 32-bit one, and the other way round
    local ok, err = b:test_start(32, st.dll, guid)
    assert.is_nil(ok)
    assert.equal(st.dll .. " is a 64-bit DLL: a 32-bit process cannot load it", err)
    ok, err = b:test_start(64, st.dll32, guid)
    assert.is_nil(ok)
    assert.equal(st.dll32 .. " is a 32-bit DLL: a 64-bit process cannot load it", err)
    -- --lua32 naming the x86_64 lua.exe
    local wrong = catalog.wsc{lua32 = lwsp.wsc.lua_exe()}
    ok, err = wrong:test_start(32, st.dll32, guid)
    lwsp.registry.remove(guid, 32)
    lwsp.registry.remove(guid, 64)
    assert.is_nil(ok)
    assert.matches(lwsp.wsc.lua_exe() .. " is not a 32-bit program: the 32-bit test start needs the i686 lua.exe (--lua32)", err, 1, true)
    -- an install into both catalogs (what a Windows with WSCEnumProtocols32
    -- gets) refuses --dll32 naming the x86_64 DLL before anything is written
    local both = wsc32()
    both.views, both.no32 = {64, 32}, nil
    local before, n, n32 = #assert(lwsp.wsc.enum()), select(2, mappings()), select(2, mappings(32))
    local r
    r, err = catalog.install{script = st.script, backend = both, over = {"tcp"}, dll = st.dll, dll32 = st.dll}
    assert.is_nil(r)
    assert.matches(st.dll .. " is a 64-bit DLL; the 32-bit catalog needs a 32-bit one\nnothing was installed", err, 1, true)
    assert.equal(before, #assert(lwsp.wsc.enum()))
    assert.equal(n, select(2, mappings()))
    assert.equal(n32, select(2, mappings(32)))
  end)

  it("says how a test-start process that never ran ended (a lua.exe without its lua54.dll)", function()
    local b = wsc32()
    local st = staged(b, H.script(LAYER32))
    local lonely = H.tmp .. "\\lonely\\lua.exe"
    assert(b:copy_file(b.lua32, lonely))
    local ok, err = catalog.test_start(lonely, st.dll32, lwsp.guid())
    assert.is_nil(ok)
    assert.equal(lonely .. " exited with status 0xC0000135 (STATUS_DLL_NOT_FOUND: a DLL it imports is not beside it nor in the system folder)", err)
  end)
end)
