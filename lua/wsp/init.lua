--- wsp: the Lua side of lwsp.
-- Every Winsock constant and error code (`wsp.AF_INET`, `wsp.WSAEWOULDBLOCK`, ...),
-- address helpers, option decoding, and, inside a provider script, the upcall
-- table (`wsp.upcall`) and the provider's own description (`wsp.provider`).
-- @module wsp
local lwsp = require "lwsp"

local wsp = {}
for k, v in pairs(lwsp.const) do wsp[k] = v end

wsp.lwsp = lwsp
wsp.version = lwsp.version
--- The provider's upcall table (nil outside a provider script).
wsp.upcall = lwsp.upcall
--- {guid =, catalog_id =, info =, script =} (nil outside a provider script).
wsp.provider = lwsp.provider
--- Handler name -> SPI function name ("sendto" -> "WSPSendTo").
wsp.handler_names = lwsp.handler_names

--- Name of a Winsock error code.
-- @tparam integer code
-- @treturn string|nil "WSAECONNRESET", or nil for an unknown code
wsp.errname = lwsp.errname

--- Writes a line to the lwsp log.
-- @tparam string msg
-- @tparam[opt="lua"] string who tag
wsp.log = lwsp.log

--- Parses "a.b.c.d[:port]", "v6", "[v6]:port".
-- @tparam string text
-- @tparam[opt] integer family AF_INET or AF_INET6
-- @treturn table {family =, address =, port =} or nil, message
wsp.parse_address = lwsp.parse_address

--- Formats an address table as text ("127.0.0.1:80", "[::1]:80").
wsp.format_address = lwsp.format_address

--- Builds an address table.
-- @tparam string address "127.0.0.1", "::1", or "host:port" text
-- @tparam[opt] integer port
-- @treturn table address
function wsp.addr(address, port)
  if port == nil then return assert(lwsp.parse_address(address)) end
  local a = assert(lwsp.parse_address(address))
  a.port = port
  return a
end

--- Waits inside a handler until `lwsp.wake(key)` (or the timeout passes).
-- A blocking call waits in its thread with the provider lock released; an
-- overlapped call becomes pending (WSA_IO_PENDING) and completes later; on a
-- non-blocking socket the call fails with WSAEWOULDBLOCK instead.  With a nil
-- key the handler just lets others run and continues.
-- @param key any value other than nil (a socket table, a queue, ...)
-- @tparam[opt] number timeout seconds
-- @treturn true|string true when woken, "timeout" when the timeout passed
function wsp.wait(key, timeout)
  return coroutine.yield(key, timeout)
end

--- Whether the running handler may wait (inside a provider): its call is
-- blocking or overlapped.  In a non-blocking call `wsp.wait` ends the call
-- with WSAEWOULDBLOCK, so a handler that has already done part of the work
-- (sent some of the data, say) returns what it has done instead.
-- @treturn boolean
wsp.may_wait = lwsp.may_wait

--- Wakes every handler waiting on key (inside a provider).
-- @treturn integer how many were woken
wsp.wake = lwsp.wake

--- Runs fn after `seconds` on lwsp's service thread, under the provider lock.
-- @treturn integer timer id for `wsp.cancel_timer`
wsp.after = lwsp.after
wsp.cancel_timer = lwsp.cancel_timer

--- Reports a network event on a socket (inside a provider): lwsp records it
-- and signals the application as it selected (WSPEventSelect, WSPAsyncSelect),
-- and WSPSelect sees the condition.
-- @tparam table s the socket
-- @tparam integer event one FD_* bit
-- @tparam[opt=0] integer error a Winsock error code for the event
wsp.event = lwsp.event

--- What the application selected on a socket: mask, "event"|"message"|nil.
wsp.selected = lwsp.selected

--- Decodes a 4-byte little-endian integer option or ioctl value.
-- @tparam string raw
-- @treturn integer
function wsp.int(raw)
  return (string.unpack("<i4", raw))
end

--- Encodes an integer as a 4-byte little-endian option value.
-- @tparam integer v
-- @treturn string
function wsp.pack_int(v)
  return string.pack("<i4", v)
end

--- Two addresses name the same endpoint.
-- @tparam table a address
-- @tparam table b address
-- @treturn boolean
function wsp.same_addr(a, b)
  return a.family == b.family and a.address == b.address and a.port == b.port
end

--- Where the configuration of the provider `guid` is kept on POSIX: a file
-- beside its registry entry (`<registry>/{GUID}.config`, a Lua table
-- literal).  On Windows it is the registry value `{GUID}.config` beside the
-- script's (`lwsp.registry.config`/`set_config` reach it on both).
-- @tparam string guid
-- @treturn string|nil the path, or nil and why (on Windows: a registry value, not a file)
function wsp.config_path(guid)
  if package.config:sub(1, 1) == "\\" then
    return nil, "on Windows a provider's configuration is the registry value " .. guid .. ".config beside its script's"
  end
  local where, why = lwsp.registry.where()
  if not where then return nil, why end
  return where .. "/" .. guid .. ".config"
end

--- Inside a provider: the configuration its install gave
-- (`install_lua{config = {...}}`, `install_layered{config = ...}`), or an
-- empty table.  Outside a provider: nil.
wsp.config = nil
if lwsp.provider then
  local guid = lwsp.provider.guid
  local text, why = lwsp.registry.config(guid)
  if why then error("provider configuration: " .. why, 0) end
  local config = {}
  if text then
    local where = wsp.config_path(guid) or guid .. ".config"
    local chunk, err = load(text, "=" .. where, "t", {})
    if not chunk then error("provider configuration " .. where .. ": " .. err, 0) end
    config = chunk()
  end
  wsp.config = config
end

return wsp
