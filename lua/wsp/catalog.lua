--- wsp.catalog: installs Lua layered providers into the Winsock catalogs,
-- lists lwsp's entries, removes them, repairs what a broken install left, and
-- checks every catalog invariant whose breach costs a machine its networking.
--
-- It talks to a catalog only through a backend, one narrow interface (the WSC
-- calls, the registry mapping, and the few file questions an install asks):
-- `catalog.wsc()` is Windows' own (lwsp.wsc over ws2_32), `catalog.host()` is
-- lwsp's host in this process, and wsp.catalog_model is a faithful model of
-- ws2_32's two catalogs with fault injection at every call.  Views are 64 and
-- 32 (the 64- and 32-bit catalogs and registry views of a 64-bit Windows;
-- a 32-bit Windows has 32 alone) or 0 (lwsp's host).
--
-- An install is one hidden layered entry under the provider's GUID and, over
-- each chosen base protocol, a protocol chain {layer, base}.  Only the layered
-- entry's GUID is mapped to the script: lwsp finds its script by walking the
-- ProtocolChain it is given, so the chains (whose GUIDs
-- WSCInstallProviderAndChains makes up) need no mapping of their own, and a
-- chain never exists before the mapping that makes it work.
-- @module wsp.catalog
local lwsp = require "lwsp"
local wsp = require "wsp"

if lwsp.provider then error("wsp.catalog is the application's side of lwsp: not available inside a provider", 2) end

local catalog = {}

--- The base protocols a layer can go over.
catalog.KINDS = {
  tcp = {af = wsp.AF_INET, type = wsp.SOCK_STREAM, protocol = wsp.IPPROTO_TCP},
  udp = {af = wsp.AF_INET, type = wsp.SOCK_DGRAM, protocol = wsp.IPPROTO_UDP},
  tcp6 = {af = wsp.AF_INET6, type = wsp.SOCK_STREAM, protocol = wsp.IPPROTO_TCP},
  udp6 = {af = wsp.AF_INET6, type = wsp.SOCK_DGRAM, protocol = wsp.IPPROTO_UDP},
}
local KIND_ORDER = {"tcp", "udp", "tcp6", "udp6"}

--- LSP categories (WSCSetProviderInfo, ProviderInfoLspCategories): ws2spi.h's
-- LSP_* values (src/runtime/wsc.c checks them against mingw's header at compile time).
catalog.CATEGORIES = {
  inspector = 0x1, redirector = 0x2, proxy = 0x4, firewall = 0x8, inbound_modify = 0x10,
  outbound_modify = 0x20, crypto_compress = 0x40, local_cache = 0x80, system = 0x80000000,
}

local WSAPROTOCOL_LEN = 255

local function copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return c
end

local function kind_of(e)
  for k, v in pairs(catalog.KINDS) do
    if e.iAddressFamily == v.af and e.iSocketType == v.type and e.iProtocol == v.protocol then return k end
  end
end

local function by_id(entries)
  local t = {}
  for _, e in ipairs(entries) do t[e.dwCatalogEntryId] = e end
  return t
end

local function windows_path(p) return p:match("^%a:[\\/]") or p:match("^\\\\") end
local function norm(p)
  if not p then return nil end
  if windows_path(p) or p:find("\\", 1, true) then return (p:gsub("/", "\\"):lower()) end
  return p
end
local function same_path(a, b) return a ~= nil and b ~= nil and norm(a) == norm(b) end
local function dirname(p) return p:match("^(.*)[/\\][^/\\]*$") end
local function sep_of(p) return (windows_path(p) or p:find("\\", 1, true)) and "\\" or "/" end

local function order_first(entries, first)
  local ids, set = {}, {}
  for i, id in ipairs(first) do ids[i] = id set[id] = true end
  for _, e in ipairs(entries) do if not set[e.dwCatalogEntryId] then ids[#ids + 1] = e.dwCatalogEntryId end end
  return ids, set
end

-- ------------------------------------------------------------------------------------------
-- files: the DLL's architecture and who can change what runs everywhere

--- The architecture of a PE image from its header: 64 (AMD64, ARM64), 32
-- (i386, ARMNT), or nil and why.
-- @tparam string bytes the file's first bytes (at least up to the COFF header)
function catalog.pe_arch(bytes)
  if type(bytes) ~= "string" or #bytes < 64 or bytes:sub(1, 2) ~= "MZ" then return nil, "not a PE image (no MZ header)" end
  local off = string.unpack("<I4", bytes, 61)
  if off + 6 > #bytes or bytes:sub(off + 1, off + 4) ~= "PE\0\0" then return nil, "not a PE image (no PE signature)" end
  local machine = string.unpack("<I2", bytes, off + 5)
  if machine == 0x8664 or machine == 0xAA64 then return 64 end
  if machine == 0x14c or machine == 0x1c4 then return 32 end
  return nil, ("unknown machine 0x%04x"):format(machine)
end

--- The DLLs a PE image imports (its import directory's names, lower-cased),
-- or nil and why.  Delay-load imports are not read (lwsp's DLLs have none).
-- @tparam string bytes the whole file
function catalog.pe_imports(bytes)
  local arch, why = catalog.pe_arch(bytes)
  if not arch then return nil, why end
  local function u16(at) return at + 2 <= #bytes and string.unpack("<I2", bytes, at + 1) or nil end
  local function u32(at) return at + 4 <= #bytes and string.unpack("<I4", bytes, at + 1) or nil end
  local pe = u32(60)
  local nsec, optsize = u16(pe + 6), u16(pe + 20)
  local opt = pe + 24
  local magic = u16(opt)
  if not (nsec and optsize and magic) then return nil, "truncated PE header" end
  local dd = opt + (magic == 0x20b and 112 or magic == 0x10b and 96 or -1)
  if dd < opt then return nil, ("unknown optional header 0x%x"):format(magic) end
  local rva = u32(dd + 8)
  if not rva then return nil, "truncated PE header" end
  if rva == 0 then return {} end
  local sections = {}
  for i = 0, nsec - 1 do
    local s = opt + optsize + i * 40
    local vsize, va, rawsize, raw = u32(s + 8), u32(s + 12), u32(s + 16), u32(s + 20)
    if not raw then return nil, "truncated section table" end
    sections[#sections + 1] = {va = va, size = math.max(vsize, rawsize), raw = raw}
  end
  local function offset(r)
    for _, s in ipairs(sections) do
      if r >= s.va and r < s.va + s.size then return r - s.va + s.raw end
    end
  end
  local at = offset(rva)
  if not at then return nil, "import directory outside every section" end
  local names = {}
  while true do
    local lookup, name = u32(at), u32(at + 12)
    if not name then return nil, "truncated import directory" end
    if name == 0 and lookup == 0 then break end
    local o = offset(name)
    local z = o and bytes:find("\0", o + 1, true)
    if not z then return nil, "import name outside the file" end
    names[#names + 1] = bytes:sub(o + 1, z - 1):lower()
    at = at + 20
  end
  return names
end

-- The message of a DLL whose imports other programs will not find.
local function imports_refused(dll, names, sys)
  return ("%s imports %s, which is not in %s: ws2_32 loads a provider by its full path, and the DLLs it"
    .. " imports are looked for in the program's folder and the system's, never the provider's, so every other"
    .. " program would fail to load it. Install the provider build with Lua linked in"
    .. " (build\\mingw\\<arch>\\provider\\lwsp.dll), not the Lua module beside lua.exe"):format(dll, table.concat(names, ", "), sys)
end

--- Why a provider DLL would not load in another program, if so: ws2_32 loads
-- it by its full path, and Windows looks for the DLLs it imports in the
-- program's folder, the system folder and PATH, never the provider's own
-- folder, so every import must be a DLL of the system folder of the view's
-- architecture (System32, or SysWOW64 for a 32-bit program on a 64-bit
-- Windows) or an API set (api-ms-*, ext-ms-*).
-- @return {string} the reasons, empty when every import is found there | nil, why the DLL cannot be read
function catalog.import_problems(b, dll, view)
  local names, why = b:dll_imports(dll)
  if not names then return nil, why end
  local out = {}
  for _, n in ipairs(names) do
    if not (n:match("^api%-ms%-") or n:match("^ext%-ms%-") or b:exists(b:expand("%SystemRoot%\\System32\\" .. n, view))) then
      out[#out + 1] = n
    end
  end
  return out, (b:expand("%SystemRoot%\\System32\\x", view):gsub("\\x$", ""))
end

--- The test start's first step: nil when every DLL the provider imports is
-- found where another program's loader looks, else why not.
function catalog.check_imports(b, dll, view)
  local bad, sys = catalog.import_problems(b, dll, view)
  if not bad then return ("%s: %s"):format(dll, tostring(sys)) end
  if #bad > 0 then return imports_refused(dll, bad, sys) end
end


--- The folders on a provider's module search path: the script's folder and
-- lwsp's own Lua folders beside its DLL (as the runtime sets package.path on
-- Windows; nothing else is searched there).
function catalog.search_dirs(dll, script)
  local s = sep_of(dll)
  local d = dirname(dll)
  return {dirname(script), d .. s .. "lua", d .. s .. "lua" .. s .. "wsp"}
end

--- Why the files of an install could be changed by non-administrators, if so.
-- @treturn {string} the reasons, empty when the DLLs, the script and every
--   folder on the module search path are writable only by administrators and SYSTEM
function catalog.file_problems(b, dlls, script)
  local out, seen = {}, {}
  local function check(p)
    if not p or seen[norm(p)] then return end
    seen[norm(p)] = true
    local why = b:insecure(p)
    if why then out[#out + 1] = why end
  end
  for _, dll in ipairs(dlls) do
    check(dll)
    check(dirname(dll))
    for _, d in ipairs(catalog.search_dirs(dll, script)) do check(d) end
  end
  check(script)
  return out
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
-- the first base it goes over.  Its service flags are 0: the only flag the
-- documentation defines for it is XP1_IFS_HANDLES, and lwsp's handles are not IFS.
function catalog.layer_entry(base, name)
  local e = copy(base)
  e.dwCatalogEntryId, e.path = nil, nil
  e.ProtocolChain = {}
  e.dwServiceFlags1 = 0
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
    e.ProtocolChain[2] = base.dwCatalogEntryId
  else
    for _, id in ipairs(base.ProtocolChain) do e.ProtocolChain[#e.ProtocolChain + 1] = id end
  end
  e.dwServiceFlags1 = e.dwServiceFlags1 & ~wsp.XP1_IFS_HANDLES
  e.dwProviderFlags = e.dwProviderFlags & ~wsp.PFL_HIDDEN
  e.szProtocol = truncate(("%s over [%s]"):format(name, base.szProtocol))
  return e
end

-- ------------------------------------------------------------------------------------------
-- reading a catalog: which entries are lwsp's, and what the runtime would find

--- The script the runtime finds for an entry ws2_32 starts lwsp with: its own
-- GUID's mapping, else the first entry of its ProtocolChain whose GUID has one.
-- @return script, the GUID it was found under | nil
function catalog.resolve(e, ids, maps)
  if maps[e.ProviderId] then return maps[e.ProviderId], e.ProviderId end
  if #e.ProtocolChain >= 2 then
    for _, id in ipairs(e.ProtocolChain) do
      local x = ids[id]
      if x and maps[x.ProviderId] then return maps[x.ProviderId], x.ProviderId end
    end
  end
end

--- Reads one view of a backend's catalog: its entries, ids and mappings, and
-- which entries are lwsp's (their DLL is lwsp's, or their GUID is mapped).
-- @tparam table b a backend (catalog.wsc, catalog.host or catalog.model)
-- @tparam integer view 0 (the one catalog), 64 or 32
-- @treturn table the view's entries, layers and problems, or nil and why
function catalog.read_view(b, view)
  local entries, err = b:enum(view)
  if not entries then return nil, "cannot read the catalog: " .. tostring(err) end
  local maps, merr = b:mappings(view)
  if not maps then return nil, "cannot read the script mappings: " .. tostring(merr) end
  local v = {view = view, entries = entries, ids = by_id(entries), maps = maps, ours = {}}
  local function lwsp_dll(p)
    return same_path(p, b.dll) or same_path(p, b.dll32) or (p and norm(p):match("[/\\]lwsp%.dll$") ~= nil)
  end
  for _, e in ipairs(entries) do
    if maps[e.ProviderId] or lwsp_dll(e.path) then v.ours[e.ProviderId] = true end
  end
  -- lwsp's layered entries and the chains on them
  v.layers = {}
  for _, e in ipairs(entries) do
    if v.ours[e.ProviderId] and #e.ProtocolChain == 0 then
      v.layers[#v.layers + 1] = {guid = e.ProviderId, name = e.szProtocol, id = e.dwCatalogEntryId,
        script = maps[e.ProviderId], path = e.path, chains = {},
        on_failure = b.on_failure and b:on_failure(view, e.ProviderId) or "fail"}
    end
  end
  local layer_at = {}
  for _, l in ipairs(v.layers) do layer_at[l.id] = l end
  for _, e in ipairs(entries) do
    local l = #e.ProtocolChain >= 2 and layer_at[e.ProtocolChain[1]]
    if l then
      local base = v.ids[e.ProtocolChain[#e.ProtocolChain]]
      l.chains[#l.chains + 1] = {guid = e.ProviderId, id = e.dwCatalogEntryId, kind = kind_of(e),
        over = base and base.szProtocol, base = e.ProtocolChain[#e.ProtocolChain]}
    end
  end
  return v
end
local read_view = catalog.read_view

local function view_name(view) return view == 0 and "the" or ("the %d-bit"):format(view) end

--- Every broken invariant of the backend's catalogs, registry views and files.
-- @treturn {{view =, what =, guid =, id =, fix =}} (empty when all is well) | nil, message
function catalog.check(b)
  local out, views = {}, {}
  local function add(view, what, guid, id, fix) out[#out + 1] = {view = view, what = what, guid = guid, id = id, fix = fix} end
  for _, view in ipairs(b.views) do
    local v, err = read_view(b, view)
    if not v then return nil, err end
    views[view] = v
    local present = {}
    for _, e in ipairs(v.entries) do present[e.ProviderId] = true end
    for _, e in ipairs(v.entries) do
      local chain, n = e.ProtocolChain, #e.ProtocolChain
      if n >= 2 then
        local seen, missing, twice = {}, false, false
        for _, id in ipairs(chain) do
          if not v.ids[id] then missing = true end
          if seen[id] then twice = true end
          seen[id] = true
        end
        if missing then
          add(view, "protocol chain naming catalog ids that are gone", e.ProviderId, e.dwCatalogEntryId, "chain")
        elseif twice then
          add(view, "protocol chain naming a layer twice (a layer that would load itself)", e.ProviderId, e.dwCatalogEntryId, "chain")
        elseif #v.ids[chain[1]].ProtocolChain ~= 0 or #v.ids[chain[n]].ProtocolChain ~= 1 then
          add(view, "protocol chain not from a layered entry down to a base entry", e.ProviderId, e.dwCatalogEntryId, "chain")
        end
      end
      if v.ours[e.ProviderId] and not catalog.resolve(e, v.ids, v.maps) then
        add(view, ("lwsp entry with no script in %s registry view"):format(view_name(view)), e.ProviderId, e.dwCatalogEntryId, "layer")
      end
    end
    -- each DLL against the catalog's architecture
    if view ~= 0 then
      local done = {}
      for _, e in ipairs(v.entries) do
        if e.path and not done[e.path] then
          done[e.path] = true
          local arch, why = b:dll_arch(b:expand(e.path, view))
          if arch and arch ~= view then
            add(view, ("%d-bit catalog entry naming a %d-bit DLL (%s)"):format(view, arch, e.path), e.ProviderId, e.dwCatalogEntryId,
                v.ours[e.ProviderId] and "layer" or nil)
          elseif not arch and v.ours[e.ProviderId] then
            add(view, ("lwsp entry whose DLL cannot be loaded: %s"):format(why), e.ProviderId, e.dwCatalogEntryId, "layer")
          end
        end
      end
    end
    for _, l in ipairs(v.layers) do
      if #l.chains == 0 then add(view, "lwsp layered entry without protocol chains", l.guid, l.id, "layer") end
      if l.script and l.path then
        for _, why in ipairs(catalog.file_problems(b, {b:expand(l.path, view)}, l.script)) do
          add(view, "lwsp files writable by non-administrators: " .. why, l.guid, l.id)
        end
      end
    end
    local stale = {}
    for g in pairs(v.maps) do if not present[g] then stale[#stale + 1] = g end end
    table.sort(stale)
    for _, g in ipairs(stale) do add(view, "script mapping with no catalog entry", g, nil, "mapping") end
  end
  -- a 64-bit machine's two catalogs hold the same lwsp layers
  if #b.views == 2 then
    local a, c = views[b.views[1]], views[b.views[2]]
    for _, pair in ipairs{{a, c}, {c, a}} do
      local has = {}
      for _, l in ipairs(pair[2].layers) do has[l.guid] = true end
      for _, l in ipairs(pair[1].layers) do
        if not has[l.guid] then
          add(pair[1].view, ("lwsp layer in %s catalog only"):format(view_name(pair[1].view)), l.guid, l.id, "layer")
        end
      end
    end
  end
  return out
end

--- lwsp's entries in one view, as `list` shows them, with what `check` finds there.
-- @return {layers = {{guid, name, id, script, chains = {{guid, id, kind, over}}}}, problems = {...}}
function catalog.inspect(b, view)
  view = view or b.views[1]
  local v, err = read_view(b, view)
  if not v then return nil, err end
  local problems = {}
  local all, cerr = catalog.check(b)
  if not all then return nil, cerr end
  for _, p in ipairs(all) do if p.view == view then problems[#problems + 1] = p end end
  return {layers = v.layers, problems = problems}
end

-- ------------------------------------------------------------------------------------------
-- taking entries out, shared by remove, repair and undo

-- The chains of other providers that name one of `gone` (ids), rewritten
-- without them, grouped by GUID as WSCUpdateProvider takes them.
local function chains_through(v, gone, keep_guid)
  local by_guid, order = {}, {}
  for _, e in ipairs(v.entries) do
    local hit = false
    for _, id in ipairs(e.ProtocolChain) do if gone[id] and #e.ProtocolChain >= 2 then hit = true end end
    if hit and not gone[e.dwCatalogEntryId] and e.ProviderId ~= keep_guid then
      if not by_guid[e.ProviderId] then by_guid[e.ProviderId] = {} order[#order + 1] = e.ProviderId end
    end
  end
  return by_guid, order
end

-- Rewrites every chain of other providers that runs through the ids in
-- `gone`, as the LSP sample's removal does with WSCUpdateProvider: the ids
-- are dropped from the chain; a chain left without a layer above a base is
-- reported (it is another vendor's to remove).
local function unhook(b, view, v, gone, notes)
  local groups, order = chains_through(v, gone)
  for _, g in ipairs(order) do
    local infos, path = {}, nil
    for _, e in ipairs(v.entries) do
      if e.ProviderId == g and not gone[e.dwCatalogEntryId] then
        local n = copy(e)
        path = path or e.path
        n.path = nil
        if #e.ProtocolChain >= 2 then
          local c = {}
          for _, id in ipairs(e.ProtocolChain) do if not gone[id] then c[#c + 1] = id end end
          n.ProtocolChain = c
        end
        infos[#infos + 1] = n
      end
    end
    for _, n in ipairs(infos) do
      if #n.ProtocolChain == 1 then
        return nil, ("the chain %d of %s would be left without a layer; it is not lwsp's to remove")
          :format(n.dwCatalogEntryId, g)
      end
    end
    local ok, err = b:update(view, g, path, infos)
    if not ok then return nil, ("WSCUpdateProvider(%s) in %s catalog failed: %s"):format(g, view_name(view), tostring(err)) end
    if notes then notes[#notes + 1] = ("rewrote the chains of %s in %s catalog around the removed entries"):format(g, view_name(view)) end
    groups[g] = nil
  end
  return true
end

-- Takes an lwsp layer out of one view: other providers' chains through it
-- rewritten first, then its chains and itself deinstalled, then (only when
-- the catalog holds none of them) its mapping dropped.  Reads the catalog
-- afresh, so it serves a half-done install as well as a whole one.
local function take_out(b, view, guid, notes)
  local v, err = read_view(b, view)
  if not v then return nil, err end
  local layer_ids, gone, guids, seen = {}, {}, {}, {}
  for _, e in ipairs(v.entries) do
    if e.ProviderId == guid then gone[e.dwCatalogEntryId] = true if #e.ProtocolChain == 0 then layer_ids[e.dwCatalogEntryId] = true end end
  end
  -- lwsp's own chains on the layer: those whose DLL is the layer's
  local layer_path
  for _, e in ipairs(v.entries) do if e.ProviderId == guid then layer_path = layer_path or e.path end end
  for _, e in ipairs(v.entries) do
    if #e.ProtocolChain >= 2 and layer_ids[e.ProtocolChain[1]] and e.ProviderId ~= guid and same_path(e.path, layer_path) then
      if not seen[e.ProviderId] then seen[e.ProviderId] = true guids[#guids + 1] = e.ProviderId end
    end
  end
  for _, g in ipairs(guids) do
    for _, e in ipairs(v.entries) do if e.ProviderId == g then gone[e.dwCatalogEntryId] = true end end
  end
  local ok, uerr = unhook(b, view, v, gone, notes)
  if not ok then return nil, uerr end
  guids[#guids + 1] = guid
  for _, g in ipairs(guids) do
    local present = false
    for _, e in ipairs(v.entries) do if e.ProviderId == g then present = true end end
    if present then
      local dok, derr = b:deinstall(view, g)
      if not dok then return nil, ("WSCDeinstallProvider(%s) in %s catalog failed: %s"):format(g, view_name(view), tostring(derr)) end
      if notes then notes[#notes + 1] = ("deinstalled %s from %s catalog"):format(g, view_name(view)) end
    end
  end
  local after, aerr = b:enum(view)
  if not after then return nil, "cannot read the catalog: " .. tostring(aerr) end
  for _, e in ipairs(after) do
    for _, g in ipairs(guids) do
      if e.ProviderId == g then return nil, ("%s catalog still holds entries of %s after WSCDeinstallProvider reported success"):format(view_name(view), g) end
    end
  end
  for _, g in ipairs(guids) do
    if v.maps[g] then
      local uok, merr = b:unmap(view, g)
      if not uok then return nil, ("cannot drop the script mapping of %s: %s"):format(g, tostring(merr)) end
    end
  end
  return guids
end

-- ------------------------------------------------------------------------------------------
-- install

local function check_script(b, script)
  if type(script) ~= "string" or not (script:sub(1, 1) == "/" or windows_path(script)) then
    return nil, "the script must be given by its absolute path"
  end
  local src, rerr = b:read(script)
  if not src then return nil, "the script does not load: " .. tostring(rerr) end
  local chunk, lerr = load(src, "@" .. script, "t")
  if not chunk then return nil, "the script does not load: " .. lerr end
  return true
end

-- Whether a view holds anything of the install under guid (entries, chains
-- on its layer, or its mapping).
local function leftovers(b, guid)
  local left = {}
  for _, view in ipairs(b.views) do
    local v = read_view(b, view)
    if not v then left[#left + 1] = ("%s catalog could not be read"):format(view_name(view))
    else
      local layer = {}
      for _, e in ipairs(v.entries) do
        if e.ProviderId == guid then
          left[#left + 1] = ("entry %d in %s catalog"):format(e.dwCatalogEntryId, view_name(view))
          if #e.ProtocolChain == 0 then layer[e.dwCatalogEntryId] = true end
        end
      end
      for _, e in ipairs(v.entries) do
        if #e.ProtocolChain >= 2 and layer[e.ProtocolChain[1]] and e.ProviderId ~= guid then
          left[#left + 1] = ("chain %d in %s catalog"):format(e.dwCatalogEntryId, view_name(view))
        end
      end
      if v.maps[guid] then left[#left + 1] = ("the script mapping in %s registry view"):format(view_name(view)) end
    end
  end
  return left
end

--- Undoes an install: everything of `guid` out of every view, then a fresh
-- look that nothing is left.  Returns the failure message, extended with
-- what was or was not left.
local function undo(b, guid, msg)
  local errs = {}
  for _, view in ipairs(b.views) do
    local ok, e = take_out(b, view, guid)
    if not ok then errs[#errs + 1] = e end
  end
  for _, view in ipairs(b.views) do
    local maps = b:mappings(view)
    if maps and maps[guid] then b:unmap(view, guid) end
  end
  local left = leftovers(b, guid)
  if #left == 0 then return nil, msg .. "\nnothing was left installed" end
  return nil, msg .. "\nthe undo could not take everything out (" .. table.concat(left, ", ") .. (#errs > 0 and "; " .. table.concat(errs, "; ") or "")
    .. "): run lwsp-catalog repair"
end

--- Installs a Lua script as a layered provider over base protocols, in every
-- catalog of the machine (the 64- and the 32-bit one on a 64-bit Windows).
-- @tparam table o {script = absolute path, name =, over = {"tcp", "udp", "tcp6", "udp6"}
--   (default all four), backend =, guid =?, category = names or number?,
--   dll =?, dll32 =? (override the backend's), on_failure = "fail" (default) | "passthrough":
--   what the layer does when its script cannot run (fail: WSAEPROVIDERFAILEDINIT; passthrough:
--   every call goes to the layer below, with a log line and a trace record),
--   config =? (a table the script reads as wsp.config, written beside the mapping in every
--   registry view before any entry exists)}
-- @return {guid =, layer = id, chains = {kind = id}, views = {[view] = {layer =, chains =}}} | nil, message
function catalog.install(o)
  local b = o.backend or catalog.wsc()
  local function refuse(msg) return nil, msg .. "\nnothing was installed" end
  if not b.available then return refuse(b.why) end
  if b.no32 then return refuse(b.no32) end
  local dll, dll32 = o.dll or b.dll, b.dll32
  if o.dll32 ~= nil then dll32 = o.dll32 or nil end
  local script = o.script
  local config_text
  if o.config ~= nil then
    if type(o.config) ~= "table" then return refuse("config must be a table") end
    local ok, text = pcall(require("wsp.host").config_text, o.config)
    if not ok then return refuse(tostring(text)) end
    config_text = text
  end
  local on_failure = o.on_failure or "fail"
  if on_failure ~= "fail" and on_failure ~= "passthrough" then
    return refuse(("on-failure must be fail or passthrough, not %q"):format(tostring(on_failure)))
  end
  local ok, serr = check_script(b, script)
  if not ok then return refuse(serr) end
  local name = "lwsp " .. (o.name or script:match("([^/\\]+)%.lua$") or "layer")
  local over = o.over or KIND_ORDER
  for _, kind in ipairs(over) do
    if not catalog.KINDS[kind] then return refuse(("unknown protocol %q (tcp, udp, tcp6, udp6)"):format(tostring(kind))) end
  end
  local category = 0
  if o.category then
    if type(o.category) == "number" then category = o.category
    else
      for c in tostring(o.category):gmatch("[^,%s]+") do
        local bit = catalog.CATEGORIES[c]
        if not bit then return refuse(("unknown LSP category %q"):format(c)) end
        category = category | bit
      end
    end
  end
  -- the DLLs: one per catalog, each of its catalog's architecture
  local dlls = {}
  for _, view in ipairs(b.views) do
    local d = dll
    if view == 32 and #b.views == 2 then d = dll32 end
    if not d then
      return refuse "a 64-bit Windows has a 32-bit catalog too: give the i686 lwsp.dll with --dll32 (32-bit programs would otherwise lose TCP and UDP)"
    end
    if view ~= 0 then
      local arch, why = b:dll_arch(d)
      if not arch then return refuse(("%s: %s"):format(d, why)) end
      if arch ~= view then return refuse(("%s is a %d-bit DLL; the %d-bit catalog needs a %d-bit one"):format(d, arch, view, view)) end
    end
    dlls[view] = d
  end
  -- who can change what every process will run
  local list = {}
  for _, view in ipairs(b.views) do list[#list + 1] = dlls[view] end
  local insecure = catalog.file_problems(b, list, script)
  if #insecure > 0 then
    return refuse("refusing to install: " .. table.concat(insecure, "; ")
      .. ". Every process that opens a socket would run these files, elevated ones included; put them where only"
      .. " administrators and SYSTEM can write (lwsp-catalog install copies them to %ProgramFiles%\\lwsp by default)")
  end
  -- the catalogs as they are, and the bases in each
  local guid = o.guid or lwsp.guid()
  local bases = {}
  for _, view in ipairs(b.views) do
    local v, err = read_view(b, view)
    if not v then return refuse(err) end
    for _, e in ipairs(v.entries) do
      if e.ProviderId == guid then return refuse("a provider with GUID " .. guid .. " is already installed") end
    end
    if v.maps[guid] then return refuse("GUID " .. guid .. " already has a script mapping") end
    bases[view] = {}
    for _, kind in ipairs(over) do
      local base = catalog.find_base(v.entries, kind)
      if not base then return refuse(("no base provider for %s in %s catalog"):format(kind, view_name(view))) end
      bases[view][#bases[view] + 1] = base
    end
  end
  -- 1. the mapping, in every registry view, before any entry exists
  for _, view in ipairs(b.views) do
    local mok, merr = b:map(view, guid, script)
    if not mok then return undo(b, guid, "cannot write the script mapping: " .. tostring(merr)) end
    if config_text then
      if not b.set_config then return undo(b, guid, "this catalog keeps no provider configuration") end
      local cok, cerr = b:set_config(view, guid, config_text)
      if not cok then return undo(b, guid, "cannot write the configuration: " .. tostring(cerr)) end
    end
  end
  -- 2. the provider started in a fresh process of each architecture
  for _, view in ipairs(b.views) do
    local tok, terr = b:test_start(view, dlls[view], guid)
    if not tok then return undo(b, guid, ("the test start of the %s provider failed: %s"):format(view == 0 and "" or view .. "-bit", tostring(terr))) end
  end
  -- the on-failure choice only now: written before the test start, passthrough
  -- would let a script that cannot run pass it (every call going down)
  for _, view in ipairs(b.views) do
    if b.set_on_failure then
      local fok, ferr = b:set_on_failure(view, guid, on_failure)
      if not fok then return undo(b, guid, "cannot write the on-failure choice: " .. tostring(ferr)) end
    end
  end
  -- 3. the entries
  local result = {guid = guid, chains = {}, views = {}}
  local first = b.views[1]
  if b.install_and_chains then
    local protos = {}
    for i, base in ipairs(bases[first]) do protos[i] = base end
    local id, ierr = b:install_and_chains(guid, dlls[first], #b.views == 2 and dlls[32] or nil, name, 0, protos)
    if not id then return undo(b, guid, "WSCInstallProviderAndChains failed: " .. tostring(ierr)) end
  elseif #b.views > 1 then
    return undo(b, guid, "installing into both catalogs needs WSCInstallProviderAndChains64_32")
  else
    local iok, ierr = b:install(first, guid, dlls[first], {catalog.layer_entry(bases[first][1], name)})
    if not iok then return undo(b, guid, "WSCInstallProvider (layered entry) failed: " .. tostring(ierr)) end
    local now, eerr = b:enum(first)
    if not now then return undo(b, guid, "cannot read the catalog: " .. tostring(eerr)) end
    local layer_id
    for _, e in ipairs(now) do if e.ProviderId == guid and #e.ProtocolChain == 0 then layer_id = e.dwCatalogEntryId end end
    if not layer_id then
      return undo(b, guid, "the catalog did not take the layered entry although the install reported success"
        .. (b.name == "wsc" and " (as Wine's stub WSC calls do)" or ""))
    end
    local cguid = lwsp.guid()
    local infos = {}
    for i, base in ipairs(bases[first]) do infos[i] = catalog.chain_entry(base, layer_id, cguid, name) end
    local cok, cerr = b:install(first, cguid, dlls[first], infos)
    if not cok then return undo(b, guid, "WSCInstallProvider (protocol chains) failed: " .. tostring(cerr)) end
    now, eerr = b:enum(first)
    if not now then return undo(b, guid, "cannot read the catalog: " .. tostring(eerr)) end
    local ids = {}
    for _, e in ipairs(now) do if e.ProviderId == cguid then ids[#ids + 1] = e.dwCatalogEntryId end end
    local wok, werr = b:write_order(first, (order_first(now, ids)))
    if not wok then return undo(b, guid, "WSCWriteProviderOrder failed: " .. tostring(werr)) end
  end
  -- 4. each catalog read back: the layer with its DLL, a chain over each base, the chains first
  for _, view in ipairs(b.views) do
    local v, err = read_view(b, view)
    if not v then return undo(b, guid, err) end
    local l
    for _, x in ipairs(v.layers) do if x.guid == guid then l = x end end
    if not l then
      return undo(b, guid, ("%s catalog did not take the layered entry although the install reported success"):format(view_name(view))
        .. (b.name == "wsc" and " (as Wine's stub WSC calls do)" or ""))
    end
    if not same_path(l.path, dlls[view]) then
      return undo(b, guid, ("%s catalog names %s for the layer, not %s"):format(view_name(view), tostring(l.path), dlls[view]))
    end
    local over_base = {}
    for _, c in ipairs(l.chains) do over_base[c.base] = over_base[c.base] or c end
    for _, base in ipairs(bases[view]) do
      if not over_base[base.dwCatalogEntryId] then
        return undo(b, guid, ("%s catalog holds no protocol chain over %s"):format(view_name(view), base.szProtocol))
      end
    end
    local chained = {}
    for _, c in ipairs(l.chains) do chained[c.id] = true end
    for i = 1, #l.chains do
      if not chained[v.entries[i].dwCatalogEntryId] then
        return undo(b, guid, ("the order of %s catalog did not take: the protocol chains are not first"):format(view_name(view)))
      end
    end
    local r = {layer = l.id, chains = {}}
    for i, kind in ipairs(over) do r.chains[kind] = over_base[bases[view][i].dwCatalogEntryId].id end
    result.views[view] = r
  end
  -- 5. the LSP category, when asked for
  if category ~= 0 then
    for _, view in ipairs(b.views) do
      local cok, cerr = b:set_category(view, guid, category)
      if not cok then return undo(b, guid, "WSCSetProviderInfo (LSP categories) failed: " .. tostring(cerr)) end
    end
  end
  result.layer, result.chains = result.views[first].layer, result.views[first].chains
  return result
end

-- ------------------------------------------------------------------------------------------
-- remove, repair

local function find_layers(b, which)
  local found = {}
  for _, view in ipairs(b.views) do
    local v, err = read_view(b, view)
    if not v then return nil, err end
    for _, l in ipairs(v.layers) do
      if l.guid == which or l.name == which or l.name == "lwsp " .. tostring(which) then found[l.guid] = true end
    end
  end
  local list = {}
  for g in pairs(found) do list[#list + 1] = g end
  table.sort(list)
  return list
end

--- Removes an installed layer (by its GUID or name) from every catalog: the
-- chains of other providers through it rewritten (WSCUpdateProvider), its
-- chains and layered entry deinstalled, its script mappings dropped.
-- @return {removed = {guids}, notes = {text}} | nil, message
function catalog.remove(which, b)
  b = b or catalog.wsc()
  if not b.available then return nil, b.why end
  local guids, err = find_layers(b, which)
  if not guids then return nil, err end
  if #guids == 0 then return nil, ("no lwsp layer %q in the catalog (lwsp-catalog list shows them)"):format(tostring(which)) end
  if #guids > 1 then return nil, ("%d lwsp layers are named %q: remove one by its GUID"):format(#guids, tostring(which)) end
  local removed, notes = {}, {}
  for _, view in ipairs(b.views) do
    local r, terr = take_out(b, view, guids[1], notes)
    if not r then return nil, terr .. " (lwsp-catalog check shows what is left; repair takes it out)" end
    for _, g in ipairs(r) do removed[#removed + 1] = g end
  end
  return {removed = removed, notes = notes}
end

--- Repairs what `check` finds: chains naming ids that are gone (rewritten
-- without them, or taken out when they are lwsp's), lwsp layers that cannot
-- run or are installed halfway (taken out of every catalog), and mappings
-- with no catalog entry.
-- @return {actions = {text}, left = {problems check still finds}} | nil, message
function catalog.repair(b)
  b = b or catalog.wsc()
  if not b.available then return nil, b.why end
  local actions = {}
  for _ = 1, 4 do          -- each pass can uncover the next (a layer gone leaves its chains dangling)
    local problems, err = catalog.check(b)
    if not problems then return nil, err end
    local did = false
    local layers_done = {}
    for _, p in ipairs(problems) do
      if p.fix == "layer" and not layers_done[p.guid] then
        layers_done[p.guid] = true
        -- the lwsp layer the entry belongs to (a chain's layer, or itself)
        local v = read_view(b, p.view)
        local g = p.guid
        if v then
          local e = v.ids[p.id]
          if e and #e.ProtocolChain >= 2 and v.ids[e.ProtocolChain[1]] then g = v.ids[e.ProtocolChain[1]].ProviderId end
        end
        for _, view in ipairs(b.views) do
          local r, terr = take_out(b, view, g, actions)
          if not r then actions[#actions + 1] = ("could not take %s out of %s catalog: %s"):format(g, view_name(view), terr) end
        end
        actions[#actions + 1] = ("took out lwsp layer %s (%s)"):format(g, p.what)
        did = true
      elseif p.fix == "chain" then
        local v = read_view(b, p.view)
        local e = v and v.ids[p.id]
        if e then
          local lwsps = v.ours[e.ProviderId]
          if lwsps then
            local dok = b:deinstall(p.view, e.ProviderId)
            actions[#actions + 1] = ("%s lwsp chain %s from %s catalog (%s)"):format(dok and "deinstalled" or "could not deinstall", e.ProviderId, view_name(p.view), p.what)
          else
            local gone = {}
            for _, id in ipairs(e.ProtocolChain) do if not v.ids[id] then gone[id] = true end end
            local seen = {}
            for i, id in ipairs(e.ProtocolChain) do if seen[id] and i > 1 then gone[id] = true end seen[id] = true end
            local ok, uerr = unhook(b, p.view, {entries = v.entries}, gone, actions)
            if not ok then actions[#actions + 1] = ("could not repair chain %d of %s: %s (netsh winsock reset restores the catalog)"):format(p.id, e.ProviderId, uerr) end
          end
          did = true
        end
      elseif p.fix == "mapping" then
        local ok = b:unmap(p.view, p.guid)
        actions[#actions + 1] = ("%s the script mapping of %s in %s registry view (no catalog entry)"):format(ok and "dropped" or "could not drop", p.guid, view_name(p.view))
        did = true
      end
    end
    if not did then break end
  end
  local left, err = catalog.check(b)
  if not left then return nil, err end
  return {actions = actions, left = left}
end

-- ------------------------------------------------------------------------------------------
-- backends

local function read_file(path, n)
  local f = io.open(path, "rb")
  if not f then return nil, path .. ": cannot open" end
  local s = f:read(n or "a")
  f:close()
  return s or ""
end

-- what every backend answers the same way from this process's file system
local function files_of(b)
  function b.read(_, path) return read_file(path) end
  function b.exists(_, path) local f = io.open(path, "rb") if f then f:close() return true end return false end
  function b.dll_arch(_, path)
    local bytes, err = read_file(path, 4096)
    if not bytes then return nil, err end
    return catalog.pe_arch(bytes)
  end
  function b.dll_imports(_, path)
    local bytes, err = read_file(path)
    if not bytes then return nil, err end
    return catalog.pe_imports(bytes)
  end
  function b.copy_file(_, from, to)
    local src, err = read_file(from)
    if not src then return nil, err end
    local f = io.open(to, "wb")
    if not f then
      local ok, merr = lwsp.wsc.mkdir(dirname(to))      -- the folder and those above it
      if not ok then return nil, merr end
    end
    local werr
    if not f then f, werr = io.open(to, "wb") end
    if not f then return nil, werr end
    f:write(src)
    f:close()
    return true
  end
end

--- Windows' own catalogs, through lwsp.wsc.  A 64-bit process on a 64-bit
-- Windows handles both catalogs (views 64 and 32); a 32-bit Windows has one
-- (view 32); a 32-bit process on a 64-bit Windows can only list.
-- @tparam[opt] table o {dll =, dll32 = the DLL paths (default: lwsp.dll beside
--   this module for this process's architecture), lua32 = the i686 lua.exe
--   for the 32-bit test start}
function catalog.wsc(o)
  o = o or {}
  local wsc = lwsp.wsc
  local b = {name = "wsc", available = wsc.available, dll = o.dll, dll32 = o.dll32, lua32 = o.lua32}
  files_of(b)
  if wsc.available then
    -- a system install: every process of every user loads its entries, so
    -- their scripts are the system's (HKLM), never one user's
    assert(lwsp.registry.set_root("HKLM"))
    local os64 = wsc.os_bits and wsc.os_bits() or wsc.bits
    b.views = os64 == 64 and {64, 32} or {32}
    if os64 == 64 and not wsc.has("WSCEnumProtocols32") then
      -- (Wine's ws2_32): only the native catalog can be read; nothing is installed
      b.views, b.no32 = {64}, "this ws2_32 has no WSCEnumProtocols32: the 32-bit catalog cannot be reached,"
        .. " and an install into one catalog of two would cut 32-bit programs off"
    end
    -- by default the provider as it ships beside this build (provider\lwsp.dll,
    -- Lua linked in), not the Lua module this process runs, which imports lua54.dll
    local own = (dirname(lwsp.path()) or ".") .. "\\provider\\lwsp.dll"
    if not b:exists(own) then own = lwsp.path() end
    if wsc.bits == 64 then b.dll = b.dll or own else b.dll32 = b.dll32 or own b.dll = b.dll or (os64 == 32 and b.dll32 or nil) end
    if os64 == 64 and wsc.bits ~= 64 then
      b.available, b.why = false, "a 32-bit process on a 64-bit Windows reaches one catalog of two: run the 64-bit lua.exe"
    end
  else
    b.views = {0}
    b.why = "no Winsock catalog on this system (lwsp's own host has its catalog: wsp.catalog.host())"
  end
  function b.enum(_, view) return wsc.enum(view) end
  if wsc.has(wsc.bits == 64 and "WSCInstallProviderAndChains64_32" or "WSCInstallProviderAndChains") then
    function b.install_and_chains(_, guid, path, path32, name, flags, protos)
      return wsc.install_and_chains(guid, path, path32, name, flags, protos)
    end
  end
  function b.install(_, _, guid, path, infos) return wsc.install(guid, path, infos) end
  function b.update(_, view, guid, path, infos) return wsc.update(guid, path, infos, view) end
  function b.write_order(_, view, ids) return wsc.write_order(ids, view) end
  function b.deinstall(_, view, guid) return wsc.deinstall(guid, view) end
  function b.set_category(_, view, guid, cats) return wsc.set_category(guid, cats, view) end
  function b.map(_, view, guid, script) return lwsp.registry.set(guid, script, view) end
  function b.set_on_failure(_, view, guid, mode) return lwsp.registry.set_on_failure(guid, mode, view) end
  function b.set_config(_, view, guid, text) return lwsp.registry.set_config(guid, text, view) end
  function b.on_failure(_, _, guid) return lwsp.registry.on_failure(guid) end
  function b.unmap(_, view, guid) return lwsp.registry.remove(guid, view) end
  function b.mappings(_, view) return lwsp.registry.list(view) end
  function b.insecure(_, path) return wsc.insecure(path) end
  function b.expand(_, path, view) return wsc.expand(path, view) end
  function b.test_start(self, view, dll, guid)
    -- the architectures from the PE headers, before any process starts: a
    -- DLL of the other one would only fail there as LoadLibrary's error 193
    local arch, aerr = self:dll_arch(dll)
    if not arch then return nil, ("%s: %s"):format(dll, aerr) end
    if arch ~= view then return nil, ("%s is a %d-bit DLL: a %d-bit process cannot load it"):format(dll, arch, view) end
    local exe = view == 32 and (self.lua32 or (wsc.bits == 32 and wsc.lua_exe())) or (view == 64 and wsc.bits == 64 and wsc.lua_exe())
    if not exe then return nil, ("the %d-bit test start needs the %s lua.exe (--lua32)"):format(view, view == 32 and "i686" or "x86_64") end
    local earch = self:dll_arch(exe)
    if earch ~= view then
      return nil, ("%s is not a %d-bit program: the %d-bit test start needs the %s lua.exe (--lua32)"):format(exe, view, view, view == 32 and "i686" or "x86_64")
    end
    local why = catalog.check_imports(self, dll, view)
    if why then return nil, why end
    return catalog.test_start(exe, dll, guid)
  end
  return b
end

--- lwsp's host's catalog in this process: the same install, list, remove and
-- repair, with the host playing ws2_32.  It has one catalog (view 0) and no
-- architectures or ACLs; its test start compiles the script.
-- @tparam[opt] table o {and_chains = false: install the way ws2_32s without
--   WSCInstallProviderAndChains do}
function catalog.host(o)
  o = o or {}
  local h = require "lwsp.host"
  local b = {name = "host", available = true, dll = o.dll or lwsp.path(), views = {0}}
  files_of(b)
  function b.enum() return h.catalog() end
  local function kind(info)
    local n = #(info.ProtocolChain or {})
    return n == 0 and "layer" or n == 1 and "base" or "chain"
  end
  function b.install(_, _, guid, path, infos)
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
    function b.install_and_chains(self, guid, path, _, name, flags, bases)
      local layer = catalog.layer_entry(bases[1], name)
      layer.dwServiceFlags1 = flags
      local ok, err, code = self:install(0, guid, path, {layer})
      if not ok then return nil, err, code end
      local id
      for _, e in ipairs(h.catalog()) do if e.ProviderId == guid then id = e.dwCatalogEntryId end end
      local chain_guid, chains = lwsp.guid(), {}
      for i, base in ipairs(bases) do chains[i] = catalog.chain_entry(base, id, chain_guid, name) end
      ok, err, code = self:install(0, chain_guid, path, chains)
      if not ok then self:deinstall(0, guid) return nil, err, code end
      local all, first = h.catalog(), {}
      for _, e in ipairs(all) do if e.ProviderId == chain_guid then first[#first + 1] = e.dwCatalogEntryId end end
      h.order((order_first(all, first)))
      return id
    end
  end
  function b.update(_, _, guid, path, infos)
    for _, info in ipairs(infos) do
      local ok, err = pcall(h.remove, info.dwCatalogEntryId)
      if not ok then return nil, "WSAEINVAL: " .. tostring(err), wsp.WSAEINVAL end
      local i = copy(info)
      i.ProviderId, i.dwCatalogEntryId, i.path = guid, nil, nil
      h.install(i, path, kind(i))
    end
    return true
  end
  function b.write_order(_, _, ids) return h.order(ids) end
  function b.deinstall(_, _, guid)
    local found
    for _, e in ipairs(h.catalog()) do
      if e.ProviderId == guid then h.remove(e.dwCatalogEntryId) found = true end
    end
    if not found then return nil, "WSAEINVAL: no provider with that GUID", wsp.WSAEINVAL end
    return true
  end
  function b.set_category() return true end
  function b.map(_, _, guid, script) return lwsp.registry.set(guid, script) end
  function b.set_on_failure(_, _, guid, mode) return lwsp.registry.set_on_failure(guid, mode) end
  function b.set_config(_, _, guid, text) return lwsp.registry.set_config(guid, text) end
  function b.on_failure(_, _, guid) return lwsp.registry.on_failure(guid) end
  function b.unmap(_, _, guid) return lwsp.registry.remove(guid) end
  function b.mappings() return lwsp.registry.list() end
  function b.insecure() return nil end
  function b.expand(_, path) return path end
  function b.test_start(_, _, _, guid)
    local script = lwsp.registry.get(guid)
    if not script then return nil, "no script registered for " .. guid end
    local chunk, err = loadfile(script, "t")
    if not chunk then return nil, err end
    return true
  end
  return b
end

-- ------------------------------------------------------------------------------------------
-- the test start: the provider started in a fresh process before the catalog knows it

-- Run by a lua.exe of the DLL's architecture, from the temporary folder.
-- The process is lwsp's host playing ws2_32, from the installing tool's own
-- files (the lwsp module and lwsp\host.dll beside that lua.exe, the wsp
-- modules from `mods`); the provider under test is loaded by the host by its
-- full path, as ws2_32 loads it, and started on its own: a layered entry
-- under the install's GUID (WSPStartup finds the script through this
-- architecture's registry view) over the native base provider beside the DLL
-- (else beside lua.exe), a chain, and a TCP socket opened and bound through
-- it.  So the DLL needs nothing but what ships beside it (lwsp.dll with Lua
-- linked in, lwsp_native.dll, lua\wsp\), as in every other program.
local PROBE = [=[
local dll, guid, tool, mods = arg[1], arg[2], arg[3], arg[4]
package.path = mods .. "\\?.lua;" .. mods .. "\\?\\init.lua"
package.cpath = tool .. "\\?.dll;" .. package.cpath
local lwsp = require "lwsp"
local wsp = require "wsp"
local whost = require "wsp.host"
local h = require "lwsp.host"
local native = dll:match("^(.*)[\\/][^\\/]*$") .. "\\lwsp_native.dll"
local f = io.open(native, "rb")
if f then f:close() else native = tool .. "\\lwsp_native.dll" end
local base = whost.install_native{path = native}
local layer = h.install(whost.protocol_info{guid = guid, name = "lwsp test start"}, dll, "layer")
local tcp
for _, e in ipairs(h.catalog()) do if e.dwCatalogEntryId == base.tcp then tcp = e end end
local c = {}
for k, v in pairs(tcp) do c[k] = v end
c.path, c.dwCatalogEntryId, c.ProviderId = nil, nil, lwsp.guid()
c.ProtocolChain = {layer, base.tcp}
local chain = h.install(c, dll, "chain")
local s, serr = h.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, chain)
if not s then io.write("no socket through the layer: ", tostring(serr), "\n") os.exit(4) end
local ok, berr = h.bind(s, "127.0.0.1:0")
h.close(s)
h.cleanup()
if not ok then io.write("bind through the layer failed: ", tostring(berr), "\n") os.exit(5) end
io.write(("lwsp test start: ok (a %d-bit process)\n"):format(string.packsize("T") * 8))
os.exit(0)
]=]

-- the folder holding wsp\ (this module's own), absolute
local function own_modules()
  local src = debug.getinfo(1, "S").source:sub(2)
  local d = dirname(dirname(src) or ".") or "."
  return require("wsp.host").absolute(d)
end

--- Starts the provider in a fresh process: `exe` (a lua.exe of the DLL's
-- architecture, with lwsp's module and host beside it) hosts `dll`, loaded by
-- its full path from the temporary folder, and opens a socket through the
-- layer whose GUID is `guid`.  `mods` is the folder holding the host's wsp
-- modules (default: this module's).  The DLL's own imports are not looked at
-- here (that process has lua54.dll loaded): catalog.check_imports is.
-- @return true, what the process said | nil, what it said (or how it ended, when it said nothing)
function catalog.test_start(exe, dll, guid, mods)
  local abs = require("wsp.host").absolute
  exe, dll, mods = abs(exe), abs(dll), mods and abs(mods) or own_modules()
  local probe = os.tmpname()
  if package.config:sub(1, 1) == "\\" and not windows_path(probe) then
    probe = (os.getenv("TEMP") or "C:\\Windows\\Temp") .. probe
  end
  local f = io.open(probe, "w")
  if not f then return nil, "cannot write the test start's script " .. probe end
  f:write(PROBE)
  f:close()
  local dir = dirname(probe)
  local line = ('cd /d "%s" && "%s" "%s" "%s" %s "%s" "%s" 2>&1'):format(dir, exe, probe, dll, guid, dirname(exe), mods)
  local p = io.popen('"' .. line .. '"')
  local out = p and p:read("a") or ""
  local ok, _, code
  if p then ok, _, code = p:close() end
  os.remove(probe)
  out = out:gsub("\r", ""):gsub("%s+$", "")
  if ok and out:find("lwsp test start: ok", 1, true) then return true, out end
  if out ~= "" then return nil, out end
  if not code then return nil, "the process failed" end
  -- a process that never ran (Windows' loader refused it) says nothing: its status does
  code = code & 0xffffffff
  return nil, ("%s exited with status 0x%08X%s"):format(exe, code, code == 0xC0000135
    and " (STATUS_DLL_NOT_FOUND: a DLL it imports is not beside it nor in the system folder)"
    or code == 0xC000007B and " (STATUS_INVALID_IMAGE_FORMAT: a DLL of the other architecture)" or "")
end

-- ------------------------------------------------------------------------------------------
-- staging: the files an install needs, copied where only administrators can write

--- The Lua modules the runtime needs beside its DLL (lua\wsp\*.lua).
catalog.MODULES = {"init", "layered", "util", "trace", "host"}

--- Copies what ships of the provider (the layout tools/mingw-provider.sh
-- builds as build/mingw/<arch>/provider/): the DLL as lwsp.dll (Lua linked
-- in), the native base provider the test start runs over when it sits beside
-- it, lwsp's wsp modules into lua\wsp\ (from `modules`, else lua\wsp\ beside
-- the DLL, else beside this module), and the script, into `dir` (and the
-- 32-bit DLL into `dir32`).  Nothing else: the test start's host is the
-- installing tool's own, and a DLL that needs lua54.dll is refused by the
-- test start whatever is copied beside it.
-- @return {dll =, dll32 =, script =} the copies' paths | nil, message
function catalog.stage(b, o)
  local s = sep_of(o.dir)
  local out = {}
  local function cp(from, to)
    local ok, err = b:copy_file(from, to)
    if not ok then error(("cannot copy %s to %s: %s"):format(from, to, tostring(err)), 0) end
  end
  local ok, err = pcall(function()
    for _, pair in ipairs{{o.dll, o.dir, "dll"}, {o.dll32, o.dir32, "dll32"}} do
      local dll, dir = pair[1], pair[2]
      if dll and dir then
        local from = dirname(dll) or "."
        local moddir = o.modules
        if not moddir then
          moddir = from .. s .. "lua" .. s .. "wsp"
          if not b:exists(moddir .. s .. "init.lua") then moddir = dirname(debug.getinfo(1, "S").source:sub(2)) or "." end
        end
        cp(dll, dir .. s .. "lwsp.dll")
        out[pair[3]] = dir .. s .. "lwsp.dll"
        if b:exists(from .. s .. "lwsp_native.dll") then cp(from .. s .. "lwsp_native.dll", dir .. s .. "lwsp_native.dll") end
        for _, m in ipairs(catalog.MODULES) do
          cp(moddir .. s .. m .. ".lua", dir .. s .. "lua" .. s .. "wsp" .. s .. m .. ".lua")
        end
      end
    end
    out.script = o.dir .. s .. (o.script:match("([^/\\]+)$"))
    cp(o.script, out.script)
  end)
  if not ok then return nil, err end
  return out
end

-- ------------------------------------------------------------------------------------------
-- the command (bin/lwsp-catalog)

local USAGE = [[
usage: lwsp-catalog install SCRIPT [--name NAME] [--over tcp,udp,tcp6,udp6] [--dll PATH] [--dll32 PATH]
                                   [--lua32 PATH] [--category LIST] [--to DIR] [--to32 DIR]
                                   [--modules DIR] [--in-place] [--config FILE]
                                   [--on-failure fail|passthrough]
       lwsp-catalog list
       lwsp-catalog check
       lwsp-catalog remove GUID|NAME
       lwsp-catalog repair
Installs a Lua script as a layered provider in the Winsock catalogs (both on a
64-bit Windows: --dll32 names the i686 lwsp.dll), lists lwsp's entries, checks
every catalog invariant, removes a layer, repairs a broken catalog.  Run it as
an administrator.  install copies the DLLs, lwsp's modules and the script to
--to (default %ProgramFiles%\lwsp, the 32-bit DLL to --to32, default
%ProgramFiles(x86)%\lwsp; lwsp's Lua modules from --modules, default beside
this module) unless --in-place, and refuses files that non-administrators can
change.  --dll: default provider\lwsp.dll beside the lwsp module that runs
(the provider as it ships, Lua linked in; a DLL importing what the system
folder lacks, as the module build's lua54.dll, is refused).  --lua32: the
i686 lua.exe for the 32-bit test start.  --category:
LSP categories (inspector, redirector, proxy, firewall, inbound_modify,
outbound_modify, crypto_compress, local_cache, system), none by default.
--on-failure: what the layer does when its script cannot run (it does not
load, its top level fails or runs out of budget): fail (the default:
WSPStartup fails with WSAEPROVIDERFAILEDINIT, and TCP and UDP with it) or
passthrough (every call goes to the layer below, logged and traced).]]

--- The options `install` takes, as USAGE lists them (anything else is a usage error).
catalog.OPTIONS = {}
for o in USAGE:match("^(.-)\n%s*lwsp%-catalog list"):gmatch("%-%-([%w%-]+)") do catalog.OPTIONS[o] = true end

--- Runs the command with argv; writes to out (a function of one line).
-- @treturn integer exit status
function catalog.main(argv, out, backend)
  out = out or print
  local cmd, pos, opt = argv[1], {}, {}
  local i = 2
  while argv[i] do
    local a = argv[i]
    if a == "--in-place" then opt["in-place"] = true
    elseif a:match("^%-%-") then
      local k, v = a:match("^%-%-([%w%-]+)=(.*)$")
      if not k then k, v = a:sub(3), argv[i + 1]; i = i + 1 end
      if not catalog.OPTIONS[k] then out("lwsp-catalog: unknown option --" .. k) out(USAGE) return 2 end
      if v == nil then out("lwsp-catalog: " .. a .. " needs a value") return 2 end
      opt[k] = v
    else pos[#pos + 1] = a end
    i = i + 1
  end
  local b = backend or catalog.wsc{dll = opt.dll, dll32 = opt.dll32, lua32 = opt.lua32}
  local function problems(list)
    for _, p in ipairs(list) do
      out(("problem: %s catalog: %s: %s%s"):format(p.view == 0 and "the" or p.view .. "-bit", p.what, p.guid, p.id and (" [%d]"):format(p.id) or ""))
    end
  end
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
    if not b.available then out("lwsp-catalog: install failed: " .. tostring(b.why)) return 1 end
    local script, dll, dll32 = pos[1], opt.dll or b.dll, opt.dll32 or b.dll32
    if b.name == "wsc" then            -- paths relative to the current folder, as a command line means them
      local abs = require("wsp.host").absolute
      script, dll, dll32 = abs(script), dll and abs(dll), dll32 and abs(dll32)
      if b.lua32 then b.lua32 = abs(b.lua32) end
    end
    if not opt["in-place"] and b.name ~= "host" then
      local dir = opt.to or b:expand("%ProgramFiles%\\lwsp", b.views[1])
      local dir32 = #b.views == 2 and (opt.to32 or b:expand("%ProgramFiles%\\lwsp", 32)) or nil
      local st, serr = catalog.stage(b, {dll = dll, dll32 = #b.views == 2 and dll32 or nil, dir = dir, dir32 = dir32,
        script = script, modules = opt.modules})
      if not st then out("lwsp-catalog: install failed: " .. serr) out("nothing was installed") return 1 end
      script, dll, dll32 = st.script, st.dll, st.dll32 or dll32
    end
    local r, err = catalog.install{script = script, name = opt.name, over = over, backend = b, dll = dll, dll32 = dll32,
      category = opt.category, on_failure = opt["on-failure"], config = config}
    if not r then out("lwsp-catalog: install failed: " .. err) return 1 end
    for _, view in ipairs(b.views) do
      local v = r.views[view]
      local t = {}
      for _, k in ipairs(KIND_ORDER) do if v.chains[k] then t[#t + 1] = ("%s=%d"):format(k, v.chains[k]) end end
      out(("installed %s in %s catalog: layered entry %d, chains %s"):format(r.guid, view_name(view), v.layer, table.concat(t, " ")))
    end
    return 0
  elseif cmd == "list" or cmd == "check" then
    if not b.available then out("lwsp-catalog: " .. tostring(b.why)) return 1 end
    local total = 0
    if cmd == "list" then
      for _, view in ipairs(b.views) do
        local v, err = read_view(b, view)
        if not v then out("lwsp-catalog: " .. tostring(err)) return 1 end
        for _, l in ipairs(v.layers) do
          total = total + 1
          out(("%s%s  %s  [%d]  %s  on-failure %s"):format(view == 0 and "" or view .. "-bit: ", l.guid, l.name, l.id,
            l.script or "(no script)", l.on_failure))
          for _, c in ipairs(l.chains) do
            out(("    [%d] %-5s over %s  (%s)"):format(c.id, c.kind or "?", c.over or "?", c.guid))
          end
        end
      end
    end
    local list, err = catalog.check(b)
    if not list then out("lwsp-catalog: " .. tostring(err)) return 1 end
    problems(list)
    if cmd == "list" and total == 0 then out("no lwsp layers installed") end
    if cmd == "check" then
      if #list == 0 then out("the catalog is consistent") return 0 end
      return 1
    end
    return 0
  elseif cmd == "remove" and pos[1] then
    local r, err = catalog.remove(pos[1], b)
    if not r then out("lwsp-catalog: remove failed: " .. err) return 1 end
    for _, n in ipairs(r.notes) do out(n) end
    for _, g in ipairs(r.removed) do require("wsp.host").write_config(g, nil) end
    out("removed " .. table.concat(r.removed, " "))
    return 0
  elseif cmd == "repair" then
    local r, err = catalog.repair(b)
    if not r then out("lwsp-catalog: repair failed: " .. err) return 1 end
    for _, a in ipairs(r.actions) do out(a) end
    if #r.actions == 0 and #r.left == 0 then out("nothing to repair") end
    problems(r.left)
    return #r.left == 0 and 0 or 1
  end
  out(USAGE)
  return 2
end

return catalog
