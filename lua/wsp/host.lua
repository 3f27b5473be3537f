--- wsp.host: lwsp's own ws2_32, as applications and specs use it.
-- Everything in `lwsp.host` (the host's own module, see docs/api.md) plus helpers that install Lua
-- providers into the host's catalog.
-- @module wsp.host
local lwsp = require "lwsp"
local wsp = require "wsp"

-- (inside a provider's state there is no host: a provider does not drive its host)
if lwsp.provider then error("wsp.host is the application's side of lwsp: not available inside a provider", 2) end
local lhost = require "lwsp.host"

local host = setmetatable({}, {__index = lhost})

local STREAM_FLAGS = wsp.XP1_GUARANTEED_DELIVERY | wsp.XP1_GUARANTEED_ORDER
  | wsp.XP1_GRACEFUL_CLOSE | wsp.XP1_EXPEDITED_DATA
local DGRAM_FLAGS = wsp.XP1_CONNECTIONLESS | wsp.XP1_MESSAGE_ORIENTED | wsp.XP1_SUPPORT_BROADCAST

--- Protocol info for a TCP- or UDP-like entry.
-- @tparam table o {guid =, af =, type =, protocol =, name =, flags =, provider_flags =}
-- @treturn table WSAPROTOCOL_INFOW fields
function host.protocol_info(o)
  local af = o.af or wsp.AF_INET
  local stream = (o.type or wsp.SOCK_STREAM) == wsp.SOCK_STREAM
  local size = af == wsp.AF_INET6 and 28 or 16
  return {
    ProviderId = o.guid,
    dwServiceFlags1 = o.flags or (stream and STREAM_FLAGS or DGRAM_FLAGS),
    dwProviderFlags = o.provider_flags or wsp.PFL_MATCHES_PROTOCOL_ZERO,
    iVersion = 2,
    iAddressFamily = af,
    iMaxSockAddr = size,
    iMinSockAddr = size,
    iSocketType = o.type or wsp.SOCK_STREAM,
    iProtocol = o.protocol or (stream and wsp.IPPROTO_TCP or wsp.IPPROTO_UDP),
    iProtocolMaxOffset = 0,
    iNetworkByteOrder = wsp.BIGENDIAN,
    iSecurityScheme = wsp.SECURITY_PROTOCOL_NONE,
    dwMessageSize = stream and 0 or 65467,
    szProtocol = o.name or "lwsp provider",
  }
end

--- A path made absolute against the current directory (as the registry requires).
-- @tparam string path
-- @treturn string
function host.absolute(path)
  if path:sub(1, 1) == "/" or path:match("^%a:[\\/]") then return path end
  local pwd
  if package.config:sub(1, 1) == "\\" then
    local p = io.popen("cd")                  -- cmd.exe prints the current directory
    pwd = p and p:read("l")
    if p then p:close() end
    return pwd .. "\\" .. path:gsub("/", "\\")
  end
  pwd = os.getenv("PWD") or io.popen("pwd"):read("l")
  return pwd .. "/" .. path
end
local absolute = host.absolute

-- Checks an install_* options table: a table with a script path (string).
local function check_install(fname, o)
  if type(o) ~= "table" then
    error(("%s: expects a table of options, {script = \"path/to/provider.lua\", ...}, got %s"):format(fname, type(o)), 3)
  end
  if type(o.script) ~= "string" or o.script == "" then
    error(("%s: option 'script' (the provider's Lua file) is missing"):format(fname), 3)
  end
  if o.config ~= nil and type(o.config) ~= "table" then
    error(("%s: option 'config' must be a table, got %s"):format(fname, type(o.config)), 3)
  end
end

-- A Lua literal for a configuration value (strings, numbers, booleans and
-- tables of them).
local function literal(v, depth)
  local t = type(v)
  if t == "string" then return ("%q"):format(v)
  elseif t == "number" then return math.type(v) == "integer" and tostring(v) or ("%.17g"):format(v)
  elseif t == "boolean" then return tostring(v)
  elseif t == "table" and depth < 32 then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = ("[%s] = %s"):format(literal(k, depth + 1), literal(x, depth + 1)) end
    table.sort(parts)
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  error(("config: a %s cannot be passed to a provider (strings, numbers, booleans and tables can)"):format(t), 0)
end

--- Writes the configuration a provider reads as `wsp.config` (inside it), or
-- removes it when `config` is nil.  It lives beside the provider's registry
-- entry (`wsp.config_path(guid)`).
-- @tparam string guid the provider's GUID
-- @tparam[opt] table config strings, numbers, booleans and tables of them
-- @treturn true|nil true, or nil and a message
function host.write_config(guid, config)
  if config == nil then return lwsp.registry.set_config(guid, nil) end
  return lwsp.registry.set_config(guid, host.config_text(config))
end

--- The text a configuration is kept as: a Lua chunk returning the table.
-- @tparam table config strings, numbers, booleans and tables of them
-- @treturn string
-- @raise for a value that cannot be passed (a function, a userdata, ...)
function host.config_text(config)
  return "return " .. literal(config, 0) .. "\n"
end

--- Installs a Lua provider: maps its GUID to the script in the lwsp registry
-- and adds base catalog entries whose library is lwsp itself.
-- @tparam table o {script =, guid =?, name =?, config =?, entries = {{af =, type =, protocol =}, ...}?}
--   (default entries: TCP and UDP over IPv4); `config` reaches the script as `wsp.config`
-- @treturn table {guid =, ids = {catalog ids}, tcp =, udp =}
-- @raise when `o` has no script, or the registry cannot be written (with the reason)
function host.install_lua(o)
  check_install("install_lua", o)
  local guid = o.guid or lwsp.guid()
  assert(lwsp.registry.set(guid, absolute(o.script)))
  assert(host.write_config(guid, o.config))
  local entries = o.entries or {
    {af = wsp.AF_INET, type = wsp.SOCK_STREAM}, {af = wsp.AF_INET, type = wsp.SOCK_DGRAM},
  }
  local r = {guid = guid, ids = {}}
  for _, e in ipairs(entries) do
    local info = host.protocol_info{guid = guid, af = e.af, type = e.type, protocol = e.protocol,
      name = (o.name or "lwsp") .. (e.type == wsp.SOCK_DGRAM and " [UDP]" or " [TCP]"),
      flags = e.flags, provider_flags = e.provider_flags}
    local id = lhost.install(info, o.path or lwsp.path(), "base")
    r.ids[#r.ids + 1] = id
    if e.type == wsp.SOCK_STREAM and not r.tcp then r.tcp = id end
    if e.type == wsp.SOCK_DGRAM and not r.udp then r.udp = id end
  end
  return r
end

--- The native base provider's GUID.
host.NATIVE_GUID = "{6C777370-4E41-5449-5645-000000000001}"

--- The path of the native base provider's DLL (beside lwsp's own).
-- @treturn string
function host.native_path()
  local dir, sep = lwsp.path():match("^(.*)([/\\])[^/\\]*$")
  local ext = sep == "\\" and ".dll" or ".so"
  return dir .. sep .. "lwsp_native" .. ext
end

--- Installs the native base provider (TCP and UDP over IPv4 and IPv6 on the
-- operating system's sockets) as base catalog entries.
-- @tparam[opt] table o {path =} another build of the native provider
-- @treturn table {guid =, ids =, tcp =, udp =, tcp6 =, udp6 =}
function host.install_native(o)
  o = o or {}
  local r = {guid = host.NATIVE_GUID, ids = {}, native = true}
  for _, e in ipairs{{wsp.AF_INET, wsp.SOCK_STREAM, "tcp"}, {wsp.AF_INET, wsp.SOCK_DGRAM, "udp"},
                     {wsp.AF_INET6, wsp.SOCK_STREAM, "tcp6"}, {wsp.AF_INET6, wsp.SOCK_DGRAM, "udp6"}} do
    local info = host.protocol_info{guid = r.guid, af = e[1], type = e[2],
      name = ("lwsp native %s"):format(e[3]:upper())}
    local id = lhost.install(info, o.path or host.native_path(), "base")
    r.ids[#r.ids + 1] = id
    r[e[3]] = id
  end
  return r
end

--- Installs a Lua layered provider over the entries of `over` (what
-- install_native, install_lua or install_layered returned): one hidden layer
-- entry (ChainLen 0) and, for each entry below, a protocol chain
-- {layer, entries below...} with the same address family, type and protocol.
-- `on_failure` chooses what the layer does when its script cannot run (it does
-- not load, or its top level fails or runs out of budget): `"fail"` (the
-- default: `WSPStartup` fails with WSAEPROVIDERFAILEDINIT) or
-- `"passthrough"` (wsp.layered runs in its place: every call goes to the
-- layer below, with a log line and a trace record saying so).
-- @tparam table o {script =, over =, guid =?, name =?, config =?, on_failure =?}
-- @treturn table {guid =, layer =, ids =, tcp =, udp =, tcp6 =, udp6 = (those that exist)}
-- @raise when `o` has no script or no `over`, or the registry cannot be written
function host.install_layered(o)
  check_install("install_layered", o)
  if type(o.over) ~= "table" or not (o.over.tcp or o.over.udp or o.over.tcp6 or o.over.udp6) then
    error("install_layered: option 'over' must be what install_native, install_lua or install_layered "
      .. "returned (the installation the layer goes over), got " .. tostring(o.over), 2)
  end
  if o.on_failure ~= nil and o.on_failure ~= "fail" and o.on_failure ~= "passthrough" then
    error("install_layered: option 'on_failure' must be \"fail\" or \"passthrough\", got " .. tostring(o.on_failure), 2)
  end
  local guid = o.guid or lwsp.guid()
  assert(lwsp.registry.set(guid, absolute(o.script)))
  assert(lwsp.registry.set_on_failure(guid, o.on_failure or "fail"))
  assert(host.write_config(guid, o.config))
  local path = o.path or lwsp.path()
  local r = {guid = guid, ids = {}}
  local layer_info = host.protocol_info{guid = guid, name = (o.name or "lwsp layer") .. " (layer)"}
  r.layer = lhost.install(layer_info, path, "layer")
  r.ids[1] = r.layer
  local entries = {}
  for _, e in ipairs(lhost.catalog()) do entries[e.dwCatalogEntryId] = e end
  for _, kind in ipairs{"tcp", "udp", "tcp6", "udp6"} do
    local below = o.over[kind] and entries[o.over[kind]]
    if below then
      local info = {}
      for k, v in pairs(below) do info[k] = v end
      info.path, info.dwCatalogEntryId = nil, nil
      info.ProviderId = guid
      info.szProtocol = ("%s over %s"):format(o.name or "lwsp layer", below.szProtocol)
      local chain = {r.layer}
      for _, id in ipairs(below.ProtocolChain) do chain[#chain + 1] = id end
      info.ProtocolChain = chain
      local id = lhost.install(info, path, "chain")
      r.ids[#r.ids + 1] = id
      r[kind] = id
    end
  end
  return r
end

--- Removes the catalog entries, the registry mapping and the configuration
-- made by install_lua or install_layered (for install_native, its entries).
-- @tparam table r what the install returned
function host.uninstall_lua(r)
  for _, id in ipairs(r.ids) do lhost.remove(id) end
  if not r.native then
    lwsp.registry.remove(r.guid)
    host.write_config(r.guid, nil)
  end
end

return host
