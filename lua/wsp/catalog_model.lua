--- wsp.catalog_model: a Windows machine's Winsock catalogs as ws2_32 documents
-- them, for proving wsp.catalog's install, remove, repair and undo where no
-- real catalog can be touched.
--
-- The model is a catalog backend (the narrow interface wsp.catalog talks
-- through, implemented for Windows by catalog.wsc()) over:
--
-- * two catalogs on a 64-bit machine (views 64 and 32), one on a 32-bit one,
--   each with its own order and its own catalog ids, which the catalog
--   assigns itself (never the caller);
-- * `install_and_chains` = WSCInstallProviderAndChains64_32 (both catalogs,
--   one DLL path each) or WSCInstallProviderAndChains (32-bit machine): the
--   hidden layered entry under the caller's GUID, and over every base entry
--   matching each given protocol (iAddressFamily, iSocketType, iProtocol) a
--   chain {layer, base} under a GUID the call makes up, put first in the order;
-- * `install` = WSCInstallProvider (the machine's native catalog only: there is
--   no WSCInstallProvider32), `deinstall` = WSCDeinstallProvider /
--   WSCDeinstallProvider32, each touching its own catalog alone, and leaving
--   every chain that named a removed id dangling, as the real one does;
-- * `update` = WSCUpdateProvider(32), `write_order` = WSCWriteProviderOrder(32)
--   (a permutation of every id, or WSAEINVAL), `set_category` =
--   WSCSetProviderInfo(32) with ProviderInfoLspCategories;
-- * a registry with a 64- and a 32-bit view (WOW6432Node), a file system with
--   each DLL's architecture (as its PE header says) and each file's and
--   folder's ACL reduced to "writable by someone other than administrators and
--   SYSTEM", and a test start of a provider in a fresh process of each
--   architecture (a DLL's `imports` not in that architecture's system folder
--   refused first, as catalog.check_imports does for a real DLL).
--
-- Fault injection: `m.fail_at = n` (or a set {[n] = true, ...}) makes the n-th
-- call (every call above counts, reads too) fail with `m.fail_code` and change
-- nothing; `m.crash_at = n` makes
-- the n-th call raise `model.CRASH` before it runs (the installer's process
-- dies there: no undo runs); `m.partial = true` makes install_and_chains write
-- the 64-bit catalog and then fail on the 32-bit one.  `m.calls` counts the
-- calls, `m.log` names them, `m.after` (a function of the model) runs after
-- every call that changed something.
-- @module wsp.catalog_model
local wsp = require "wsp"

local model = {}

--- The error a crash raises.
model.CRASH = setmetatable({}, {__tostring = function() return "the installer's process died here (model crash)" end})

local WSAEINVAL = wsp.WSAEINVAL
local WSANO_RECOVERY = 11003

local function copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return c
end
model.copy = copy

--- A path as Windows compares it: case-insensitive, either slash.
function model.norm(p)
  return (p:gsub("/", "\\"):lower():gsub("\\+$", ""))
end
local norm = model.norm

local function dirname(p) return p:match("^(.*)\\[^\\]*$") end

local function err(code, text)
  return nil, ("%s: %s"):format(wsp.errname and wsp.errname(code) or tostring(code), text), code
end

-- the base providers of a fresh Windows (MSAFD Tcpip and RSVP over IPv4 and IPv6)
local MSAFD = "{E70F1AA0-AB8B-11CF-8CA3-00805F48A192}"
local RSVP = "{9D60A9E0-337A-11D0-BD88-0000C082E69A}"
local BASES = {
  {MSAFD, "MSAFD Tcpip [TCP/IP]", wsp.AF_INET, wsp.SOCK_STREAM, wsp.IPPROTO_TCP, 0x20066},
  {MSAFD, "MSAFD Tcpip [UDP/IP]", wsp.AF_INET, wsp.SOCK_DGRAM, wsp.IPPROTO_UDP, 0x20609},
  {MSAFD, "MSAFD Tcpip [RAW/IP]", wsp.AF_INET, 3, 0, 0x20609},
  {MSAFD, "MSAFD Tcpip [TCP/IPv6]", wsp.AF_INET6, wsp.SOCK_STREAM, wsp.IPPROTO_TCP, 0x20066},
  {MSAFD, "MSAFD Tcpip [UDP/IPv6]", wsp.AF_INET6, wsp.SOCK_DGRAM, wsp.IPPROTO_UDP, 0x20609},
  {RSVP, "RSVPTCP Service Provider", wsp.AF_INET, wsp.SOCK_STREAM, wsp.IPPROTO_TCP, 0x22066},
  {RSVP, "RSVPUDP Service Provider", wsp.AF_INET, wsp.SOCK_DGRAM, wsp.IPPROTO_UDP, 0x22609},
}

local function base_entry(b)
  return {
    ProviderId = b[1], szProtocol = b[2], iAddressFamily = b[3], iSocketType = b[4], iProtocol = b[5],
    dwServiceFlags1 = b[6], dwServiceFlags2 = 0, dwServiceFlags3 = 0, dwServiceFlags4 = 0,
    dwProviderFlags = wsp.PFL_MATCHES_PROTOCOL_ZERO, iVersion = 2, iMaxSockAddr = b[3] == wsp.AF_INET6 and 28 or 16,
    iMinSockAddr = b[3] == wsp.AF_INET6 and 28 or 16, iProtocolMaxOffset = 0, iNetworkByteOrder = 0,
    iSecurityScheme = 0, dwMessageSize = 0, dwProviderReserved = 0, ProtocolChain = {0},
    path = "%SystemRoot%\\system32\\mswsock.dll",
  }
end

--- A fresh machine.
-- @tparam[opt] table o {bits = 64 (two catalogs) or 32 (one)}
-- @return the model, which is also a catalog backend
function model.new(o)
  o = o or {}
  local m = {name = "model", available = true, bits = o.bits or 64, calls = 0, log = {},
             fail_code = o.fail_code or WSANO_RECOVERY, guids = 0}
  m.views = m.bits == 64 and {64, 32} or {32}
  m.catalogs, m.next_id, m.registry, m.categories = {}, {}, {}, {}
  for i, v in ipairs(m.views) do
    local cat = {}
    m.catalogs[v], m.registry[v], m.categories[v] = cat, {}, {}
    -- the two catalogs do not agree on ids: the 32-bit one holds one entry more
    m.next_id[v] = 1001 + (i - 1) * 7
    for _, b in ipairs(BASES) do
      local e = base_entry(b)
      e.dwCatalogEntryId = m.next_id[v]
      m.next_id[v] = m.next_id[v] + 1
      e.ProtocolChain = {0}
      cat[#cat + 1] = e
    end
  end
  -- files: path -> {arch = 64|32 (a DLL), imports = {names of DLLs it needs that are not
-- the system's}, script = source, dir = true, open = true
  -- (writable by someone other than administrators and SYSTEM)}
  m.files = {}
  m.files[norm("C:")] = {dir = true, open = true}   -- Authenticated Users may create folders there
  m.files[norm("C:\\Program Files")] = {dir = true}
  m.files[norm("C:\\Program Files (x86)")] = {dir = true}
  m.files[norm("C:\\Windows")] = {dir = true}
  m.files[norm("C:\\Windows\\system32")] = {dir = true}
  m.files[norm("C:\\Windows\\system32\\mswsock.dll")] = {arch = m.bits}
  if m.bits == 64 then m.files[norm("C:\\Windows\\SysWOW64\\mswsock.dll")] = {arch = 32} end
  m.env = {SystemRoot = "C:\\Windows", ProgramFiles = "C:\\Program Files"}
  return setmetatable(m, {__index = model})
end

-- ------------------------------------------------------------------------------------------
-- the machine's own state, for specs (not through the interface: no fault, no count)

--- Puts a file or folder into the model's file system.
-- @tparam string path the file's path
-- @tparam table f {arch = 64|32, imports = {names}, script = source, dir = true, open = true}
function model:put(path, f)
  self.files[norm(path)] = f
  local d = dirname(norm(path))
  while d and not self.files[d] do self.files[d] = {dir = true} d = dirname(d) end
end

--- A deep copy of both catalogs and registry views (to compare with later).
function model:snapshot()
  return copy{catalogs = self.catalogs, registry = self.registry, categories = self.categories}
end

--- The state as comparable data: every catalog in order, every mapping.
function model:state()
  local s = {}
  for _, v in ipairs(self.views) do
    local c = {}
    for i, e in ipairs(self.catalogs[v]) do c[i] = copy(e) end
    s[v] = {catalog = c, registry = copy(self.registry[v]), categories = copy(self.categories[v]),
            configs = copy((self.configs or {})[v] or {}), on_failure = copy((self.on_failures or {})[v] or {})}
  end
  return s
end

local function new_guid(m)
  m.guids = m.guids + 1
  return ("{C0DE%04X-0000-4000-8000-%012X}"):format(m.bits, m.guids)
end
model.new_guid = new_guid

local function ids_of(cat)
  local t = {}
  for _, e in ipairs(cat) do t[e.dwCatalogEntryId] = e end
  return t
end

-- every call goes through here: counted, logged, and failed or crashed on demand
local function gate(m, name)
  m.calls = m.calls + 1
  m.log[#m.log + 1] = name
  if m.crash_at == m.calls then error(model.CRASH, 0) end
  if m.fail_at == m.calls or (type(m.fail_at) == "table" and m.fail_at[m.calls]) then return false end
  return true
end
local function changed(m) if m.after then m.after(m) end end
local function faulted(m, name) return err(m.fail_code, name .. " failed (injected fault)") end

local function view_ok(m, view) return m.catalogs[view] ~= nil end

local function add_entry(m, view, info, guid, path)
  local e = copy(info)
  e.ProviderId, e.path = guid, path
  e.dwCatalogEntryId = m.next_id[view]
  m.next_id[view] = m.next_id[view] + 1
  if #e.ProtocolChain == 1 then e.ProtocolChain = {0} end
  table.insert(m.catalogs[view], e)
  return e
end

-- ------------------------------------------------------------------------------------------
-- the interface (as catalog.wsc() implements it over ws2_32)

--- WSCEnumProtocols(32): every entry of a catalog in order, each with `path`
-- (WSCGetProviderPath(32), unexpanded).
function model.enum(m, view)
  if not gate(m, "enum" .. view) then return faulted(m, "WSCEnumProtocols") end
  if not view_ok(m, view) then return err(WSAEINVAL, "no such catalog") end
  return copy(m.catalogs[view])
end

local function layer_of(base, name, flags)
  local e = copy(base)
  e.ProtocolChain, e.dwServiceFlags1 = {}, flags
  e.dwProviderFlags = wsp.PFL_HIDDEN
  e.iSocketType, e.iProtocol, e.iProtocolMaxOffset = 0, 0, 0
  e.szProtocol = name
  return e
end

--- WSCInstallProviderAndChains64_32 (64-bit machine: both catalogs) or
-- WSCInstallProviderAndChains (32-bit machine).
-- @return the layered entry's catalog id in the machine's native catalog
function model.install_and_chains(m, guid, path, path32, name, flags, protocols)
  if not gate(m, "install_and_chains") then return faulted(m, "WSCInstallProviderAndChains") end
  if type(protocols) ~= "table" or #protocols == 0 then return err(WSAEINVAL, "no protocols") end
  for _, v in ipairs(m.views) do
    for _, e in ipairs(m.catalogs[v]) do
      if e.ProviderId == guid then return err(WSAEINVAL, "a provider with that GUID is installed") end
    end
  end
  if m.bits == 64 and not path32 then return err(WSAEINVAL, "no 32-bit DLL path") end
  local first
  for i, v in ipairs(m.views) do
    if i == 2 and m.partial then changed(m) return err(WSANO_RECOVERY, "the 32-bit catalog could not be written") end
    local cat = m.catalogs[v]
    local p = (v == 32 and m.bits == 64) and path32 or path
    local bases = {}
    for _, want in ipairs(protocols) do
      for _, e in ipairs(cat) do
        if #e.ProtocolChain == 1 and e.iAddressFamily == want.iAddressFamily and e.iSocketType == want.iSocketType
            and e.iProtocol == want.iProtocol then bases[#bases + 1] = e end
      end
    end
    if #bases == 0 then return err(WSAEINVAL, "no base provider matches") end
    local layer = add_entry(m, v, layer_of(bases[1], name, flags), guid, p)
    first = first or layer.dwCatalogEntryId
    local cguid = new_guid(m)
    local chains = {}
    for _, b in ipairs(bases) do
      local c = copy(b)
      c.ProtocolChain = {layer.dwCatalogEntryId, b.dwCatalogEntryId}
      c.szProtocol = (name .. " over [" .. b.szProtocol .. "]"):sub(1, 255)
      c.dwProviderFlags = c.dwProviderFlags & ~wsp.PFL_HIDDEN
      chains[#chains + 1] = add_entry(m, v, c, cguid, p)
    end
    -- the chains first, the rest in their order
    local set = {}
    for _, c in ipairs(chains) do set[c] = true end
    local order = {}
    for _, c in ipairs(chains) do order[#order + 1] = c end
    for _, e in ipairs(cat) do if not set[e] then order[#order + 1] = e end end
    m.catalogs[v] = order
  end
  changed(m)
  return first
end

--- WSCInstallProvider: entries under one GUID in the native catalog, at its end.
function model.install(m, view, guid, path, infos)
  if not gate(m, "install" .. view) then return faulted(m, "WSCInstallProvider") end
  if view ~= m.views[1] then return err(WSAEINVAL, "WSCInstallProvider reaches the native catalog only") end
  for _, e in ipairs(m.catalogs[view]) do
    if e.ProviderId == guid then return err(WSAEINVAL, "a provider with that GUID is installed") end
  end
  for _, info in ipairs(infos) do
    local n = #(info.ProtocolChain or {})
    if n > 7 then return err(WSAEINVAL, "ChainLen over 7") end
  end
  for _, info in ipairs(infos) do add_entry(m, view, info, guid, path) end
  changed(m)
  return true
end

--- WSCDeinstallProvider(32): every entry of that GUID from one catalog;
-- chains naming them are left as they are (dangling).
function model.deinstall(m, view, guid)
  if not gate(m, "deinstall" .. view) then return faulted(m, "WSCDeinstallProvider") end
  if not view_ok(m, view) then return err(WSAEINVAL, "no such catalog") end
  local keep, found = {}, false
  for _, e in ipairs(m.catalogs[view]) do
    if e.ProviderId == guid then found = true else keep[#keep + 1] = e end
  end
  if not found then return err(WSAEINVAL, "no provider with that GUID") end
  m.catalogs[view] = keep
  m.categories[view][guid] = nil
  changed(m)
  return true
end

--- WSCUpdateProvider(32): rewrites the entries of a GUID (matched by catalog
-- id, which stays), and their DLL path.
function model.update(m, view, guid, path, infos)
  if not gate(m, "update" .. view) then return faulted(m, "WSCUpdateProvider") end
  if not view_ok(m, view) then return err(WSAEINVAL, "no such catalog") end
  local cat = m.catalogs[view]
  local by = ids_of(cat)
  for _, info in ipairs(infos) do
    local e = by[info.dwCatalogEntryId]
    if not e or e.ProviderId ~= guid then return err(WSAEINVAL, "no entry " .. tostring(info.dwCatalogEntryId) .. " of that GUID") end
    if #(info.ProtocolChain or {}) > 7 then return err(WSAEINVAL, "ChainLen over 7") end
  end
  for _, info in ipairs(infos) do
    for i, e in ipairs(cat) do
      if e.dwCatalogEntryId == info.dwCatalogEntryId then
        local n = copy(info)
        n.ProviderId, n.path = guid, path
        cat[i] = n
      end
    end
  end
  changed(m)
  return true
end

--- WSCWriteProviderOrder(32): a permutation of every catalog id.
function model.write_order(m, view, ids)
  if not gate(m, "write_order" .. view) then return faulted(m, "WSCWriteProviderOrder") end
  if not view_ok(m, view) then return err(WSAEINVAL, "no such catalog") end
  local cat = m.catalogs[view]
  local by = ids_of(cat)
  if #ids ~= #cat then return err(WSAEINVAL, "the order must name every entry once") end
  local seen, order = {}, {}
  for i, id in ipairs(ids) do
    if not by[id] or seen[id] then return err(WSAEINVAL, "the order must name every entry once") end
    seen[id] = true
    order[i] = by[id]
  end
  m.catalogs[view] = order
  changed(m)
  return true
end

--- WSCSetProviderInfo(32), ProviderInfoLspCategories.
function model.set_category(m, view, guid, categories)
  if not gate(m, "set_category" .. view) then return faulted(m, "WSCSetProviderInfo") end
  local found
  for _, e in ipairs(m.catalogs[view] or {}) do if e.ProviderId == guid then found = true end end
  if not found then return err(WSAEINVAL, "no provider with that GUID") end
  m.categories[view][guid] = categories
  changed(m)
  return true
end

--- HKLM\SOFTWARE\lwsp\Providers in one registry view.
function model.map(m, view, guid, script)
  if not gate(m, "map" .. view) then return faulted(m, "RegSetValueEx") end
  m.registry[view][guid] = script
  changed(m)
  return true
end
--- {GUID}.config beside the mapping, in one registry view.
function model.set_config(m, view, guid, text)
  if not gate(m, "set_config" .. view) then return faulted(m, "RegSetValueEx") end
  m.configs = m.configs or {}
  m.configs[view] = m.configs[view] or {}
  m.configs[view][guid] = text
  changed(m)
  return true
end
--- {GUID}.on-failure beside the mapping, in one registry view: "passthrough"
-- is kept, "fail" (the default) is no value.
function model.set_on_failure(m, view, guid, mode)
  if not gate(m, "set_on_failure" .. view) then return faulted(m, "RegSetValueEx") end
  m.on_failures = m.on_failures or {}
  m.on_failures[view] = m.on_failures[view] or {}
  m.on_failures[view][guid] = mode == "passthrough" and mode or nil
  changed(m)
  return true
end
--- The choice a layer's WSPStartup reads (what `list` shows; not a catalog call).
function model.on_failure(m, view, guid) return (m.on_failures or {})[view] and m.on_failures[view][guid] or "fail" end
function model.unmap(m, view, guid)
  if not gate(m, "unmap" .. view) then return faulted(m, "RegDeleteValue") end
  if not m.registry[view][guid] then return err(WSAEINVAL, "no such value") end
  m.registry[view][guid] = nil
  if m.configs and m.configs[view] then m.configs[view][guid] = nil end   -- (removed with the mapping)
  if m.on_failures and m.on_failures[view] then m.on_failures[view][guid] = nil end
  changed(m)
  return true
end
function model.mappings(m, view)
  if not gate(m, "mappings" .. view) then return faulted(m, "RegEnumValue") end
  return copy(m.registry[view])
end

-- ------------------------------------------------------------------------------------------
-- files (no catalog call: not counted, never faulted)

--- %VAR% expanded as ExpandEnvironmentStringsW does, in a process of `bits`.
-- (a 32-bit process on a 64-bit machine sees %ProgramFiles% as the x86 folder,
-- and system32 as SysWOW64 through the file system redirector)
function model.expand(m, path, bits)
  local p = path:gsub("%%([^%%]+)%%", function(n)
    if n:lower() == "programfiles" and bits == 32 and m.bits == 64 then return "C:\\Program Files (x86)" end
    for k, v in pairs(m.env) do if k:lower() == n:lower() then return v end end
  end)
  if bits == 32 and m.bits == 64 then p = p:gsub("\\[Ss]ystem32\\", "\\SysWOW64\\") end
  return p
end

local function file(m, path, bits)
  local p = norm(m:expand(path, bits or m.bits))
  return m.files[p], p
end

--- The machine (IMAGE_FILE_MACHINE as 64 or 32) of a DLL, from its PE header.
function model.dll_arch(m, path)
  local f = file(m, path)
  if not f then return nil, path .. ": no such file" end
  if not f.arch then return nil, path .. ": not a PE image" end
  return f.arch
end

--- The DLLs a DLL imports besides the system's own (its `imports`, none by default).
function model.dll_imports(m, path)
  local f = file(m, path)
  if not f then return nil, path .. ": no such file" end
  if not f.arch then return nil, path .. ": not a PE image" end
  return f.imports or {}
end

--- nil when the file or folder (or, when it does not exist, the nearest folder
-- above it) can be written by administrators and SYSTEM only; else why not.
function model.insecure(m, path)
  local _, p = file(m, path)
  local q = p
  while q do
    local f = m.files[q]
    if f then
      if f.open then
        return (q == p and "%s can be changed by non-administrators" or "%s does not exist and non-administrators can create it (in %s)"):format(path, q)
      end
      return nil
    end
    q = dirname(q)
  end
  return nil
end

function model.exists(m, path) return file(m, path) ~= nil end

--- The script's source, as the provider would read it.
function model.read(m, path)
  local f = file(m, path)
  if not f or not f.script then return nil, path .. ": cannot open" end
  return f.script
end

--- Copies a file (lwsp-catalog install's staging into %ProgramFiles%\lwsp).
function model.copy_file(m, from, to)
  local f = file(m, from)
  if not f then return nil, from .. ": no such file" end
  local d = dirname(norm(to))
  if not m.files[d] then m:put(d, {dir = true}) end
  m.files[norm(to)] = {arch = f.arch, script = f.script, imports = f.imports}
  return true
end

--- The test start of a provider in a fresh process of `view`'s architecture:
-- the DLL loaded by its full path, WSPStartup with the layered entry's GUID
-- (its script found through that view's registry), and a socket through it.
function model.test_start(m, view, dll, guid)
  if not gate(m, "test_start" .. view) then return faulted(m, "the test start") end
  local f = file(m, dll, view)
  if not f or f.arch ~= view then return nil, ("%s is not a %d-bit DLL: LoadLibrary fails"):format(dll, view) end
  local why = require("wsp.catalog").check_imports(m, dll, view)
  if why then return nil, why end
  local script = m.registry[view][guid]
  if not script then return nil, "WSAEPROVIDERFAILEDINIT: no script registered for " .. guid end
  -- a script that cannot run: the layer fails, or passes every call down
  -- when that view holds the install's on-failure passthrough (the socket then opens)
  local function broken(what)
    if m:on_failure(view, guid) == "passthrough" then return true, what .. "; on-failure passthrough: every call goes to the layer below" end
    return nil, "WSAEPROVIDERFAILEDINIT: " .. what
  end
  local src = m:read(script)
  if not src then return broken("cannot load " .. script) end
  local chunk = load(src, "=" .. script, "t", {})
  if not chunk then return broken(script .. " does not compile") end
  local ok, r = pcall(chunk)
  if not ok or type(r) ~= "table" then return broken(script .. " does not return a table of handlers") end
  return true
end

-- ------------------------------------------------------------------------------------------
-- another vendor's LSP, installed the way the sample installs one

--- Installs a foreign layered provider over TCP/IP in every catalog, its
-- chains first (what a firewall or antivirus LSP leaves on a machine).
-- @return {guid =, chain_guid =, [view] = {layer =, chains = {ids}}}
function model:vendor_lsp(name, over_guid)
  local r = {guid = "{5EED0000-0000-4000-8000-00000000ABCD}", chain_guid = "{5EED0000-0000-4000-8000-00000000ABCE}"}
  for _, v in ipairs(self.views) do
    local cat = self.catalogs[v]
    local base, top
    for _, e in ipairs(cat) do
      if not base and #e.ProtocolChain == 1 and e.iProtocol == wsp.IPPROTO_TCP and e.iAddressFamily == wsp.AF_INET then base = e end
      if over_guid and not top and e.ProviderId == over_guid and #e.ProtocolChain >= 2 and e.iProtocol == wsp.IPPROTO_TCP
          and e.iAddressFamily == wsp.AF_INET then top = e end
    end
    local path = v == 32 and self.bits == 64 and "%SystemRoot%\\SysWOW64\\vendor.dll" or "%SystemRoot%\\system32\\vendor.dll"
    local layer = add_entry(self, v, layer_of(base, name, 0), r.guid, path)
    local c = copy(top or base)
    local chain = {layer.dwCatalogEntryId}
    for _, id in ipairs(top and top.ProtocolChain or {base.dwCatalogEntryId}) do chain[#chain + 1] = id end
    c.ProtocolChain = chain
    c.szProtocol = name .. " over [" .. (top or base).szProtocol .. "]"
    local ce = add_entry(self, v, c, r.chain_guid, path)
    table.remove(cat, #cat)
    table.insert(cat, 1, ce)
    r[v] = {layer = layer.dwCatalogEntryId, chains = {ce.dwCatalogEntryId}}
  end
  self:put("C:\\Windows\\system32\\vendor.dll", {arch = self.bits})
  if self.bits == 64 then self:put("C:\\Windows\\SysWOW64\\vendor.dll", {arch = 32}) end
  return r
end

return model
