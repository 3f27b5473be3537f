--- wsp.catalog: installs Lua layered providers into a Winsock catalog, lists
-- lwsp's entries, removes them, and repairs what a broken install left.
--
-- A catalog is a backend: `catalog.wsc()` is Windows' own (through
-- lwsp.wsc: WSCEnumProtocols, WSCInstallProviderAndChains where ws2_32 has
-- it, else WSCInstallProvider + WSCWriteProviderOrder, WSCDeinstallProvider),
-- `catalog.host()` is lwsp's host in this process (the same steps against
-- lwsp.host, so the whole install is exercised where Windows' is not).
--
-- An install is one hidden layered entry (ChainLen 0, the provider's GUID)
-- and, over each chosen base protocol, a protocol chain {layer, base...}
-- under a second GUID; both GUIDs map to the script in lwsp's registry, the
-- chains go first in the catalog order, and every step is checked by
-- enumerating the catalog again.  Any failure undoes what was done.
-- @module wsp.catalog
local lwsp = require "lwsp"
local wsp = require "wsp"

local catalog = {}

--- The base protocols a layer can go over.
catalog.KINDS = {
  tcp = {af = wsp.AF_INET, type = wsp.SOCK_STREAM, protocol = wsp.IPPROTO_TCP},
  udp = {af = wsp.AF_INET, type = wsp.SOCK_DGRAM, protocol = wsp.IPPROTO_UDP},
  tcp6 = {af = wsp.AF_INET6, type = wsp.SOCK_STREAM, protocol = wsp.IPPROTO_TCP},
  udp6 = {af = wsp.AF_INET6, type = wsp.SOCK_DGRAM, protocol = wsp.IPPROTO_UDP},
}
local KIND_ORDER = {"tcp", "udp", "tcp6", "udp6"}

local WSAPROTOCOL_LEN = 255

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = type(v) == "table" and copy(v) or v end
  return c
end

-- "tcp", "udp", "tcp6" or "udp6" for an entry of that family, type and protocol
local function kind_of(e)
  for k, v in pairs(catalog.KINDS) do
    if e.iAddressFamily == v.af and e.iSocketType == v.type and e.iProtocol == v.protocol then return k end
  end
end

-- The catalog order with the entries `first` (ids) ahead of the rest, which
-- keep their order; and the set of those first.
local function order_first(entries, first)
  local ids, set = {}, {}
  for i, id in ipairs(first) do ids[i] = id set[id] = true end
  for _, e in ipairs(entries) do if not set[e.dwCatalogEntryId] then ids[#ids + 1] = e.dwCatalogEntryId end end
  return ids, set
end

-- ------------------------------------------------------------------------------------------
-- backends

--- Windows' own catalog, through lwsp.wsc.
-- @tparam[opt] table o {both = true: the 64- and the 32-bit catalogs (64-bit process),
--   dll =, dll32 = the DLL paths (default: lwsp.dll beside this module)}
function catalog.wsc(o)
  o = o or {}
  local wsc = lwsp.wsc
  local b = {name = "wsc", available = wsc.available, dll = o.dll or lwsp.path(), dll32 = o.dll32}
  b.views = o.both and {64, 32} or {0}
  function b.enum(view) return wsc.enum(view) end
  function b.install(guid, path, infos) return wsc.install(guid, path, infos, o.both) end
  if wsc.has(wsc.bits == 64 and "WSCInstallProviderAndChains64_32" or "WSCInstallProviderAndChains") then
    function b.install_and_chains(guid, path, name, flags, bases)
      return wsc.install_and_chains(guid, path, b.dll32, name, flags, bases)
    end
  end
  function b.write_order(ids, view) return wsc.write_order(ids, view) end
  function b.deinstall(guid, view) return wsc.deinstall(guid, view) end
  function b.map(guid, script, view) return lwsp.registry.set(guid, script, view ~= 0 and view or nil) end
  function b.unmap(guid, view) return lwsp.registry.remove(guid, view ~= 0 and view or nil) end
  function b.mappings(view) return lwsp.registry.list(view ~= 0 and view or nil) end
  if o.both and wsc.bits ~= 64 then
    b.available, b.why = false, "only a 64-bit process reaches both catalogs; run the 64-bit lua.exe"
  elseif not wsc.available then
    b.why = "no Winsock catalog on this system (lwsp's own host has its catalog: wsp.catalog.host())"
  end
  return b
end

--- lwsp's host's catalog in this process: the same install, list, remove and
-- repair, with the host playing ws2_32.
-- @tparam[opt] table o {and_chains = false: install the way ws2_32s without
--   WSCInstallProviderAndChains do}
function catalog.host(o)
  o = o or {}
  local h = lwsp.host
  local b = {name = "host", available = true, dll = o.dll or lwsp.path(), views = {0}}
  function b.enum() return h.catalog() end
  local function kind(info)
    local n = #(info.ProtocolChain or {})
    return n == 0 and "layer" or n == 1 and "base" or "chain"
  end
  -- all or nothing, as WSCInstallProvider
  function b.install(guid, path, infos)
    local done = {}
    for _, info in ipairs(infos) do
      local i = copy(info)
      i.ProviderId, i.dwCatalogEntryId, i.path = guid, nil, nil
      local ok, id = pcall(h.install, i, path, kind(i))
      if not ok or not id then
        for _, d in ipairs(done) do h.remove(d) end
        return nil, "WSAEINVAL: " .. tostring(id), wsp.WSAEINVAL
      end
      done[#done + 1] = id
    end
    return true
  end
  if o.and_chains ~= false then
    -- WSCInstallProviderAndChains as documented: the hidden entry under guid,
    -- a chain over each base, the chains first in the order.
    function b.install_and_chains(guid, path, name, flags, bases)
      local layer = catalog.layer_entry(bases[1], name)
      layer.dwServiceFlags1 = flags
      local ok, err, code = b.install(guid, path, {layer})
      if not ok then return nil, err, code end
      local id
      for _, e in ipairs(h.catalog()) do if e.ProviderId == guid then id = e.dwCatalogEntryId end end
      local chain_guid, chains = lwsp.guid(), {}
      for i, base in ipairs(bases) do chains[i] = catalog.chain_entry(base, id, chain_guid, name) end
      ok, err, code = b.install(chain_guid, path, chains)
      if not ok then b.deinstall(guid) return nil, err, code end
      local all, first = h.catalog(), {}
      for _, e in ipairs(all) do if e.ProviderId == chain_guid then first[#first + 1] = e.dwCatalogEntryId end end
      h.order((order_first(all, first)))
      return id
    end
  end
  function b.write_order(ids) return h.order(ids) end
  function b.deinstall(guid)
    local found
    for _, e in ipairs(h.catalog()) do
      if e.ProviderId == guid then h.remove(e.dwCatalogEntryId) found = true end
    end
    if not found then return nil, "WSAEINVAL: no provider with that GUID", wsp.WSAEINVAL end
    return true
  end
  function b.map(guid, script) return lwsp.registry.set(guid, script) end
  function b.unmap(guid) return lwsp.registry.remove(guid) end
  function b.mappings() return lwsp.registry.list() end
  return b
end

-- ------------------------------------------------------------------------------------------
-- building the entries

--- The first base entry (ChainLen 1, not hidden) for a kind, in catalog order.
function catalog.find_base(entries, kind)
  local k = catalog.KINDS[kind]
  if not k then return nil end
  for _, e in ipairs(entries) do
    if #e.ProtocolChain == 1 and e.iAddressFamily == k.af and e.iSocketType == k.type
        and e.iProtocol == k.protocol and (e.dwProviderFlags & wsp.PFL_HIDDEN) == 0 then
      return e
    end
  end
end

local function truncate(s) return #s > WSAPROTOCOL_LEN and s:sub(1, WSAPROTOCOL_LEN) or s end

--- The hidden layered entry (ChainLen 0) of a layer named `name`, modelled on
-- the first base it goes over.
function catalog.layer_entry(base, name)
  local e = copy(base)
  e.dwCatalogEntryId, e.path = nil, nil
  e.ProtocolChain = {}
  e.dwServiceFlags1 = e.dwServiceFlags1 & ~wsp.XP1_IFS_HANDLES   -- lwsp's handles are not IFS
  e.iSocketType, e.iProtocol, e.iProtocolMaxOffset = 0, 0, 0
  e.dwProviderFlags = (e.dwProviderFlags | wsp.PFL_HIDDEN) & ~wsp.PFL_MATCHES_PROTOCOL_ZERO
  e.szProtocol = truncate(name)
  return e
end

--- The protocol chain {layer, base's chain...} of a layer over `base`.
function catalog.chain_entry(base, layer_id, guid, name)
  local e = copy(base)
  e.dwCatalogEntryId, e.path = nil, nil
  e.ProviderId = guid
  e.ProtocolChain = {layer_id}
  if #base.ProtocolChain == 1 then
    -- a base entry: itself (Windows leaves its ChainEntries unset)
    e.ProtocolChain[2] = base.dwCatalogEntryId
  else
    for _, id in ipairs(base.ProtocolChain) do e.ProtocolChain[#e.ProtocolChain + 1] = id end
  end
  e.dwServiceFlags1 = e.dwServiceFlags1 & ~wsp.XP1_IFS_HANDLES
  e.dwProviderFlags = e.dwProviderFlags & ~wsp.PFL_HIDDEN
  e.szProtocol = truncate(("%s over [%s]"):format(name, base.szProtocol))
  return e
end

---------------------------------------------------------------------------------------------
-- reading a catalog

local function by_id(entries)
  local t = {}
  for _, e in ipairs(entries) do t[e.dwCatalogEntryId] = e end
  return t
end

local function same_path(a, b)
  if not a or not b then return false end
  if package.config:sub(1, 1) == "\\" then a, b = a:lower():gsub("/", "\\"), b:lower():gsub("/", "\\") end
  return a == b
end

--- lwsp's entries in a catalog: each installed layer with its chains and
-- script, and what is broken.
-- @return {layers = {{guid, name, id, script, chains = {{guid, id, kind, over}}}},
--   problems = {{what, guid, id}}}
function catalog.inspect(b, view)
  local entries, err = b.enum(view)
  if not entries then return nil, err end
  local maps = b.mappings(view) or {}
  local ids = by_id(entries)
  local out = {layers = {}, problems = {}}
  local ours = {}                     -- GUIDs in the catalog that are lwsp's
  for _, e in ipairs(entries) do
    if maps[e.ProviderId] or same_path(e.path, b.dll) or same_path(e.path, b.dll32) then ours[e.ProviderId] = true end
  end
  local layers = {}
  for _, e in ipairs(entries) do
    if ours[e.ProviderId] and #e.ProtocolChain == 0 then
      local l = {guid = e.ProviderId, name = e.szProtocol, id = e.dwCatalogEntryId, script = maps[e.ProviderId], chains = {}}
      layers[e.dwCatalogEntryId] = l
      out.layers[#out.layers + 1] = l
      if not l.script then out.problems[#out.problems + 1] = {what = "layered entry without a script", guid = l.guid, id = l.id} end
    end
  end
  local seen = {}
  for _, e in ipairs(entries) do
    if #e.ProtocolChain >= 2 and (ours[e.ProviderId] or layers[e.ProtocolChain[1]]) then
      local l = layers[e.ProtocolChain[1]]
      seen[e.ProviderId] = true
      local base = ids[e.ProtocolChain[#e.ProtocolChain]]
      local c = {guid = e.ProviderId, id = e.dwCatalogEntryId, kind = kind_of(e), over = base and base.szProtocol, script = maps[e.ProviderId]}
      if not l then
        out.problems[#out.problems + 1] = {what = "protocol chain whose layered entry is gone", guid = c.guid, id = c.id}
      else
        l.chains[#l.chains + 1] = c
        if not c.script then out.problems[#out.problems + 1] = {what = "protocol chain without a script", guid = c.guid, id = c.id} end
        if not base then out.problems[#out.problems + 1] = {what = "protocol chain over a missing entry", guid = c.guid, id = c.id} end
      end
    end
  end
  for _, l in ipairs(out.layers) do
    if #l.chains == 0 then out.problems[#out.problems + 1] = {what = "layered entry without protocol chains", guid = l.guid, id = l.id} end
  end
  local present = {}
  for _, e in ipairs(entries) do present[e.ProviderId] = true end
  local stale = {}
  for g in pairs(maps) do if not present[g] then stale[#stale + 1] = g end end
  table.sort(stale)
  for _, g in ipairs(stale) do
    out.problems[#out.problems + 1] = {what = "script mapping with no catalog entry", guid = g, mapping_only = true}
  end
  return out
end

---------------------------------------------------------------------------------------------
-- install, remove, repair

local function fail(undo, msg)
  for i = #undo, 1, -1 do pcall(undo[i]) end
  return nil, msg
end

local function entries_of(b, view, guid)
  local list = {}
  for _, e in ipairs(assert(b.enum(view))) do if e.ProviderId == guid then list[#list + 1] = e end end
  return list
end

--- Installs a Lua script as a layered provider over base protocols.
-- @tparam table o {script = absolute path, name =, over = {"tcp", "udp", "tcp6", "udp6"}
--   (default all four), backend = catalog.wsc() or catalog.host(), guid =?}
-- @return {guid =, chain_guids =, layer = id, chains = {kind = id}} | nil, message
function catalog.install(o)
  local b = o.backend or catalog.wsc()
  if not b.available then return nil, b.why end
  local script = o.script
  if type(script) ~= "string" or not (script:sub(1, 1) == "/" or script:match("^%a:[\\/]")) then
    return nil, "the script must be given by its absolute path"
  end
  local chunk, lerr = loadfile(script)
  if not chunk then return nil, "the script does not load: " .. lerr end
  local name = o.name or script:match("([^/\\]+)%.lua$") or "lwsp layer"
  name = "lwsp " .. name
  local over = o.over or KIND_ORDER
  if #b.views > 1 and not b.install_and_chains then
    return nil, "installing into both catalogs needs WSCInstallProviderAndChains64_32; "
      .. "install into each catalog from its own architecture's lua.exe"
  end
  local undo = {}
  local result = {guid = o.guid or lwsp.guid(), chains = {}, chain_guids = {}}
  local installed, by_and_chains = false, false
  for _, view in ipairs(b.views) do
    local entries, err = b.enum(view)
    if not entries then return fail(undo, "cannot read the catalog: " .. tostring(err)) end
    for _, e in ipairs(entries) do
      if not installed and e.ProviderId == result.guid then return fail(undo, "a provider with GUID " .. result.guid .. " is already installed") end
    end
    local bases = {}
    for _, kind in ipairs(over) do
      if not catalog.KINDS[kind] then return fail(undo, ("unknown protocol %q (tcp, udp, tcp6, udp6)"):format(tostring(kind))) end
      local base = catalog.find_base(entries, kind)
      if not base then return fail(undo, ("no base provider for %s in the catalog"):format(kind)) end
      bases[#bases + 1] = base
    end
    local guid = result.guid
    local ok, merr = b.map(guid, script, view)
    if not ok then return fail(undo, "cannot write the script mapping: " .. tostring(merr)) end
    undo[#undo + 1] = function() b.unmap(guid, view) end
    local layer_id
    if installed then
      -- one call put the entries in every catalog: this one is only checked
    elseif b.install_and_chains then
      local flags = bases[1].dwServiceFlags1 & ~wsp.XP1_IFS_HANDLES
      local id, ierr = b.install_and_chains(guid, b.dll, name, flags, bases)
      if not id then return fail(undo, "WSCInstallProviderAndChains failed: " .. tostring(ierr)) end
      for _, v in ipairs(b.views) do undo[#undo + 1] = function() b.deinstall(guid, v) end end
      by_and_chains = true
    else
      local ok2, ierr = b.install(guid, b.dll, {catalog.layer_entry(bases[1], name)})
      if not ok2 then return fail(undo, "WSCInstallProvider (layered entry) failed: " .. tostring(ierr)) end
      undo[#undo + 1] = function() b.deinstall(guid, view) end
    end
    local mine = entries_of(b, view, guid)
    for _, e in ipairs(mine) do if #e.ProtocolChain == 0 then layer_id = e.dwCatalogEntryId end end
    if not layer_id then
      return fail(undo, "the catalog did not take the layered entry although the install reported success"
        .. (b.name == "wsc" and " (as Wine's stub WSC calls do)" or ""))
    end
    result.layer = layer_id
    -- the chains: installed by install_and_chains, or here under a GUID of their own
    local chain_ids = {}
    if not by_and_chains then
      local cguid = lwsp.guid()
      local infos = {}
      for i, base in ipairs(bases) do infos[i] = catalog.chain_entry(base, layer_id, cguid, name) end
      local ok3, cerr = b.map(cguid, script, view)
      if not ok3 then return fail(undo, "cannot write the script mapping: " .. tostring(cerr)) end
      undo[#undo + 1] = function() b.unmap(cguid, view) end
      local ok4, ierr = b.install(cguid, b.dll, infos)
      if not ok4 then return fail(undo, "WSCInstallProvider (protocol chains) failed: " .. tostring(ierr)) end
      undo[#undo + 1] = function() b.deinstall(cguid, view) end
    end
    -- find every chain on the layer, map its GUID, and put the chains first
    local all = assert(b.enum(view))
    local first = {}
    for _, e in ipairs(all) do
      if #e.ProtocolChain >= 2 and e.ProtocolChain[1] == layer_id then
        chain_ids[#chain_ids + 1] = e
      end
    end
    if #chain_ids ~= #bases then
      return fail(undo, ("the catalog holds %d of the %d protocol chains installed"):format(#chain_ids, #bases))
    end
    for _, e in ipairs(chain_ids) do
      if not result.chain_guids[e.ProviderId] and e.ProviderId ~= guid then
        result.chain_guids[e.ProviderId] = true
        local ok5, cerr = b.map(e.ProviderId, script, view)
        if not ok5 then return fail(undo, "cannot write the script mapping: " .. tostring(cerr)) end
        local g = e.ProviderId
        undo[#undo + 1] = function() b.unmap(g, view) end
        if by_and_chains and not installed then undo[#undo + 1] = function() b.deinstall(g, view) end end
      end
      first[#first + 1] = e.dwCatalogEntryId
      local kind = kind_of(e)
      if kind then result.chains[kind] = e.dwCatalogEntryId end
    end
    local order, chained = order_first(all, first)
    local ok6, oerr = b.write_order(order, view)
    if not ok6 then return fail(undo, "WSCWriteProviderOrder failed: " .. tostring(oerr)) end
    local after = assert(b.enum(view))
    for i = 1, #chain_ids do
      if not after[i] or not chained[after[i].dwCatalogEntryId] then
        return fail(undo, "the catalog order did not take: the protocol chains are not first")
      end
    end
    installed = true
  end
  local guids = {}
  for g in pairs(result.chain_guids) do guids[#guids + 1] = g end
  table.sort(guids)
  result.chain_guids = guids
  return result
end

local function find_layer(info, which)
  for _, l in ipairs(info.layers) do
    if l.guid == which or l.name == which or l.name == "lwsp " .. tostring(which) then return l end
  end
end

--- Removes an installed layer (by its GUID or name): its chains, its
-- layered entry and its script mappings, checked against the catalog after.
-- @return {removed = {guids}} | nil, message
function catalog.remove(which, b)
  b = b or catalog.wsc()
  if not b.available then return nil, b.why end
  local removed = {}
  for _, view in ipairs(b.views) do
    local info, err = catalog.inspect(b, view)
    if not info then return nil, "cannot read the catalog: " .. tostring(err) end
    local l = find_layer(info, which)
    if not l then return nil, ("no lwsp layer %q in the catalog (lwsp-catalog list shows them)"):format(tostring(which)) end
    local guids, seen = {}, {}
    for _, c in ipairs(l.chains) do
      if not seen[c.guid] and c.guid ~= l.guid then seen[c.guid] = true guids[#guids + 1] = c.guid end
    end
    guids[#guids + 1] = l.guid
    for _, g in ipairs(guids) do
      local ok, derr = b.deinstall(g, view)
      if not ok then return nil, ("WSCDeinstallProvider(%s) failed: %s"):format(g, tostring(derr)) end
      b.unmap(g, view)
      removed[#removed + 1] = g
    end
    for _, g in ipairs(guids) do
      if #entries_of(b, view, g) > 0 then
        return nil, ("the catalog still holds entries of %s after WSCDeinstallProvider reported success"):format(g)
      end
    end
  end
  return {removed = removed}
end

--- Removes what a broken install left: chains whose layered entry is gone,
-- layered entries without chains or without a script, chains without a
-- script, and script mappings with no catalog entry.
-- @return {actions = {text...}} | nil, message
function catalog.repair(b)
  b = b or catalog.wsc()
  if not b.available then return nil, b.why end
  local actions = {}
  for _, view in ipairs(b.views) do
    local info, err = catalog.inspect(b, view)
    if not info then return nil, "cannot read the catalog: " .. tostring(err) end
    local done = {}
    local function drop(guid, why)
      if done[guid] then return end
      done[guid] = true
      local ok, derr = b.deinstall(guid, view)
      actions[#actions + 1] = ok and ("removed %s (%s)"):format(guid, why)
        or ("could not remove %s (%s): %s"):format(guid, why, tostring(derr))
      b.unmap(guid, view)
    end
    for _, p in ipairs(info.problems) do
      if p.mapping_only then
        b.unmap(p.guid, view)
        actions[#actions + 1] = ("dropped the script mapping of %s (no catalog entry)"):format(p.guid)
      elseif p.what:match("^layered entry") then
        -- the whole layer goes: its chains, then itself
        local l = find_layer(info, p.guid)
        for _, c in ipairs(l and l.chains or {}) do if c.guid ~= p.guid then drop(c.guid, "chain of a broken layer") end end
        drop(p.guid, p.what)
      else
        drop(p.guid, p.what)
      end
    end
  end
  return {actions = actions}
end

---------------------------------------------------------------------------------------------
-- the command (bin/lwsp-catalog)

local USAGE = [[
usage: lwsp-catalog install SCRIPT [--name NAME] [--over tcp,udp,tcp6,udp6] [--both] [--dll PATH] [--dll32 PATH]
                            [--config FILE]
       lwsp-catalog list [--both]
       lwsp-catalog remove GUID|NAME [--both]
       lwsp-catalog repair [--both]
Installs a Lua script as a layered provider in the Winsock catalog (run as an
administrator), lists lwsp's entries, removes them, repairs a broken install.
--both: the 64- and the 32-bit catalogs (from the 64-bit lua.exe).]]

--- Runs the command with argv; writes to out (a function of one line).
-- @treturn integer exit status
function catalog.main(argv, out, backend)
  out = out or print
  local cmd, pos, opt = argv[1], {}, {}
  local i = 2
  while argv[i] do
    local a = argv[i]
    if a == "--both" then opt.both = true
    elseif a:match("^%-%-") then
      local k, v = a:match("^%-%-([%w]+)=(.*)$")
      if not k then k, v = a:sub(3), argv[i + 1]; i = i + 1 end
      if v == nil then out("lwsp-catalog: " .. a .. " needs a value") return 2 end
      opt[k] = v
    else pos[#pos + 1] = a end
    i = i + 1
  end
  local b = backend or catalog.wsc{both = opt.both, dll = opt.dll, dll32 = opt.dll32}
  if cmd == "install" and pos[1] then
    local over, config
    if opt.over then over = {} for k in opt.over:gmatch("[^,%s]+") do over[#over + 1] = k end end
    if opt.config then          -- a Lua file returning the table the script reads as wsp.config
      local chunk, cerr = loadfile(opt.config, "t", {})
      local ok = chunk ~= nil
      if chunk then ok, config = pcall(chunk) end
      if not ok or type(config) ~= "table" then
        out("lwsp-catalog: --config " .. opt.config .. ": " .. tostring(ok and "must return a table" or cerr or config))
        return 2
      end
    end
    local r, err = catalog.install{script = pos[1], name = opt.name, over = over, backend = b}
    if not r then out("lwsp-catalog: install failed: " .. err) out("nothing was left installed") return 1 end
    if config then
      local guids = {r.guid}
      for _, g in ipairs(r.chain_guids) do guids[#guids + 1] = g end
      for _, g in ipairs(guids) do
        local ok, cerr = require("wsp.host").write_config(g, config)
        if not ok then
          catalog.remove(r.guid, b)
          out("lwsp-catalog: install failed: configuration: " .. tostring(cerr)) out("nothing was left installed")
          return 1
        end
      end
    end
    out(("installed %s: layered entry %d, chains %s"):format(r.guid, r.layer, (function()
      local t = {}
      for _, k in ipairs(KIND_ORDER) do if r.chains[k] then t[#t + 1] = ("%s=%d"):format(k, r.chains[k]) end end
      return table.concat(t, " ")
    end)()))
    return 0
  elseif cmd == "list" then
    if not b.available then out("lwsp-catalog: " .. b.why) return 1 end
    local total = 0
    for _, view in ipairs(b.views) do
      local info, err = catalog.inspect(b, view)
      if not info then out("lwsp-catalog: " .. tostring(err)) return 1 end
      for _, l in ipairs(info.layers) do
        total = total + 1
        out(("%s  %s  [%d]  %s"):format(l.guid, l.name, l.id, l.script or "(no script)"))
        for _, c in ipairs(l.chains) do
          out(("    [%d] %-5s over %s  (%s)"):format(c.id, c.kind or "?", c.over or "?", c.guid))
        end
      end
      for _, p in ipairs(info.problems) do out(("problem: %s: %s%s"):format(p.what, p.guid, p.id and (" [%d]"):format(p.id) or "")) end
    end
    if total == 0 then out("no lwsp layers installed") end
    return 0
  elseif cmd == "remove" and pos[1] then
    local r, err = catalog.remove(pos[1], b)
    if not r then out("lwsp-catalog: remove failed: " .. err) return 1 end
    for _, g in ipairs(r.removed) do require("wsp.host").write_config(g, nil) end
    out("removed " .. table.concat(r.removed, " "))
    return 0
  elseif cmd == "repair" then
    local r, err = catalog.repair(b)
    if not r then out("lwsp-catalog: repair failed: " .. err) return 1 end
    for _, a in ipairs(r.actions) do out(a) end
    if #r.actions == 0 then out("nothing to repair") end
    return 0
  end
  out(USAGE)
  return 2
end

return catalog
