-- wsp.catalog against wsp.catalog_model: a 64-bit Windows's two Winsock
-- catalogs as ws2_32 documents them.  Install, remove, repair and the undo of
-- a failed install are driven through every failure point (an injected fault
-- at each call, and the installer's process dying at each call), on a clean
-- machine and on one that already holds another vendor's LSP; afterwards
-- `lwsp-catalog check` must find nothing, and at every step in between no
-- program may lose a socket: no chain names a missing entry, no lwsp entry
-- lacks its script, no catalog names a DLL of the other architecture.
local H = require "helpers"
local wsp = H.wsp
local catalog = require "wsp.catalog"
local model = require "wsp.catalog_model"

local LAYER = "return {description = 'model layer'}"
local DIR, DIR32 = "C:\\Program Files\\lwsp", "C:\\Program Files (x86)\\lwsp"
local DLL, DLL32, SCRIPT = DIR .. "\\lwsp.dll", DIR32 .. "\\lwsp.dll", DIR .. "\\meter.lua"

-- A machine with lwsp's files where they belong (what `install` stages).
local function machine(o)
  local m = model.new(o)
  if m.bits == 64 then
    m:put(DLL, {arch = 64})
    m:put(DLL32, {arch = 32})
  else
    m:put(DLL32, {arch = 32})
  end
  m:put(SCRIPT, {script = LAYER})
  m.dll, m.dll32 = m.bits == 64 and DLL or DLL32, DLL32
  return m
end

local function problems(m)
  local saved = m.fail_at
  m.fail_at = nil
  local list = assert(catalog.check(m))
  m.fail_at = saved
  local t = {}
  for _, p in ipairs(list) do t[#t + 1] = ("%d: %s (%s)"):format(p.view, p.what, p.guid) end
  return t
end

-- What every program on the machine needs at every moment, read from the
-- model's state directly (no call counted): every chain whole, every lwsp
-- entry with a script through the walk the runtime does, every DLL of its
-- catalog's architecture.
local function networking_broken(m)
  for _, view in ipairs(m.views) do
    local cat, maps = m.catalogs[view], m.registry[view]
    local ids = {}
    for _, e in ipairs(cat) do ids[e.dwCatalogEntryId] = e end
    for _, e in ipairs(cat) do
      for _, id in ipairs(#e.ProtocolChain >= 2 and e.ProtocolChain or {}) do
        if not ids[id] then return ("%d-bit: chain %d names missing entry %d"):format(view, e.dwCatalogEntryId, id) end
      end
      local f = m.files[model.norm(m:expand(e.path, view))]
      if f and f.arch and f.arch ~= view then return ("%d-bit: entry %d names a %d-bit DLL"):format(view, e.dwCatalogEntryId, f.arch) end
      if model.norm(e.path):match("\\lwsp%.dll$") and not catalog.resolve(e, ids, maps) then
        return ("%d-bit: lwsp entry %d has no script"):format(view, e.dwCatalogEntryId)
      end
    end
  end
end

local function watch(m)
  local broken = {}
  m.after = function(mm) local why = networking_broken(mm) if why then broken[#broken + 1] = why end end
  return broken
end

local function install(m, o)
  o = o or {}
  o.script, o.backend, o.name = o.script or SCRIPT, m, o.name or "meter"
  return catalog.install(o)
end

local function count_calls(fn, m)
  local before = m.calls
  fn()
  return m.calls - before
end

describe("the catalog model, as ws2_32 documents its catalogs", function()
  it("keeps two catalogs with ids of their own; WSCInstallProviderAndChains64_32 writes both, chains first", function()
    local m = machine()
    local g = "{11111111-2222-4333-8444-555555555555}"
    local tcp64, tcp32 = m.catalogs[64][1], m.catalogs[32][1]
    assert.are_not.equal(tcp64.dwCatalogEntryId, tcp32.dwCatalogEntryId)
    local id = assert(m:install_and_chains(g, DLL, DLL32, "x", 0, {tcp64}))
    for _, view in ipairs{64, 32} do
      local cat = m.catalogs[view]
      local layer
      for _, e in ipairs(cat) do if e.ProviderId == g then layer = e end end
      assert.same({}, layer.ProtocolChain)
      assert.equal(view == 64 and DLL or DLL32, layer.path)
      -- a chain over every TCP base (MSAFD and RSVP), under a GUID the call made up, first in the order
      assert.same(layer.dwCatalogEntryId, cat[1].ProtocolChain[1])
      assert.same(layer.dwCatalogEntryId, cat[2].ProtocolChain[1])
      assert.are_not.equal(g, cat[1].ProviderId)
      assert.equal(cat[1].ProviderId, cat[2].ProviderId)
    end
    assert.equal(id, (function() for _, e in ipairs(m.catalogs[64]) do if e.ProviderId == g then return e.dwCatalogEntryId end end end)())
    -- a second install under the same GUID is refused
    assert.is_nil((m:install_and_chains(g, DLL, DLL32, "x", 0, {tcp64})))
  end)

  it("deinstalls from one catalog only and leaves chains that named the entry dangling", function()
    local m = machine()
    local g = "{11111111-2222-4333-8444-555555555555}"
    assert(m:install_and_chains(g, DLL, DLL32, "x", 0, {m.catalogs[64][1]}))
    assert(m:deinstall(64, g))
    local still32 = false
    for _, e in ipairs(m.catalogs[32]) do if e.ProviderId == g then still32 = true end end
    assert.is_true(still32)
    -- the 64-bit chains now name a missing layered entry: the checker says so
    local found = false
    for _, p in ipairs(problems(m)) do if p:match("^64: protocol chain naming catalog ids that are gone") then found = true end end
    assert.is_true(found, table.concat(problems(m), "\n"))
    assert.is_nil((m:deinstall(64, g)))
  end)

  it("takes an order only as a permutation of every id, and updates entries in place", function()
    local m = machine()
    local ids = {}
    for i, e in ipairs(m.catalogs[64]) do ids[i] = e.dwCatalogEntryId end
    local _, err, code = m:write_order(64, {ids[1], ids[1]})
    assert.equal(wsp.WSAEINVAL, code, err)
    local rev = {}
    for i = #ids, 1, -1 do rev[#rev + 1] = ids[i] end
    assert(m:write_order(64, rev))
    assert.equal(ids[#ids], m.catalogs[64][1].dwCatalogEntryId)
    local e = model.copy(m.catalogs[64][1])
    e.szProtocol = "renamed"
    assert(m:update(64, e.ProviderId, e.path, {e}))
    assert.equal("renamed", m.catalogs[64][1].szProtocol)
    assert.equal(ids[#ids], m.catalogs[64][1].dwCatalogEntryId)
  end)

  it("fails the call chosen for a fault without changing anything, and counts every call", function()
    local m = machine()
    local before = m:state()
    m.fail_at = m.calls + 1
    local r, err = m:install_and_chains("{11111111-2222-4333-8444-555555555555}", DLL, DLL32, "x", 0, {m.catalogs[64][1]})
    assert.is_nil(r)
    assert.matches("injected fault", err)
    assert.same(before, m:state())
    m.crash_at = m.calls + 1
    local ok, e = pcall(m.enum, m, 64)
    assert.is_false(ok)
    assert.equal(model.CRASH, e)
  end)
end)

describe("lwsp-catalog check", function()
  it("finds nothing on a fresh machine and on one with another vendor's LSP", function()
    local m = machine()
    assert.same({}, problems(m))
    m:vendor_lsp("vendor")
    assert.same({}, problems(m))
  end)

  it("reports each broken invariant", function()
    local m = machine()
    local v = m:vendor_lsp("vendor")
    -- a chain whose layered entry is gone (another vendor's, deinstalled from one catalog)
    table.remove(m.catalogs[64], (function() for i, e in ipairs(m.catalogs[64]) do if e.dwCatalogEntryId == v[64].layer then return i end end end)())
    -- a mapping without an entry, in the 32-bit registry view
    m.registry[32]["{AAAAAAAA-0000-4000-8000-000000000001}"] = SCRIPT
    -- a 32-bit entry naming a 64-bit DLL, and an lwsp layer in the 32-bit catalog only, without chains
    local layer = catalog.layer_entry(m.catalogs[32][2], "lwsp bad")
    layer.ProviderId, layer.path, layer.dwCatalogEntryId = "{AAAAAAAA-0000-4000-8000-000000000002}", DLL, 9001
    table.insert(m.catalogs[32], layer)
    m.registry[32][layer.ProviderId] = SCRIPT
    -- an lwsp entry with no script, whose files anyone can change (the old README's C:\lwsp)
    m:put("C:\\lwsp\\lwsp.dll", {arch = 64})
    m:put("C:\\lwsp\\x.lua", {script = LAYER})
    m.files[model.norm("C:\\lwsp")].open = true
    local open = catalog.layer_entry(m.catalogs[64][3], "lwsp open")
    open.ProviderId, open.path, open.dwCatalogEntryId = "{AAAAAAAA-0000-4000-8000-000000000003}", "C:\\lwsp\\lwsp.dll", 9002
    table.insert(m.catalogs[64], open)
    -- a chain naming a layer twice
    local loop = model.copy(m.catalogs[64][2])
    loop.ProviderId, loop.dwCatalogEntryId = "{AAAAAAAA-0000-4000-8000-000000000004}", 9003
    loop.ProtocolChain = {9002, 9002, m.catalogs[64][2].dwCatalogEntryId}
    loop.path = "C:\\lwsp\\lwsp.dll"
    table.insert(m.catalogs[64], loop)
    m.registry[64][open.ProviderId] = "C:\\lwsp\\x.lua"
    local text = table.concat(problems(m), "\n")
    for _, want in ipairs{
      "64: protocol chain naming catalog ids that are gone (" .. v.chain_guid .. ")",
      "32: script mapping with no catalog entry ({AAAAAAAA-0000-4000-8000-000000000001})",
      "32: 32-bit catalog entry naming a 64-bit DLL (" .. DLL .. ") ({AAAAAAAA-0000-4000-8000-000000000002})",
      "32: lwsp layered entry without protocol chains ({AAAAAAAA-0000-4000-8000-000000000002})",
      "32: lwsp layer in the 32-bit catalog only ({AAAAAAAA-0000-4000-8000-000000000002})",
      "64: lwsp files writable by non-administrators: C:\\lwsp can be changed by non-administrators",
      "64: protocol chain naming a layer twice (a layer that would load itself) ({AAAAAAAA-0000-4000-8000-000000000004})",
    } do
      assert.truthy(text:find(want, 1, true), want .. "\nnot in:\n" .. text)
    end
    -- and the mapping's removal makes the lwsp entry's missing script show
    m.registry[64][open.ProviderId] = nil
    text = table.concat(problems(m), "\n")
    assert.truthy(text:find("64: lwsp entry with no script in the 64-bit registry view ({AAAAAAAA-0000-4000-8000-000000000003})", 1, true), text)
  end)
end)

describe("installing into the model's two catalogs", function()
  it("installs into both catalogs, each with its own DLL, mapped in both registry views, and checks clean", function()
    local m = machine()
    local broken = watch(m)
    local r = assert(install(m, {over = {"tcp", "udp"}}))
    for _, view in ipairs{64, 32} do
      local v = r.views[view]
      local ids = {}
      for _, e in ipairs(m.catalogs[view]) do ids[e.dwCatalogEntryId] = e end
      assert.equal(r.guid, ids[v.layer].ProviderId)
      assert.equal(view == 64 and DLL or DLL32, ids[v.layer].path)
      assert.equal(0, ids[v.layer].dwServiceFlags1)
      assert.equal(v.layer, ids[v.chains.tcp].ProtocolChain[1])
      assert.equal(SCRIPT, m.registry[view][r.guid])
      -- the chains' GUIDs are the catalog's, unmapped: the runtime walks the chain to the layer
      assert.is_nil(m.registry[view][ids[v.chains.tcp].ProviderId])
      assert.equal(SCRIPT, (catalog.resolve(ids[v.chains.tcp], ids, m.registry[view])))
    end
    assert.same({}, problems(m))
    assert.same({}, broken)
    -- the mapping came before any entry, and the test starts before the install
    local first_map, first_test, installed
    for i, name in ipairs(m.log) do
      if name:match("^map") and not first_map then first_map = i end
      if name:match("^test_start") and not first_test then first_test = i end
      if name == "install_and_chains" then installed = i end
    end
    assert.truthy(first_map < first_test and first_test < installed)
  end)

  it("writes the configuration in both registry views with the mapping, before any entry, and undoes it on a fault", function()
    local m = machine()
    local r = assert(install(m, {over = {"tcp"}, config = {limit = 10, name = "x"}}))
    local text = require("wsp.host").config_text{limit = 10, name = "x"}
    local configured, installed = {}, nil
    for i, name in ipairs(m.log) do
      if name:match("^set_config") then configured[#configured + 1] = i end
      if name == "install_and_chains" then installed = i end
    end
    assert.equal(2, #configured)
    assert.truthy(configured[2] < installed)
    for _, view in ipairs{64, 32} do assert.equal(text, m.configs[view][r.guid]) end
    assert(catalog.remove(r.guid, m))
    for _, view in ipairs{64, 32} do assert.is_nil(m.configs[view][r.guid]) end
    -- a fault at the 32-bit view's configuration: nothing is left in either view
    local probe = machine()
    local start = probe.calls
    assert(install(probe, {over = {"tcp"}, config = {limit = 1}}))
    local at
    for i = start + 1, #probe.log do if probe.log[i] == "set_config32" then at = i - start end end
    assert.truthy(at, "no set_config32 call")
    local m2 = machine()
    local before = m2:state()
    m2.fail_at = m2.calls + at
    local r2, err = install(m2, {over = {"tcp"}, config = {limit = 1}})
    assert.is_nil(r2)
    assert.equal("set_config32", m2.log[m2.fail_at])
    assert.truthy(err:find("cannot write the configuration", 1, true), err)
    m2.fail_at = nil
    assert.same(before, m2:state())
    -- and a value that cannot be passed is refused before anything is written
    local m3 = machine()
    local before3 = m3:state()
    local r3, err3 = install(m3, {over = {"tcp"}, config = {f = print}})
    assert.is_nil(r3)
    assert.truthy(err3:find("cannot be passed to a provider", 1, true), err3)
    assert.same(before3, m3:state())
  end)

  it("refuses without the 32-bit DLL, with a DLL of the wrong architecture, and with files users can change", function()
    local m = machine()
    local before = m:state()
    local r, err = install(m, {dll32 = false})
    assert.is_nil(r)
    assert.matches("give the i686 lwsp.dll with %-%-dll32", err)
    r, err = install(m, {dll32 = DLL})
    assert.is_nil(r)
    assert.matches("is a 64%-bit DLL; the 32%-bit catalog needs a 32%-bit one", err)
    r, err = install(m, {dll = DLL32})
    assert.is_nil(r)
    assert.matches("is a 32%-bit DLL; the 64%-bit catalog needs a 64%-bit one", err)
    -- the old README's C:\lwsp: users may create and change files there
    m:put("C:\\lwsp\\lwsp.dll", {arch = 64})
    m:put("C:\\lwsp\\lwsp32.dll", {arch = 32})
    m:put("C:\\lwsp\\meter.lua", {script = LAYER})
    m.files[model.norm("C:\\lwsp")].open = true
    r, err = install(m, {dll = "C:\\lwsp\\lwsp.dll", dll32 = "C:\\lwsp\\lwsp32.dll", script = "C:\\lwsp\\meter.lua"})
    assert.is_nil(r)
    assert.matches("refusing to install: C:\\lwsp can be changed by non%-administrators", err)
    assert.matches("%%ProgramFiles%%\\lwsp", err)
    -- a module folder that does not exist where users could create it
    m.files[model.norm("C:\\Scripts\\meter.lua")] = {script = LAYER}
    r, err = install(m, {script = "C:\\Scripts\\meter.lua"})
    assert.is_nil(r)
    assert.matches("C:\\Scripts does not exist and non%-administrators can create it %(in c:%)", err)
    -- a script that does not compile, a wrong protocol, an unknown category
    m:put(DIR .. "\\bad.lua", {script = "return {"})
    assert.matches("does not load", select(2, install(m, {script = DIR .. "\\bad.lua"})))
    assert.matches('unknown protocol "sctp"', select(2, install(m, {over = {"sctp"}})))
    assert.matches('unknown LSP category "everything"', select(2, install(m, {category = "everything"})))
    assert.same(before, m:state())
  end)

  it("sets LSP categories in both catalogs only when asked, never LSP_SYSTEM by default", function()
    local m = machine()
    local r = assert(install(m))
    assert.is_nil(m.categories[64][r.guid])
    local m2 = machine()
    r = assert(install(m2, {category = "inspector,outbound_modify"}))
    assert.equal(0x1 | 0x20, m2.categories[64][r.guid])
    assert.equal(m2.categories[64][r.guid], m2.categories[32][r.guid])
  end)

  it("undoes everything when the test start of either architecture fails, before any entry exists", function()
    local m = machine()
    local before = m:state()
    m.files[model.norm(DLL32)].arch = 64       -- as if the 32-bit DLL had been swapped after the check
    m.dll_arch = function(_, p) return p == DLL32 and 32 or 64 end
    local r, err = install(m)
    assert.is_nil(r)
    assert.matches("the test start of the 32%-bit provider failed", err)
    assert.matches("nothing was left installed", err)
    assert.same(before, m:state())
  end)

  it("test-starts a script under on-failure fail, writing --on-failure passthrough only after both starts passed", function()
    -- a script that raises: with passthrough already in the view, the layer
    -- would pass every call down and the start would open its socket
    local m = machine()
    m:put(DIR .. "\\broken.lua", {script = "error('broken script')"})
    local before = m:state()
    local r, err = install(m, {script = DIR .. "\\broken.lua", on_failure = "passthrough"})
    assert.is_nil(r)
    assert.matches("the test start of the 64%-bit provider failed: WSAEPROVIDERFAILEDINIT", err)
    assert.matches("nothing was left installed", err)
    assert.same(before, m:state())
    -- a script that runs: the choice is in both views, written after the starts and before any entry
    local ok = machine()
    r = assert(install(ok, {on_failure = "passthrough"}))
    local last_test, chose, installed = 0, {}, nil
    for i, name in ipairs(ok.log) do
      if name:match("^test_start") then last_test = i end
      if name:match("^set_on_failure") then chose[#chose + 1] = i end
      if name == "install_and_chains" then installed = i end
    end
    assert.equal(2, #chose)
    assert.truthy(last_test < chose[1] and chose[2] < installed)
    for _, view in ipairs{64, 32} do assert.equal("passthrough", ok:on_failure(view, r.guid)) end
    -- and the model's start does what the runtime does with the choice (spec/21 under Wine)
    ok.registry[32][r.guid] = DIR .. "\\broken.lua"
    ok:put(DIR .. "\\broken.lua", {script = "error('broken script')"})
    local started, said = ok:test_start(32, DLL32, r.guid)
    assert.is_true(started)
    assert.matches("on%-failure passthrough", said)
    assert(catalog.remove(r.guid, ok))
    for _, view in ipairs{64, 32} do assert.equal("fail", ok:on_failure(view, r.guid)) end
  end)

  it("refuses a DLL that imports a DLL the system folder does not hold (the Lua module build needs lua54.dll)", function()
    for _, which in ipairs{DLL, DLL32} do
      local m = machine()
      local before = m:state()
      m.files[model.norm(which)].imports = {"lua54.dll"}
      m:put(DIR .. "\\lua54.dll", {arch = 64})          -- beside it: not where another program's loader looks
      m:put(DIR32 .. "\\lua54.dll", {arch = 32})
      local r, err = install(m)
      assert.is_nil(r)
      assert.matches(("the test start of the %d%%-bit provider failed: "):format(which == DLL and 64 or 32)
        .. which:gsub("%p", "%%%0") .. " imports lua54%.dll, which is not in C:\\Windows\\" .. (which == DLL and "System32" or "SysWOW64"), err)
      assert.matches("provider build with Lua linked in", err, 1, true)
      assert.matches("nothing was left installed", err)
      assert.same(before, m:state())
      -- in the system folder of that architecture it would be found
      m:put(which == DLL and "C:\\Windows\\System32\\lua54.dll" or "C:\\Windows\\SysWOW64\\lua54.dll", {arch = which == DLL and 64 or 32})
      assert(install(m))
    end
  end)

  it("installs on a 32-bit Windows (one catalog) with and without WSCInstallProviderAndChains", function()
    for _, and_chains in ipairs{true, false} do
      local m = machine{bits = 32}
      if not and_chains then m.install_and_chains = false end
      local broken = watch(m)
      local r = assert(install(m, {over = {"tcp", "udp"}}))
      assert.same({32}, m.views)
      assert.equal(r.views[32].chains.tcp, m.catalogs[32][1].dwCatalogEntryId)
      assert.same({}, problems(m))
      assert.same({}, broken)
      assert(catalog.remove("meter", m))
      assert.same({}, problems(m))
    end
  end)
end)

-- every failure point of fn on a fresh machine: a fault at each call, then the
-- process dying at each call (followed by lwsp-catalog repair)
local function every_failure_point(setup, fn, expect)
  local m0 = setup()
  local n = count_calls(function() assert(fn(m0)) end, m0)
  assert.truthy(n > 5)
  local points = 0
  for k = 1, n do
    for _, how in ipairs{"fail", "crash"} do
      local m = setup()
      local before = m:state()
      local broken = watch(m)
      local start = m.calls
      if how == "fail" then m.fail_at = start + k else m.crash_at = start + k end
      local ok, r, err = pcall(fn, m)
      m.fail_at, m.crash_at = nil, nil
      if how == "crash" then
        assert.is_false(ok, "call " .. k)
        assert.equal(model.CRASH, r)
        local fixed = assert(catalog.repair(m))
        assert.same({}, fixed.left, ("repair after a crash at call %d (%s)"):format(k, m.log[start + k]))
      else
        assert.is_true(ok, tostring(r))
        if r == nil then
          assert.is_string(err)
          if expect.says then assert.matches(expect.says, err) end
          if expect.undo_restores then assert.same(before, m:state(), "after a fault at call " .. k .. " (" .. m.log[start + k] .. ")") end
        end
        if expect.repair_after_fault then assert(catalog.repair(m)) end
      end
      assert.same({}, problems(m), ("%s at call %d (%s)"):format(how, k, m.log[start + k]))
      assert.same({}, broken, ("%s at call %d (%s): networking broken in between"):format(how, k, m.log[start + k]))
      points = points + 1
    end
  end
  return points, n
end

describe("every failure point", function()
  it("of an install leaves the machine as it was, or repairable to a clean check, with networking at every step", function()
    local points, n = every_failure_point(machine, function(m) return install(m) end,
      {undo_restores = true, says = "nothing was l?e?f?t? ?installed"})
    assert.equal(2 * n, points)
  end)

  it("of an install on a machine with another vendor's LSP, which is left as it was", function()
    local function setup() local m = machine() m:vendor_lsp("vendor") return m end
    every_failure_point(setup, function(m) return install(m) end, {undo_restores = true, says = "nothing was l?e?f?t? ?installed"})
  end)

  it("of an install whose WSCInstallProviderAndChains64_32 writes the 64-bit catalog and fails on the 32-bit one", function()
    local m = machine()
    local before = m:state()
    m.partial = true
    local r, err = install(m)
    assert.is_nil(r)
    assert.matches("WSCInstallProviderAndChains failed", err)
    assert.matches("nothing was left installed", err)
    assert.same(before, m:state())
    assert.same({}, problems(m))
  end)

  it("of a remove leaves the machine repairable to a clean check, with networking at every step", function()
    local function setup() local m = machine() assert(install(m)) return m end
    every_failure_point(setup, function(m) return catalog.remove("meter", m) end, {repair_after_fault = true})
  end)

  it("of a remove under another vendor's LSP layered over lwsp's chains", function()
    local function setup()
      local m = machine()
      local r = assert(install(m))
      local ids = {}
      for _, e in ipairs(m.catalogs[64]) do ids[e.dwCatalogEntryId] = e end
      m:vendor_lsp("vendor", ids[r.views[64].chains.tcp].ProviderId)
      return m
    end
    every_failure_point(setup, function(m) return catalog.remove("meter", m) end, {repair_after_fault = true})
  end)
end)

describe("an undo that cannot finish", function()
  it("says what is left instead of \"nothing was left installed\", and repair takes it out", function()
    local m = machine()
    local before = m:state()
    -- the 32-bit test start fails (found on a clean install's log), and so
    -- do both of the undo's tries to drop the 64-bit mapping (found on the logs of those failures)
    local function index(log, name, after)
      for i = (after or 0) + 1, #log do if log[i] == name then return i end end
    end
    local clean = machine()
    assert(install(clean))
    local test32 = assert(index(clean.log, "test_start32"))
    local once = machine()
    once.fail_at = test32
    assert.is_nil((install(once)))
    local unmap = assert(index(once.log, "unmap64", test32))
    -- the undo tries once more: that fails too
    local twice = machine()
    twice.fail_at = {[test32] = true, [unmap] = true}
    assert.is_nil((install(twice)))
    local again = assert(index(twice.log, "unmap64", unmap))
    m.fail_at = {[test32] = true, [unmap] = true, [again] = true}
    local r, err
    r, err = install(m)
    m.fail_at = nil
    assert.is_nil(r)
    assert.is_nil(err:find("nothing was left installed", 1, true))
    assert.matches("the undo could not take everything out %(the script mapping in the 64%-bit registry view", err)
    assert.matches("run lwsp%-catalog repair", err)
    assert.truthy(#problems(m) > 0)
    assert.same({}, assert(catalog.repair(m)).left)
    assert.same(before, m:state())
  end)
end)

describe("removing and repairing in the model", function()
  it("removes from both catalogs and registry views, leaving the machine as before", function()
    local m = machine()
    local before = m:state()
    local r = assert(install(m))
    local removed = assert(catalog.remove("meter", m))
    assert.equal(r.guid, removed.removed[#removed.removed])
    assert.same(before, m:state())
  end)

  it("rewrites another vendor's chains that ran through the removed layer, as the LSP sample does", function()
    local m = machine()
    local r = assert(install(m))
    local ids = {}
    for _, e in ipairs(m.catalogs[64]) do ids[e.dwCatalogEntryId] = e end
    local tcp = ids[r.views[64].chains.tcp]
    local v = m:vendor_lsp("vendor", tcp.ProviderId)
    local vchain = m.catalogs[64][1]
    assert.same({v[64].layer, r.views[64].layer, tcp.ProtocolChain[2]}, vchain.ProtocolChain)
    local removed = assert(catalog.remove(r.guid, m))
    assert.truthy(table.concat(removed.notes, "\n"):find("rewrote the chains of " .. v.chain_guid, 1, true))
    local after = m.catalogs[64][1]
    assert.equal(vchain.dwCatalogEntryId, after.dwCatalogEntryId)
    assert.same({v[64].layer, tcp.ProtocolChain[2]}, after.ProtocolChain)
    assert.same({}, problems(m))
  end)

  it("repairs a layer deinstalled from the 64-bit catalog alone (the old remove), and dangling chains", function()
    local m = machine()
    local r = assert(install(m))
    assert(m:deinstall(64, r.guid))            -- what WSCDeinstallProvider alone did
    assert.truthy(#problems(m) > 0)
    local fixed = assert(catalog.repair(m))
    assert.same({}, fixed.left)
    assert.same({}, problems(m))
    for _, view in ipairs{64, 32} do
      for _, e in ipairs(m.catalogs[view]) do assert.is_falsy(model.norm(e.path):match("lwsp%.dll$")) end
      assert.same({}, m.registry[view])
    end
  end)

  it("rewrites another vendor's chain that names a deleted id, or says what only netsh winsock reset repairs", function()
    local m = machine()
    local v = m:vendor_lsp("vendor")
    -- the vendor's chain over a second layer that was deinstalled (the classic corruption)
    local chain = m.catalogs[64][1]
    table.insert(chain.ProtocolChain, 2, 4242)
    local fixed = assert(catalog.repair(m))
    assert.same({}, fixed.left)
    assert.same({v[64].layer, chain.ProtocolChain[3]}, m.catalogs[64][1].ProtocolChain)
  end)
end)

describe("lwsp-catalog over the model", function()
  local function run(m, argv)
    local out = {}
    local status = catalog.main(argv, function(l) out[#out + 1] = l end, m)
    return status, table.concat(out, "\n")
  end

  it("stages the files into %ProgramFiles%\\lwsp, installs, lists both catalogs, checks, removes", function()
    local m = model.new()
    m:put("C:\\Users\\bob\\Downloads\\x64\\lwsp.dll", {arch = 64})
    m:put("C:\\Users\\bob\\Downloads\\x64\\lua54.dll", {arch = 64})
    m:put("C:\\Users\\bob\\Downloads\\x64\\lwsp_native.dll", {arch = 64})
    m:put("C:\\Users\\bob\\Downloads\\x86\\lwsp.dll", {arch = 32})
    m:put("C:\\Users\\bob\\meter.lua", {script = LAYER})
    m.files[model.norm("C:\\Users\\bob")].open = true
    local mods = "C:\\Users\\bob\\Downloads\\lua\\wsp"
    for _, mod in ipairs(catalog.MODULES) do m:put(mods .. "\\" .. mod .. ".lua", {script = "return {}"}) end
    local status, text = run(m, {"install", "C:\\Users\\bob\\meter.lua", "--name", "meter", "--over", "tcp,udp",
      "--dll", "C:\\Users\\bob\\Downloads\\x64\\lwsp.dll", "--dll32", "C:\\Users\\bob\\Downloads\\x86\\lwsp.dll",
      "--modules", mods})
    assert.equal(0, status, text)
    assert.matches("in the 64%-bit catalog: layered entry %d+, chains tcp=%d+ udp=%d+", text)
    assert.matches("in the 32%-bit catalog: layered entry %d+, chains tcp=%d+ udp=%d+", text)
    assert.equal(64, m:dll_arch(DIR .. "\\lwsp.dll"))
    assert.equal(32, m:dll_arch(DIR32 .. "\\lwsp.dll"))
    -- what ships: the native base beside the DLL, never lua54.dll (a provider that
    -- needs it is refused whatever sits beside it)
    assert.is_true(m:exists(DIR .. "\\lwsp_native.dll"))
    assert.is_false(m:exists(DIR .. "\\lua54.dll"))
    assert.is_true(m:exists(DIR32 .. "\\lua\\wsp\\layered.lua"))
    for _, view in ipairs{64, 32} do
      for g, s in pairs(m.registry[view]) do assert.equal(DIR .. "\\meter.lua", s, g) end
    end
    status, text = run(m, {"list"})
    assert.equal(0, status)
    assert.matches("64%-bit: {[%x-]+}  lwsp meter", text)
    assert.matches("32%-bit: {[%x-]+}  lwsp meter", text)
    assert.same({0, "the catalog is consistent"}, {run(m, {"check"})})
    status, text = run(m, {"remove", "meter"})
    assert.equal(0, status, text)
    assert.same({0, "the catalog is consistent"}, {run(m, {"check"})})
    assert.same({0, "nothing to repair"}, {run(m, {"repair"})})
  end)

  -- The command lines README documents, read from README itself: a drift
  -- between them and what lwsp-catalog takes fails here.
  local function read(path)
    local f = assert(io.open(H.root .. "/" .. path, "rb"))
    local t = f:read("a")
    f:close()
    return t
  end
  local function commands(block)
    local out = {}
    block = block:gsub("%s*%^\n%s*", " ")          -- cmd.exe's line continuation
    for line in block:gmatch("[^\n]+") do
      local words = {}
      for w in line:gmatch("%S+") do words[#words + 1] = w end
      if words[2] == "bin\\lwsp-catalog" then out[#out + 1] = {exe = words[1], argv = {table.unpack(words, 3)}} end
    end
    return out
  end
  local function readme_commands()
    local section = assert(read("README.md"):match("\n### Install a provider, watch it, remove it\n(.-)\n##"))
    return commands(assert(section:match("```bat\n(.-)```"))), section
  end

  it("runs README's install, list, check, remove and repair command lines as written", function()
    local cmds = readme_commands()
    local verbs = {}
    for i, c in ipairs(cmds) do verbs[i] = c.argv[1] end
    assert.same({"install", "list", "check", "remove", "repair"}, verbs)
    -- the files they name from the checkout are there
    assert.truthy(io.open(H.root .. "/bin/lwsp-catalog", "rb"))
    local install = cmds[1].argv
    local opt = {}
    for i = 3, #install - 1 do if install[i]:match("^%-%-") then opt[install[i]] = install[i + 1] end end
    assert.truthy(io.open(H.root .. "/" .. install[2]:gsub("\\", "/"), "rb"), install[2])
    -- the provider as it ships, for each architecture, and a machine to install it on
    assert.matches("\\provider\\lwsp%.dll$", opt["--dll"])
    assert.matches("\\provider\\lwsp%.dll$", opt["--dll32"])
    local m = model.new()
    for dll, arch in pairs{[opt["--dll"]] = 64, [opt["--dll32"]] = 32} do
      local dir = dll:match("^(.*)\\")
      m:put(dll, {arch = arch})
      m:put(dir .. "\\lwsp_native.dll", {arch = arch})
      for _, mod in ipairs(catalog.MODULES) do m:put(dir .. "\\lua\\wsp\\" .. mod .. ".lua", {script = "return {}"}) end
    end
    m:put(install[2], {script = LAYER})
    for _, c in ipairs(cmds) do
      local status, text = run(m, c.argv)
      assert.equal(0, status, table.concat(c.argv, " ") .. ": " .. text)
      if c.argv[1] == "install" then
        for _, view in ipairs{64, 32} do
          local dir = view == 64 and DIR or DIR32
          assert.equal(view, m:dll_arch(dir .. "\\lwsp.dll"))
          assert.is_true(m:exists(dir .. "\\lwsp_native.dll"))
          assert.is_true(m:exists(dir .. "\\lua\\wsp\\layered.lua"))
          for _, script in pairs(m.registry[view]) do assert.equal(DIR .. "\\meter.lua", script) end
        end
        assert.matches("in the 32%-bit catalog: layered entry %d+, chains tcp=%d+ udp=%d+", text)
      elseif c.argv[1] == "list" then
        assert.matches("64%-bit: {[%x-]+}  lwsp meter", text)
        assert.matches("32%-bit: {[%x-]+}  lwsp meter", text)
      elseif c.argv[1] == "check" then
        assert.equal("the catalog is consistent", text)
      elseif c.argv[1] == "remove" then
        assert.same({}, problems(m))
        for _, view in ipairs{64, 32} do assert.same({}, m.registry[view]) end
      end
    end
  end)

  it("documents the same command in bin/lwsp-catalog, and the options it takes in docs/api.md and README", function()
    local cmds, section = readme_commands()
    local bin = commands((assert(read("bin/lwsp-catalog"):match("^(.-)\nlocal ")):gsub("\n%-%- *", "\n")))
    assert.same(cmds[1], bin[1])
    assert.equal("install", bin[1].argv[1])
    -- the options install takes: USAGE's, and no others
    local function options(text)
      local t = {}
      for o in text:gmatch("`%-%-([%w%-]+)") do t[o] = true end
      for o in text:gmatch("%[%-%-([%w%-]+)") do t[o] = true end
      return t
    end
    local api = assert(read("docs/api.md"):match("\n`lwsp%-catalog install SCRIPT (.-)`list`"))
    assert.same(catalog.OPTIONS, options(api))
    assert.same(catalog.OPTIONS, options(assert(section:match("\n`install SCRIPT` takes (.-)\n\n"))))
    local status, text = run(model.new(), {"install", "x.lua", "--frobnicate", "1"})
    assert.equal(2, status)
    assert.matches("unknown option --frobnicate", text, 1, true)
  end)

  it("refuses an in-place install from a folder users can change, and check exits 1 on a broken catalog", function()
    local m = machine()
    m:put("C:\\lwsp\\meter.lua", {script = LAYER})
    m.files[model.norm("C:\\lwsp")].open = true
    local status, text = run(m, {"install", "C:\\lwsp\\meter.lua", "--in-place", "--dll", DLL, "--dll32", DLL32})
    assert.equal(1, status)
    assert.matches("refusing to install: C:\\lwsp can be changed by non%-administrators", text)
    m.registry[64]["{AAAAAAAA-0000-4000-8000-000000000009}"] = SCRIPT
    status, text = run(m, {"check"})
    assert.equal(1, status)
    assert.matches("problem: 64%-bit catalog: script mapping with no catalog entry", text)
  end)
end)

describe("staging an install's files on this machine's file system", function()
  it("copies the DLL, what sits beside it, lwsp's wsp modules and the script into new folders", function()
    local sep = H.windows and "\\" or "/"
    local src = H.tmp .. sep .. "src"
    H.mkdir(src)
    for _, name in ipairs{"lwsp.dll", "lua54.dll", "lwsp_native.dll"} do
      local f = assert(io.open(src .. sep .. name, "wb"))
      f:write("MZ" .. name)
      f:close()
    end
    local script = H.script(LAYER)
    local dir = H.tmp .. sep .. "Program Files" .. sep .. "lwsp"
    local r = assert(catalog.stage(catalog.host(), {dll = src .. sep .. "lwsp.dll", dir = dir, script = script,
      modules = H.root .. sep .. "lua" .. sep .. "wsp"}))
    assert.equal(dir .. sep .. "lwsp.dll", r.dll)
    local function read(p) local f = assert(io.open(p, "rb")) local t = f:read("a") f:close() return t end
    assert.equal("MZlwsp.dll", read(r.dll))
    assert.equal("MZlwsp_native.dll", read(dir .. sep .. "lwsp_native.dll"))
    assert.is_nil(io.open(dir .. sep .. "lua54.dll", "rb"))
    assert.equal(LAYER, read(r.script))
    for _, m in ipairs(catalog.MODULES) do
      assert.equal(read(H.root .. sep .. "lua" .. sep .. "wsp" .. sep .. m .. ".lua"),
        read(dir .. sep .. "lua" .. sep .. "wsp" .. sep .. m .. ".lua"))
    end
    -- a source that is not there: nothing half-said
    local none, err = catalog.stage(catalog.host(), {dll = src .. sep .. "missing.dll", dir = dir, script = script})
    assert.is_nil(none)
    assert.matches("cannot copy .*missing%.dll", err)
  end)
end)

describe("reading a DLL's architecture from its PE header", function()
  local function pe(machine_id)
    local mz = "MZ" .. ("\0"):rep(58) .. string.pack("<I4", 64)
    return mz .. "PE\0\0" .. string.pack("<I2", machine_id) .. ("\0"):rep(64)
  end
  it("tells AMD64 and ARM64 (64) from i386 (32), and refuses what is not a PE image", function()
    assert.equal(64, catalog.pe_arch(pe(0x8664)))
    assert.equal(64, catalog.pe_arch(pe(0xAA64)))
    assert.equal(32, catalog.pe_arch(pe(0x14c)))
    assert.matches("unknown machine 0x0200", select(2, catalog.pe_arch(pe(0x200))))
    assert.matches("no MZ header", select(2, catalog.pe_arch("\127ELF" .. ("\0"):rep(100))))
    assert.matches("no PE signature", select(2, catalog.pe_arch(("MZ" .. ("\0"):rep(58) .. string.pack("<I4", 64)) .. "XX\0\0" .. ("\0"):rep(64))))
  end)

  -- a PE image with one section holding an import directory that names `dlls`
  local function image(bits, dlls)
    local function pad(t, n) return t .. ("\0"):rep(n - #t) end
    local ddoff = bits == 64 and 112 or 96
    local optsize = ddoff + 16 * 8
    local opt = string.pack("<I2", bits == 64 and 0x20b or 0x10b)
    local dd = ("\0"):rep(8) .. string.pack("<I4I4", #dlls > 0 and 0x1000 or 0, 20 * (#dlls + 1))
    opt = pad(pad(opt, ddoff) .. dd, optsize)
    local coff = string.pack("<I2I2I4I4I4I2I2", bits == 64 and 0x8664 or 0x14c, 1, 0, 0, 0, optsize, 0)
    local section = pad(".idata", 8) .. string.pack("<I4I4I4I4", 0x200, 0x1000, 0x200, 0x400) .. ("\0"):rep(16)
    local head = pad(pad("MZ", 60) .. string.pack("<I4", 64), 64) .. "PE\0\0" .. coff .. opt .. section
    local idata, names = "", ""
    for i, d in ipairs(dlls) do
      idata = idata .. string.pack("<I4I4I4I4I4", 0, 0, 0, 0x1100 + #names, 0)
      names = names .. d .. "\0"
      assert(i < 8)
    end
    idata = pad(pad(idata, 0x100) .. names, 0x200)
    return pad(head, 0x400) .. idata
  end

  it("reads the DLLs a PE image imports (what another program's loader must find), PE32+ and PE32", function()
    for _, bits in ipairs{64, 32} do
      assert.equal(bits, catalog.pe_arch(image(bits, {})))
      assert.same({"kernel32.dll", "lua54.dll"}, catalog.pe_imports(image(bits, {"KERNEL32.dll", "lua54.dll"})))
      assert.same({"ws2_32.dll"}, catalog.pe_imports(image(bits, {"WS2_32.dll"})))
      assert.same({}, catalog.pe_imports(image(bits, {})))
    end
    assert.matches("no MZ header", select(2, catalog.pe_imports("\127ELF" .. ("\0"):rep(100))))
    assert.matches("truncated import directory", select(2, catalog.pe_imports(image(64, {"x.dll"}):sub(1, 0x400))))
  end)
end)

-- The runtime's side of the install: lwsp finds its script and the layer below
-- from the ProtocolChain it is given, through lwsp's host with real loopback TCP.
describe("the runtime walks the protocol chain it is given", function()
  local host, lwsp = H.host, H.lwsp
  local LOG_LAYER = [[
local lwsp = require "lwsp"
local layered = require "wsp.layered"
local P = layered.new()
P.description = "walked layer"
local socket = P.socket
function P.socket(s, af, type, protocol, info, ...)
  if FORGE then
    local forged = {}
    for k, v in pairs(info) do forged[k] = v end
    forged.dwCatalogEntryId = 999999     -- a chain the catalog no longer holds
    info = forged
  end
  lwsp.log("walked: socket on chain " .. table.concat(info.ProtocolChain, ","))
  return socket(s, af, type, protocol, info, ...)
end
function P.send(s, data, ...)
  lwsp.log("walked layer carried " .. #data .. " bytes")
  return P.base.send(s, data, ...)
end
return P
]]
  local native, made
  before_each(function()
    host.cleanup()
    native = host.install_native()
    made = {}
  end)
  after_each(function()
    host.cleanup()
    for _, id in ipairs(made) do pcall(host.remove, id) end
    for _, id in ipairs(native.ids) do pcall(host.remove, id) end
  end)

  local function traffic(chain_id)
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 4))
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, chain_id))
    assert(host.connect(c, host.getsockname(l)))
    local a = assert(host.accept(l))
    local mark = H.mark()
    assert.equal(6, host.send(c, "walked"))
    assert.equal("walked", host.recv(a, 100))
    assert.truthy(H.find_log(mark, "walked layer carried 6 bytes", true))
    for _, s in ipairs{c, a, l} do host.close(s) end
  end

  -- an lwsp layer (mapped GUID) and a chain over it whose first layer is
  -- another provider's (an unmapped GUID, loaded as lwsp's DLL here since the
  -- host starts the chain's own DLL): {foreign, lwsp, native TCP}
  local function under_foreign(src)
    local guid = H.lwsp.guid()
    assert(lwsp.registry.set(guid, H.script(src)))
    local function entry(g, chain, name)
      local e = host.protocol_info{guid = g, af = wsp.AF_INET, type = wsp.SOCK_STREAM, name = name}
      e.ProtocolChain = chain
      return e
    end
    local lwsp_layer = host.install(entry(guid, {}, "lwsp layer"), lwsp.path(), "layer")
    local foreign = host.install(entry(H.lwsp.guid(), {}, "foreign layer"), lwsp.path(), "layer")
    local chain = host.install(entry(H.lwsp.guid(), {foreign, lwsp_layer, native.tcp}, "foreign over lwsp"),
      lwsp.path(), "chain")
    made = {chain, foreign, lwsp_layer}
    return chain, guid
  end

  it("runs lwsp's script when started with another LSP's chain entry that has lwsp below it", function()
    local chain = under_foreign(LOG_LAYER:gsub("if FORGE", "if false"))
    traffic(chain)
  end)

  it("opens the layer below from the chain WSPSocket was given, not from the catalog as it is now", function()
    local chain = under_foreign(LOG_LAYER:gsub("if FORGE", "if true"))
    local mark = H.mark()
    traffic(chain)
    assert.truthy(H.find_log(mark, "walked: socket on chain", true))
  end)

  it("refuses a chain whose next layer is the same provider under another entry", function()
    local guid = H.lwsp.guid()
    assert(lwsp.registry.set(guid, H.script(LOG_LAYER:gsub("if FORGE", "if false"))))
    local function layer(name)
      local info = host.protocol_info{guid = guid, af = wsp.AF_INET, type = wsp.SOCK_STREAM, name = name}
      info.ProtocolChain = {}
      return host.install(info, lwsp.path(), "layer")
    end
    local a, b = layer("first"), layer("second")
    local chain = host.protocol_info{guid = H.lwsp.guid(), af = wsp.AF_INET, type = wsp.SOCK_STREAM, name = "self"}
    chain.ProtocolChain = {a, b, native.tcp}
    local id = host.install(chain, lwsp.path(), "chain")
    made = {id, a, b}
    local mark = H.mark()
    local s, _, code = host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, id)
    assert.is_nil(s)
    assert.equal(wsp.WSAEPROVIDERFAILEDINIT, code)
    assert.truthy(H.find_log(mark, "refusing to load it into itself", true))
  end)

  it("refuses a chain that names a layer twice (a layer that would load itself)", function()
    local guid = H.lwsp.guid()
    assert(lwsp.registry.set(guid, H.script(LOG_LAYER:gsub("if FORGE", "if false"))))
    local info = host.protocol_info{guid = guid, af = wsp.AF_INET, type = wsp.SOCK_STREAM, name = "lwsp layer"}
    info.ProtocolChain = {}
    local layer = host.install(info, lwsp.path(), "layer")
    local loop = host.protocol_info{guid = H.lwsp.guid(), af = wsp.AF_INET, type = wsp.SOCK_STREAM, name = "loop"}
    loop.ProtocolChain = {layer, layer, native.tcp}
    local id = host.install(loop, lwsp.path(), "chain")
    made = {id, layer}
    local mark = H.mark()
    local s, _, code = host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, id)
    assert.is_nil(s)
    assert.equal(wsp.WSAEPROVIDERFAILEDINIT, code)
    assert.truthy(H.find_log(mark, "names catalog entry " .. layer .. " twice", true))
  end)
end)
