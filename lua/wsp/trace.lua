--- wsp.trace: lwsp's trace of every crossing, and two views of it.
-- `trace.start([file])` begins recording (JSON Lines into file if given),
-- `trace.stop()` ends it, `trace.records()` returns the records:
-- {seq, t, thread, kind = "call"|"return"|"upcall"|"complete", from, to,
-- name, socket, error, errname, us, depth, args, result}.
-- `trace.text(records)` is an indented call tree per thread;
-- `trace.html(records)` a self-contained sequence diagram.
-- @module wsp.trace
local lwsp = require "lwsp"
local wsp = require "wsp"

if not lwsp.trace then error("wsp.trace is the application's side of lwsp: not available inside a provider", 2) end

local trace = {}
trace.start, trace.stop, trace.records = lwsp.trace.start, lwsp.trace.stop, lwsp.trace.records

-- ---- decoding: parameter names, constants by name, Microsoft's pages ------

local C = {}          -- prefix -> value -> name, from wsp's own constants
local function names_of(prefix, exclude)
  local t = {}
  for k, v in pairs(wsp) do
    if type(v) == "number" and k:sub(1, #prefix) == prefix and not (exclude and exclude[k]) then
      if not t[v] or #k < #t[v] then t[v] = k end
    end
  end
  return t
end
C.AF = names_of("AF_")
C.SOCK = names_of("SOCK_")
C.IPPROTO = names_of("IPPROTO_")
C.SO = names_of("SO_")
C.TCP = names_of("TCP_")
C.SD = names_of("SD_")
C.IOCTL = names_of("SIO", {SIO_LWSP_NATIVE_ENGINE = false})
C.IOCTL[wsp.FIONBIO], C.IOCTL[wsp.FIONREAD] = "FIONBIO", "FIONREAD"
-- ioctl codes wsp has no constant for, by their values in mswsock.h and ws2def.h
for code, name in pairs{[0x48000022] = "SIO_BASE_HANDLE", [0x4800001b] = "SIO_BSP_HANDLE",
                        [0x4800001c] = "SIO_BSP_HANDLE_SELECT", [0x4800001d] = "SIO_BSP_HANDLE_POLL",
                        [0x98000004] = "SIO_KEEPALIVE_VALS", [0xc8000014] = "SIO_ROUTING_INTERFACE_QUERY",
                        [0x28000004] = "SIO_FLUSH", [0x48000018] = "SIO_QUERY_TARGET_PNP_HANDLE"} do
  C.IOCTL[code] = C.IOCTL[code] or name
end
local ERR = {}
for k, v in pairs(wsp) do
  if type(v) == "number" and (k:match("^WSAE") or k:match("^WSA_") and not k:match("^WSA_FLAG")) then ERR[v] = k end
end

local function bits(v, prefix, all)
  if v == 0 then return "0" end
  local t, left = {}, v
  local list = {}
  for k, b in pairs(wsp) do
    if type(b) == "number" and k:sub(1, #prefix) == prefix and b > 0 and b & (b - 1) == 0 and k ~= all then
      list[#list + 1] = {k, b}
    end
  end
  table.sort(list, function(a, b) return a[2] < b[2] end)
  for _, kb in ipairs(list) do
    if left & kb[2] ~= 0 then t[#t + 1] = kb[1]; left = left & ~kb[2] end
  end
  if left ~= 0 then t[#t + 1] = ("0x%x"):format(left) end
  return table.concat(t, "|")
end

local function num(s)
  if type(s) ~= "string" then return nil end
  if s:match("^%-?%d+$") then return math.tointeger(tonumber(s)) end
  if s:match("^0x%x+$") then return math.tointeger(tonumber(s:sub(3), 16)) end
end

local function named(tbl, v, raw)
  local n = num(v)
  if n and tbl[n] then return tbl[n] end
  return n and ("%d"):format(n) or raw
end

-- The host's catalog entry with this id, when the application side has
-- loaded wsp.host; nil otherwise.
local function catalog_entry(id)
  local host = package.loaded["wsp.host"]
  if type(host) ~= "table" or type(host.catalog) ~= "function" then return nil end
  local ok, entries = pcall(host.catalog)
  if not ok or type(entries) ~= "table" then return nil end
  for _, e in ipairs(entries) do
    if e.dwCatalogEntryId == id then return e end
  end
end

local function split_words(s) local t = {} for w in s:gmatch("%S+") do t[#t + 1] = w end return t end

-- decoders: raw text -> decoded text (ctx: the other parameters, by name)
local D = {}
D.socket = function(v) local n = num(v) or num(v:match("^s(%d+)$")) return n and ("s%d"):format(n) or v end
D.handle = function(v) local n = num(v) return n and ("0x%x"):format(n) or v end
-- (WSASocket's FROM_PROTOCOL_INFO, -1, for any of af, type and protocol)
local function fpi(v) return num(v) == wsp.FROM_PROTOCOL_INFO and "FROM_PROTOCOL_INFO" or nil end
D.af = function(v) return fpi(v) or named(C.AF, v, v) end
D.type = function(v) return fpi(v) or named(C.SOCK, v, v) end
D.protocol = function(v) local n = num(v) if n == 0 then return "0" end return fpi(v) or named(C.IPPROTO, v, v) end
D.level = function(v) local n = num(v) if n == wsp.SOL_SOCKET then return "SOL_SOCKET" end return named(C.IPPROTO, v, v) end
D.optname = function(v, ctx)
  local lv = num(ctx.level)
  if lv == wsp.IPPROTO_TCP then return named(C.TCP, v, v) end
  if lv == wsp.SOL_SOCKET or lv == nil then return named(C.SO, v, v) end
  return v
end
D.ioctl = function(v)
  local n = num(v)
  if not n then return v end
  return C.IOCTL[n] or ("0x%08x"):format(n)
end
D.wsaflags = function(v) local n = num(v) return n and bits(n, "WSA_FLAG_") or v end
D.msgflags = function(v) local n = num(v) return n and bits(n, "MSG_") or v end
D.events = function(v) local n = num(v) return n and bits(n, "FD_", "FD_ALL_EVENTS") or v end
D.how = function(v) return named(C.SD, v, v) end
D.wm = function(v)
  local n = num(v)
  if n and n >= 0x400 and n < 0x8000 then return ("WM_USER+%d"):format(n - 0x400) end
  return n and ("0x%x"):format(n) or v
end
D.error = function(v) local n = num(v) if n == 0 then return "0 (no error)" end return n and ERR[n] or v end
D.catalog = function(v) return v end
-- an fd_set's handles ("{264, 268}" -> "{s264, s268}"); nil (a NULL set) as it is
D.fdset = function(v)
  if type(v) ~= "string" or not v:match("^{.*}$") then return v end
  return (v:gsub("%f[%w](%d+)", "s%1"))
end
D.isset = function(v)
  local n = num(v)
  if n == nil then return v end
  return n ~= 0 and ("%d (a member)"):format(n) or "0 (not a member)"
end
D.seconds = function(v) local n = tonumber(v) return n and (v .. " s") or v end
D.events_list = function(v)
  if type(v) ~= "string" or not v:match("^{.*}$") then return v end
  return (v:gsub("%f[%w](%d+)", function(d) return ("0x%x"):format(math.tointeger(tonumber(d))) end))
end
-- a WSAPROTOCOL_INFOW, by the fields that say what it is
D.info = function(v)
  if type(v) ~= "string" then return v end
  local entry, ty, proto, rest = v:match("^{entry (%d+), type (%-?%d+), protocol (%-?%d+)(.*)}$")
  if not entry then
    -- the host's call into a C provider: that entry's info, from the host's catalog
    local id = v:match("^<protocol info of entry (%d+)>$")
    local e = id and catalog_entry(tonumber(id))
    if not e then return v end
    entry, ty, proto = tostring(e.dwCatalogEntryId), tostring(e.iSocketType), tostring(e.iProtocol)
    rest = ", chain " .. table.concat(e.ProtocolChain or {}, " ")
  end
  local out = {"dwCatalogEntryId=" .. entry, "iSocketType=" .. D.type(ty), "iProtocol=" .. D.protocol(proto)}
  local chain = rest:match("^, chain ([%d ]*)$")
  if chain then out[#out + 1] = "ProtocolChain={" .. table.concat(split_words(chain), ", ") .. "}" end
  return "{" .. table.concat(out, ", ") .. "}"
end
D.plain = function(v) return v end

-- The SPI's and the upcalls' real parameter lists (ws2spi.h), as
-- {name, decoder}; [0] is the page on learn.microsoft.com.
local MS = "https://learn.microsoft.com/en-us/windows/win32/api/"
local SIG = {}
local function sig(name, page, params)
  local t = {[0] = MS .. page}
  for i, p in ipairs(params) do
    local n, k = p:match("^([^:]+):?(.*)$")
    t[i] = {n, D[k] or D.plain}
  end
  SIG[name] = t
end
local function spi(name, params) sig(name, "ws2spi/nc-ws2spi-lp" .. name:lower(), params) end
sig("WSPStartup", "ws2spi/nf-ws2spi-wspstartup",
    {"wVersionRequested", "lpWSPData", "lpProtocolInfo", "UpcallTable", "lpProcTable"})
spi("WSPSocket", {"af:af", "type:type", "protocol:protocol", "lpProtocolInfo:info", "g", "dwFlags:wsaflags"})
spi("WSPBind", {"s:socket", "name", "namelen"})
spi("WSPListen", {"s:socket", "backlog"})
spi("WSPAccept", {"s:socket", "lpfnCondition", "dwCallbackData"})   -- (addr, addrlen: out)
spi("WSPConnect", {"s:socket", "name", "lpCallerData", "lpCalleeData", "lpSQOS", "lpGQOS"})
spi("WSPSend", {"s:socket", "lpBuffers", "dwFlags:msgflags", "lpOverlapped", "lpCompletionRoutine"})
spi("WSPSendTo", {"s:socket", "lpBuffers", "lpTo", "dwFlags:msgflags", "lpOverlapped", "lpCompletionRoutine"})
spi("WSPRecv", {"s:socket", "lpBuffers", "lpFlags:msgflags", "lpOverlapped", "lpCompletionRoutine"})
spi("WSPRecvFrom", {"s:socket", "lpBuffers", "lpFlags:msgflags", "lpOverlapped", "lpCompletionRoutine"})
spi("WSPGetSockOpt", {"s:socket", "level:level", "optname:optname", "optlen"})
spi("WSPSetSockOpt", {"s:socket", "level:level", "optname:optname", "optval", "optlen"})
spi("WSPIoctl", {"s:socket", "dwIoControlCode:ioctl", "lpvInBuffer", "cbOutBuffer", "lpOverlapped",
                 "lpCompletionRoutine"})
spi("WSPEventSelect", {"s:socket", "hEventObject:handle", "lNetworkEvents:events"})
spi("WSPEnumNetworkEvents", {"s:socket", "hEventObject:handle"})
spi("WSPAsyncSelect", {"s:socket", "hWnd:handle", "wMsg:wm", "lEvent:events"})
spi("WSPSelect", {"readfds:fdset", "writefds:fdset", "exceptfds:fdset", "timeout:seconds"})
spi("WSPCloseSocket", {"s:socket"})
spi("WSPShutdown", {"s:socket", "how:how"})
spi("WSPGetSockName", {"s:socket"})
spi("WSPGetPeerName", {"s:socket"})
spi("WSPGetOverlappedResult", {"s:socket", "lpOverlapped", "fWait", "lpdwFlags"})
spi("WSPDuplicateSocket", {"s:socket", "dwProcessId"})
spi("WSPCancelBlockingCall", {})
spi("WSPCleanup", {})
spi("WSPAddressToString", {"lpsaAddress", "lpProtocolInfo:info"})
spi("WSPStringToAddress", {"AddressString", "AddressFamily:af", "lpProtocolInfo:info"})
spi("WSPRecvDisconnect", {"s:socket"})
spi("WSPSendDisconnect", {"s:socket"})
spi("WSPJoinLeaf", {"s:socket", "name", "lpCallerData", "lpCalleeData", "lpSQOS", "lpGQOS", "dwFlags"})
spi("WSPGetQOSByName", {"s:socket", "lpQOSName"})
-- (the upcalls' pages are their functions', nf-ws2spi-wpu*: ws2spi.h's LPWPU* types have none)
local function wpu(name, params) sig(name, "ws2spi/nf-ws2spi-" .. name:lower(), params) end
wpu("WPUCreateSocketHandle", {"dwCatalogEntryId:catalog", "dwContext:handle"})
wpu("WPUQuerySocketHandleContext", {"lpContext:handle"})
wpu("WPUCloseSocketHandle", {})
wpu("WPUModifyIFSHandle", {"dwCatalogEntryId:catalog", "ProposedHandle:handle"})
wpu("WPUQueryBlockingCallback", {"dwCatalogEntryId:catalog", "lplpfnCallback"})
wpu("WPUGetProviderPath", {"lpProviderId"})
wpu("WPUPostMessage", {"hWnd:handle", "Msg:wm", "wParam:socket", "lParam"})
wpu("WPUFDIsSet", {"s:socket", "fdset:fdset", "returns:isset"})
wpu("WPUQueueApc", {"lpfnUserApc", "dwContext:handle"})
wpu("WPUSetEvent", {"hEvent:handle"})
wpu("WPUResetEvent", {"hEvent:handle"})
sig("WPUCompleteOverlappedRequest", "ws2spi/nf-ws2spi-wpucompleteoverlappedrequest",
    {"dwError:error", "cbTransferred"})
-- the application's side (wsp.host, standing for ws2_32's API): Winsock's pages
local function api(name, page, params) sig(name, "winsock2/nf-winsock2-" .. page, params) end
api("socket", "wsasocketw", {"af:af", "type:type", "protocol:protocol", "dwFlags:wsaflags", "dwCatalogEntryId"})
api("bind", "bind", {"s:socket", "name"})
api("listen", "listen", {"s:socket", "backlog"})
api("connect", "connect", {"s:socket", "name"})
api("accept", "accept", {"s:socket"})
api("send", "send", {"s:socket", "buf", "flags:msgflags"})
api("recv", "recv", {"s:socket", "len", "flags:msgflags"})
api("sendto", "sendto", {"s:socket", "buf", "to"})
api("recvfrom", "recvfrom", {"s:socket", "len"})
api("getsockname", "getsockname", {"s:socket"})
api("getpeername", "getpeername", {"s:socket"})
api("getsockopt", "getsockopt", {"s:socket", "level:level", "optname:optname"})
api("setsockopt", "setsockopt", {"s:socket", "level:level", "optname:optname", "optval"})
api("ioctl", "wsaioctl", {"s:socket", "dwIoControlCode:ioctl", "lpvInBuffer"})
api("close", "closesocket", {"s:socket"})
api("shutdown", "shutdown", {"s:socket", "how:how"})
api("event_select", "wsaeventselect", {"s:socket", "hEventObject:handle", "lNetworkEvents:events"})
api("enum_network_events", "wsaenumnetworkevents", {"s:socket", "hEventObject:handle"})
api("async_select", "wsaasyncselect", {"s:socket", "hWnd:handle", "wMsg:wm", "lEvent:events"})
api("wsarecv", "wsarecv", {"s:socket", "len", "lpOverlapped", "lpCompletionRoutine"})
api("wsasend", "wsasend", {"s:socket", "buf", "lpOverlapped", "lpCompletionRoutine"})
api("get_overlapped_result", "wsagetoverlappedresult", {"s:socket", "lpOverlapped", "fWait"})
api("wait", "wsawaitformultipleevents", {"lphEvents:events_list", "fWaitAll", "dwTimeout"})
api("select", "select", {"readfds:fdset", "writefds:fdset", "exceptfds:fdset", "timeout:seconds"})
api("duplicate_socket", "wsaduplicatesocketw", {"s:socket", "dwProcessId"})
-- what the host records of an application's notification
api("message posted", "wsaasyncselect", {"wMsg:wm", "WSAGETSELECTEVENT(lParam):events", "WSAGETSELECTERROR(lParam):error"})
SIG["message posted"].own = {msg = "wMsg", event = "WSAGETSELECTEVENT(lParam)", error = "WSAGETSELECTERROR(lParam)"}
api("event signalled", "wsagetoverlappedresult", {"cbTransfer"})
api("completion-port packet", "wsagetoverlappedresult", {"cbTransfer"})

-- Splits "a, {b, c}, "d, e"" at its top-level commas.
local function split_args(s)
  local out, depth, cur, q, i = {}, 0, {}, false, 1
  while i <= #s do
    local c = s:sub(i, i)
    if q then
      if c == "\\" then cur[#cur + 1] = s:sub(i, i + 1); i = i + 1
      else cur[#cur + 1] = c; if c == '"' then q = false end end
    elseif c == '"' then q = true; cur[#cur + 1] = c
    elseif c == "{" or c == "(" or c == "<" or c == "[" then depth = depth + 1; cur[#cur + 1] = c
    elseif (c == "}" or c == ")" or c == ">" or c == "]") and depth > 0 then depth = depth - 1; cur[#cur + 1] = c
    elseif c == "," and depth == 0 then
      out[#out + 1] = table.concat(cur):match("^%s*(.-)%s*$"); cur = {}
    else cur[#cur + 1] = c end
    i = i + 1
  end
  local last = table.concat(cur):match("^%s*(.-)%s*$")
  if last ~= "" or #out > 0 then out[#out + 1] = last end
  return out
end

-- A provider's name from the host's catalog (its first entry's szProtocol),
-- when the application side has loaded wsp.host; nil otherwise.
local function catalog_name(guid)
  local host = package.loaded["wsp.host"]
  if type(host) ~= "table" or type(host.catalog) ~= "function" then return nil end
  local ok, entries = pcall(host.catalog)
  if not ok or type(entries) ~= "table" then return nil end
  for _, e in ipairs(entries) do
    if e.ProviderId == guid then return e.szProtocol end
  end
end

-- labels some records carry in their argument text ("event 0x40", "catalog 1006")
local LABEL = {event = "hEventObject", events = "lNetworkEvents", window = "hWnd", msg = "wMsg",
               catalog = "dwCatalogEntryId", context = "dwContext", error = "dwError"}

local EXPECTED = {
  WSA_IO_PENDING = "expected: the overlapped operation was started and completes later",
  WSAEWOULDBLOCK = "expected on a non-blocking socket: try again, or wait for the network event",
  WSA_IO_INCOMPLETE = "expected while the overlapped operation is still in progress",
}

--- What a record's arguments mean: its parameters by their names in
-- ws2spi.h (or winsock2.h for the application's side), constants by name
-- (address families, socket types, levels and options, ioctl codes, FD_
-- masks, flags, `WM_USER+n`), handles and events in hex, GUIDs named (from
-- `names`, or else the host's catalog), the outcome ("ok", "expected" for `WSA_IO_PENDING` and
-- `WSAEWOULDBLOCK`, or "failed") and the link to Microsoft's page.
-- @tparam table r a record
-- @tparam[opt] table names party (GUID) -> name
-- @treturn table {params = {{name =, raw =, value =}, ...}, text =, outcome =, note =, url =}
function trace.decode(r, names)
  local s = SIG[r.name]
  local raw = split_args(r.args or "")
  local params, ctx = {}, {}
  local pos = 1
  if r.name == "WSPAccept" and raw[2] and raw[2]:match("^s%d+$") then
    table.remove(raw, 2)          -- the new socket's table lwsp gives a Lua handler: no parameter of WSPAccept
  end
  if r.name == "WSPSocket" and raw[1] and (raw[1]:match("^s%d+$") or #raw == 7) then
    table.remove(raw, 1)          -- a Lua handler's own first argument: the socket lwsp has already made
  elseif r.name == "WSPSocket" and #raw == 5 and num(raw[5]) then
    -- the host's call into a C provider, recorded with the application's
    -- arguments (af, type, protocol, flags, catalog entry): the host passes
    -- that entry's WSAPROTOCOL_INFOW, no group, and the flags
    raw = {raw[1], raw[2], raw[3], "<protocol info of entry " .. raw[5] .. ">", "0", raw[4]}
  end
  local sigp = s or {}
  -- the socket parameter: the record's own socket when the text leaves it out
  local first = sigp[1] and sigp[1][2] == D.socket
  if first and (r.socket or 0) ~= 0 and not (raw[1] and (raw[1] == "s" .. r.socket or raw[1] == tostring(r.socket))) then
    table.insert(raw, 1, tostring(r.socket))
  end
  for _, a in ipairs(raw) do
    local label, rest = a:match("^(%a+) (.+)$")
    local pname, dec
    if label and (LABEL[label] or sigp.own and sigp.own[label]) then
      pname = sigp.own and sigp.own[label] or LABEL[label]
      if pname == "dwContext" and r.name == "WPUQuerySocketHandleContext" then pname = "lpContext" end
      for i = 1, #sigp do if sigp[i][1] == pname then dec = sigp[i][2]; pos = math.max(pos, i + 1) end end
      dec = dec or (label == "event" and D.handle) or (label == "events" and D.events) or D.plain
      a = rest
    elseif a:match("^%d+ bytes$") and sigp[pos] then
      pname, dec, a = sigp[pos][1], D.plain, a:match("^(%d+)")
      pos = pos + 1
    elseif sigp[pos] then
      pname, dec = sigp[pos][1], sigp[pos][2]
      pos = pos + 1
    else
      pname, dec = "arg" .. (#params + 1), D.plain
    end
    ctx[pname] = a
    params[#params + 1] = {name = pname, raw = a, dec = dec}
  end
  local parts = {}
  for _, p in ipairs(params) do
    p.value = p.dec(p.raw, ctx)
    if p.raw:match("^{%x+%-[%x%-]+}$") then
      local known = names and names[p.raw] or catalog_name(p.raw)
      if known then p.value = p.raw .. " (" .. known .. ")" end
    end
    p.dec = nil
    parts[#parts + 1] = p.name .. "=" .. p.value
  end
  local outcome, note = "ok", nil
  if r.errname then
    if EXPECTED[r.errname] then outcome, note = "expected", EXPECTED[r.errname] else outcome = "failed" end
  end
  return {params = params, text = table.concat(parts, ", "), outcome = outcome, note = note, url = s and s[0]}
end

local function short(p)
  return p:match("^{") and ("provider " .. p:sub(1, 9) .. "}") or p
end

local function namer(names)
  return function(p) return names and names[p] or short(p) end
end

--- An indented call tree per thread, upcalls and completions marked.
-- @tparam[opt] table records (default: trace.records())
-- @tparam[opt] table names party (GUID) -> name to show instead
-- @treturn string
function trace.text(records, names)
  records = records or trace.records()
  local party = namer(names)
  local by, order = {}, {}
  for _, r in ipairs(records) do
    if not by[r.thread] then by[r.thread] = {}; order[#order + 1] = r.thread end
    local lines = by[r.thread]
    local pad = ("  "):rep(r.depth)
    local sock = r.socket ~= 0 and (" s%d"):format(r.socket) or ""
    local d = trace.decode(r, names)
    local vals = {}
    for i, p in ipairs(d.params) do vals[i] = p.value end
    local args = table.concat(vals, ", ")
    if r.kind == "call" then
      lines[#lines + 1] = ("%s%s -> %s: %s(%s)"):format(pad, party(r.from), party(r.to), r.name, args)
    elseif r.kind == "return" then
      local res = (r.result or "") ~= "" and (" " .. r.result) or ""
      local how = d.outcome == "expected" and " (expected)" or ""
      lines[#lines + 1] = ("%s<- %s %s%s%s (%.0f us)"):format(pad, r.name, r.errname or "ok", how, res, r.us)
      -- what the providers logged during the call, under it
      for line in (r.log or ""):gmatch("[^\n]+") do lines[#lines + 1] = ("%s   | %s"):format(pad, line) end
    elseif r.kind == "upcall" then
      lines[#lines + 1] = ("%s^ upcall %s from %s%s%s"):format(pad, r.name, party(r.from), sock,
        d.text ~= "" and (" (" .. d.text .. ")") or "")
    else
      lines[#lines + 1] = ("%s* %s%s%s%s"):format(pad, r.name, sock, d.text ~= "" and (" (" .. d.text .. ")") or "",
        r.errname and (" " .. r.errname) or "")
    end
  end
  local out = {}
  for _, th in ipairs(order) do
    out[#out + 1] = ("thread %d"):format(th)
    for _, l in ipairs(by[th]) do out[#out + 1] = "  " .. l end
  end
  return table.concat(out, "\n")
end

-- JSON for the page: records and the lane list (strings, numbers, arrays, objects).
local function json(v)
  local t = type(v)
  if t == "string" then
    return '"' .. v:gsub('[%c"\\/]', function(c)
      if c == '"' or c == "\\" or c == "/" then return "\\" .. c end
      return ("\\u%04x"):format(c:byte())
    end) .. '"'
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "0" end
    return math.type(v) == "integer" and tostring(v) or ("%.9g"):format(v)
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "table" then
    if #v > 0 or next(v) == nil then
      local parts = {}
      for i = 1, #v do parts[i] = json(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys, parts = {}, {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do parts[#parts + 1] = json(k) .. ":" .. json(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "null"
end

local function escape_html(s)
  return (s:gsub("[&<>\"]", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;"}))
end

--- The lanes of a diagram, left to right: application, host, then each
-- provider in the order calls reach it (outer layer first, base last).
-- @tparam table records
-- @tparam[opt] table names party -> name
-- @treturn table array of {id =, label =}
function trace.lanes(records, names)
  local party = namer(names)
  local first, seen, edges = {}, {}, {}
  for i, r in ipairs(records) do
    for _, p in ipairs{r.from, r.to} do
      if not seen[p] then seen[p] = true; first[p] = i end
    end
    if r.kind == "call" then edges[#edges + 1] = {r.from, r.to} end
  end
  -- a party's rank: the longest chain of calls that reaches it (callers left
  -- of callees, so a base provider is right of every layer above it)
  local rank, n = {application = 0, host = 1}, 0
  for p in pairs(seen) do n = n + 1; rank[p] = rank[p] or 2 end
  for _ = 1, n do
    local changed = false
    for _, e in ipairs(edges) do
      if e[2] ~= "application" and e[2] ~= "host" and rank[e[2]] < rank[e[1]] + 1 then
        rank[e[2]] = rank[e[1]] + 1
        changed = true
      end
    end
    if not changed then break end
  end
  local ids = {}
  for p in pairs(seen) do ids[#ids + 1] = p end
  table.sort(ids, function(a, b)
    if rank[a] ~= rank[b] then return rank[a] < rank[b] end
    return first[a] < first[b]
  end)
  local lanes = {}
  for i, p in ipairs(ids) do lanes[i] = {id = p, label = party(p)} end
  return lanes
end

local PAGE = [==[
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>@TITLE@</title>
<style>
  :root { --call: #1f5fbf; --return: #6b6b6b; --upcall: #8a3ab9; --complete: #17813a; --sel: #ffe9a8; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 13px/1.35 system-ui, sans-serif; color: #1d1d1f; background: #fafafa; display: flex; height: 100vh; }
  #main { flex: 1; overflow: auto; min-width: 0; }
  header { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid #ddd; padding: 8px 12px;
           display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }
  header h1 { font-size: 15px; margin: 0; }
  header .legend span { margin-right: 10px; white-space: nowrap; }
  header .legend i { display: inline-block; width: 18px; height: 3px; vertical-align: middle; margin-right: 4px; }
  #detail { width: 340px; flex: none; border-left: 1px solid #ddd; background: #fff; padding: 12px; overflow: auto; }
  #detail h2 { font-size: 14px; margin: 0 0 8px; }
  #detail table { border-collapse: collapse; width: 100%; }
  #detail td { border-top: 1px solid #eee; padding: 3px 4px; vertical-align: top; word-break: break-all; }
  #detail td:first-child { color: #666; width: 110px; word-break: normal; }
  #detail tr.param td:first-child { font-family: ui-monospace, monospace; color: #1f5fbf; }
  #detail .note { color: #17813a; }
  svg text { font: 12px system-ui, sans-serif; }
  .lane-head rect { fill: #eef2f8; stroke: #9fb0c8; }
  .lane-head text { font-weight: 600; text-anchor: middle; }
  .lane-line { stroke: #c6cfdb; stroke-dasharray: 2 4; }
  .bar { fill-opacity: 0.28; stroke-opacity: 0.8; stroke-width: 1; }
  .arrow { cursor: pointer; }
  .arrow line { stroke-width: 1.6; }
  .arrow.kind-call line { stroke: var(--call); }
  .arrow.kind-return line { stroke: var(--return); stroke-dasharray: 5 3; }
  .arrow.kind-upcall line { stroke: var(--upcall); }
  .arrow.kind-complete line { stroke: var(--complete); stroke-width: 2.6; }
  .arrow .hit { fill: transparent; }
  .arrow:hover .hit, .arrow.selected .hit { fill: var(--sel); }
  .arrow .label { font-size: 11px; text-anchor: middle; paint-order: stroke; stroke: #fafafa; stroke-width: 4px; stroke-linejoin: round; }
  .arrow.failed .label { fill: #b3261e; font-weight: 600; }
  .arrow.expected .label { fill: #8a5a00; }
  .gutter { font-size: 11px; }
</style>
</head>
<body>
<div id="main">
<header>
  <h1>@TITLE@</h1>
  <label>socket <select id="socket-filter"><option value="">all</option></select></label>
  <label>connection <select id="conn-filter"><option value="">all</option></select></label>
  <span class="legend">
    <span><i style="background:var(--call)"></i>call</span>
    <span><i style="background:var(--return)"></i>return</span>
    <span><i style="background:var(--upcall)"></i>upcall</span>
    <span><i style="background:var(--complete)"></i>completion</span>
    <span><b style="color:#8a5a00">amber</b>: an expected outcome (WSA_IO_PENDING, WSAEWOULDBLOCK)</span>
    <span><b style="color:#b3261e">red</b>: an error</span>
    <span id="threads"></span>
  </span>
  <span id="count"></span>
</header>
<svg id="diagram" xmlns="http://www.w3.org/2000/svg"></svg>
</div>
<aside id="detail"><h2>Details</h2><p>Click an arrow.</p></aside>
<script type="application/json" id="trace-lanes">@LANES@</script>
<script type="application/json" id="trace-conns">@CONNS@</script>
<script type="application/json" id="trace-data">@RECORDS@</script>
<script>
(function () {
  "use strict";
  var lanes = JSON.parse(document.getElementById("trace-lanes").textContent);
  var conns = JSON.parse(document.getElementById("trace-conns").textContent);
  var recs = JSON.parse(document.getElementById("trace-data").textContent);
  var NS = "http://www.w3.org/2000/svg";
  var GUTTER = 112, TOP = 56, ROW = 24, CHAR = 6.6;
  var DETAIL = 340;
  var svg = document.getElementById("diagram");
  var filter = document.getElementById("socket-filter");
  var cfilter = document.getElementById("conn-filter");
  var detail = document.getElementById("detail");
  var index = {}, laneOf = {};
  var PALETTE = ["#e08e0b", "#0f9d8a", "#c2185b", "#6d4c41", "#7cb342", "#3949ab", "#00838f", "#ad1457"];
  var threadColour = {}, nthreads = 0;
  lanes.forEach(function (l, i) { laneOf[l.id] = i; });
  recs.forEach(function (r) {
    index[r.seq] = r;
    if (threadColour[r.thread] === undefined) threadColour[r.thread] = PALETTE[nthreads++ % PALETTE.length];
  });
  // the lane width that fits the window (at 1,400 px: five lanes of 190 px beside the panel)
  var avail = Math.max(600, (window.innerWidth || 1400) - DETAIL - 24);
  var LANE_W = Math.max(110, Math.min(190, Math.floor((avail - GUTTER) / Math.max(1, lanes.length))));

  // each return's call, and each call's return: a stack per thread
  var stacks = {};
  recs.forEach(function (r) {
    var st = stacks[r.thread] || (stacks[r.thread] = []);
    if (r.kind === "call") st.push(r);
    else if (r.kind === "return") {
      for (var i = st.length - 1; i >= 0; i--) {
        if (st[i].name === r.name) { r.call = st[i].seq; st[i].ret = r.seq; st.splice(i); break; }
      }
    }
  });

  function el(name, attrs, parent, text) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function laneX(p) { return GUTTER + (laneOf[p] === undefined ? 0 : laneOf[p]) * LANE_W + LANE_W / 2; }
  function labelOf(p) { var i = laneOf[p]; return i === undefined ? p : lanes[i].label; }
  function clip(s, n) { return s.length > n ? s.slice(0, Math.max(1, n - 1)) + "\u2026" : s; }
  function values(r) { return (r.params || []).map(function (p) { return p.value; }).join(", "); }
  function text(r) {
    if (r.kind === "call") return r.name + "(" + values(r) + ")";
    if (r.kind === "return") {
      return r.name + " \u2192 " + (r.errname || "ok") + (r.result ? " " + r.result : "");
    }
    return r.name + (r.params && r.params.length ? " (" + values(r) + ")" : "") + (r.errname ? " " + r.errname : "");
  }

  var sockets = {};
  recs.forEach(function (r) { if (r.socket) sockets[r.socket] = true; });
  Object.keys(sockets).map(Number).sort(function (a, b) { return a - b; }).forEach(function (s) {
    var o = document.createElement("option");
    o.value = String(s); o.textContent = "s" + s;
    filter.appendChild(o);
  });
  conns.forEach(function (c, i) {
    var o = document.createElement("option");
    o.value = String(i + 1);
    o.textContent = c.map(function (s) { return "s" + s; }).join(" \u2192 ");
    cfilter.appendChild(o);
  });
  var legend = document.getElementById("threads");
  Object.keys(threadColour).forEach(function (t) {
    var s = document.createElement("span");
    s.className = "thread"; s.dataset.thread = t;
    s.innerHTML = '<i style="background:' + threadColour[t] + '"></i>';
    s.appendChild(document.createTextNode("thread " + t));
    legend.appendChild(s);
  });

  function row(table, k, v, cls, href) {
    var tr = document.createElement("tr");
    tr.dataset.field = k;
    if (cls) tr.className = cls;
    var a1 = document.createElement("td"); a1.textContent = k;
    var a2 = document.createElement("td");
    if (href) { var a = document.createElement("a"); a.href = href; a.target = "_blank"; a.rel = "noopener";
                a.textContent = v; a.id = "ms-link"; a2.appendChild(a); }
    else a2.textContent = v;
    tr.appendChild(a1); tr.appendChild(a2); table.appendChild(tr);
  }
  function show(seq) {
    var r = index[seq];
    if (!r) return;
    Array.prototype.forEach.call(svg.querySelectorAll(".arrow.selected"), function (a) { a.classList.remove("selected"); });
    var a = svg.querySelector('.arrow[data-seq="' + seq + '"]');
    if (a) a.classList.add("selected");
    detail.innerHTML = "";
    var h = document.createElement("h2");
    h.textContent = r.kind + ": " + r.name;
    detail.appendChild(h);
    var table = document.createElement("table");
    table.id = "detail-table";
    var rows = [["record", "#" + r.seq], ["kind", r.kind], ["from", labelOf(r.from)], ["to", labelOf(r.to)],
                ["name", r.name], ["socket", r.socket ? "s" + r.socket : "-"], ["thread", String(r.thread)],
                ["time", (r.t * 1000).toFixed(3) + " ms"], ["depth", String(r.depth)], ["arguments", r.args || "-"]];
    rows.forEach(function (kv) { row(table, kv[0], kv[1]); });
    (r.params || []).forEach(function (p) { row(table, p.name, p.value, "param"); });
    row(table, "result", r.result || "-");
    row(table, "error", r.error ? r.errname + " (" + r.error + ")" + (r.outcome === "expected" ? ", expected" : "") : "none");
    if (r.note) row(table, "note", r.note, "note");
    row(table, "duration", r.kind === "return" ? r.us.toFixed(1) + " \u00b5s" : "-");
    if (r.call) row(table, "call", "#" + r.call);
    if (r.ret) row(table, "return", "#" + r.ret);
    if (r.log) row(table, "log", r.log);
    if (r.url) row(table, "reference", r.url.replace(/^https:\/\/learn\.microsoft\.com\/en-us\/windows\/win32\/api\//, ""), null, r.url);
    detail.appendChild(table);
    detail.dataset.seq = String(seq);
  }

  function draw() {
    var want = filter.value === "" ? null : Number(filter.value);
    var conn = cfilter.value === "" ? null : conns[Number(cfilter.value) - 1];
    var inConn = {};
    if (conn) conn.forEach(function (s) { inConn[s] = true; });
    var shown = recs.filter(function (r) {
      return (want === null || r.socket === want) && (conn === null || inConn[r.socket]);
    });
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var width = GUTTER + lanes.length * LANE_W + 8, height = TOP + shown.length * ROW + 30;
    svg.setAttribute("width", width); svg.setAttribute("height", height);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    var defs = el("defs", {}, svg);
    ["call", "return", "upcall", "complete"].forEach(function (k) {
      var m = el("marker", {id: "head-" + k, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
                            orient: "auto-start-reverse"}, defs);
      el("path", {d: "M0,0 L10,5 L0,10 z", style: "fill: var(--" + k + ")"}, m);
    });
    lanes.forEach(function (l, i) {
      var g = el("g", {"class": "lane", "data-party": l.id}, svg);
      var x = GUTTER + i * LANE_W + LANE_W / 2;
      el("line", {"class": "lane-line", x1: x, y1: TOP - 10, x2: x, y2: height - 10}, g);
      var head = el("g", {"class": "lane-head"}, g);
      el("rect", {x: x - LANE_W / 2 + 6, y: 8, width: LANE_W - 12, height: 30, rx: 5}, head);
      el("text", {x: x, y: 28}, head, clip(l.label, Math.floor((LANE_W - 20) / CHAR)));
      el("title", {}, head, l.label);
    });
    // activation bars: from a call's row to its return's, on the callee's lane, in its thread's colour
    var rowOf = {};
    shown.forEach(function (r, i) { rowOf[r.seq] = i; });
    var bars = el("g", {"class": "bars"}, svg);
    shown.forEach(function (r) {
      if (r.kind !== "call" || !r.ret || rowOf[r.ret] === undefined) return;
      var depthOff = Math.min(3, Math.max(0, r.depth - 1)) * 3;
      var x = laneX(r.to) - 4 + depthOff, y1 = TOP + rowOf[r.seq] * ROW + ROW / 2 + 5;
      var y2 = TOP + rowOf[r.ret] * ROW + ROW / 2 + 5;
      var b = el("rect", {"class": "bar", x: x, y: y1, width: 8, height: Math.max(2, y2 - y1), "data-call": r.seq,
                          "data-return": r.ret, "data-thread": r.thread,
                          style: "fill:" + threadColour[r.thread] + ";stroke:" + threadColour[r.thread]}, bars);
      el("title", {}, b, r.name + " on " + labelOf(r.to) + ", thread " + r.thread);
    });
    shown.forEach(function (r, i) {
      var y = TOP + i * ROW + ROW / 2;
      var x1 = laneX(r.from), x2 = laneX(r.to);
      var cls = "arrow kind-" + r.kind + (r.outcome === "failed" ? " failed" : "") + (r.outcome === "expected" ? " expected" : "");
      var g = el("g", {"class": cls, "data-seq": r.seq, "data-socket": r.socket, "data-kind": r.kind,
                       "data-from": r.from, "data-to": r.to, "data-thread": r.thread}, svg);
      el("rect", {"class": "hit", x: 0, y: y - ROW / 2, width: width, height: ROW}, g);
      el("circle", {cx: 6, cy: y, r: 4, style: "fill:" + threadColour[r.thread]}, g);
      el("text", {"class": "gutter", x: 14, y: y + 4, style: "fill:" + threadColour[r.thread]}, g,
         (r.t * 1000).toFixed(2) + " ms t" + r.thread);
      el("line", {x1: x1, y1: y + 5, x2: x2 + (x2 > x1 ? -2 : 2), y2: y + 5, "marker-end": "url(#head-" + r.kind + ")"}, g);
      // the label stays between the two lanes it joins (or within one lane width)
      var room = Math.max(Math.abs(x2 - x1), LANE_W) - 10;
      var full = text(r);
      var lx = (x1 + x2) / 2;
      lx = Math.max(GUTTER + room / 2, Math.min(width - room / 2 - 4, lx));
      var t = el("text", {"class": "label", x: lx, y: y, "data-room": room}, g, clip(full, Math.floor(room / CHAR)));
      if (t.getComputedTextLength) {
        var n = t.textContent.length;
        while (n > 2 && t.getComputedTextLength() > room) { n -= 1; t.textContent = clip(full, n); }
      }
      el("title", {}, g, r.kind === "return" ? full + (r.outcome === "expected" ? " (expected)" : "") + ", " +
         Math.round(r.us) + " \u00b5s" : full);
      g.addEventListener("click", function () { show(r.seq); history.replaceState(null, "", "#select=" + r.seq); });
    });
    document.getElementById("count").textContent = shown.length + " of " + recs.length + " records";
    document.body.dataset.arrows = String(shown.length);
    document.body.dataset.lanes = String(lanes.length);
    document.body.dataset.laneWidth = String(LANE_W);
    if (detail.dataset.seq) { var a = svg.querySelector('.arrow[data-seq="' + detail.dataset.seq + '"]'); if (a) a.classList.add("selected"); }
  }

  filter.addEventListener("change", draw);
  cfilter.addEventListener("change", draw);
  var hash = {};
  location.hash.replace(/^#/, "").split("&").forEach(function (kv) { var p = kv.split("="); if (p[0]) hash[p[0]] = p[1]; });
  if (hash.socket && sockets[hash.socket]) filter.value = hash.socket;
  if (hash.connection && conns[Number(hash.connection) - 1]) cfilter.value = hash.connection;
  draw();
  if (hash.select) show(Number(hash.select));
  document.body.dataset.ready = "1";
})();
</script>
</body>
</html>
]==]

--- The connections in a trace, each followed through every layer: a layer's
-- socket joined with the sockets it calls on below while a call on it is
-- running (s264 and its lower s268), and the application's connect to an
-- address joined with the socket its listener accepted there (s272).
-- @tparam table records
-- @treturn table an array of connections, each an array of sockets in the order they first appear
function trace.connections(records)
  local parent, first, n = {}, {}, 0
  local function root(x)
    while parent[x] ~= x do parent[x] = parent[parent[x]]; x = parent[x] end
    return x
  end
  local function add(x)
    if x and x ~= 0 and not parent[x] then parent[x] = x; n = n + 1; first[x] = n end
  end
  local function join(a, b)
    add(a); add(b)
    local ra, rb = root(a), root(b)
    if ra ~= rb then parent[rb] = ra end
  end
  local stacks, where, connects, accepted = {}, {}, {}, {}
  for _, r in ipairs(records) do
    add(r.socket)
    local st = stacks[r.thread] or {}
    stacks[r.thread] = st
    if r.kind == "call" then
      local up = st[#st]
      if up and up.to == r.from and (up.socket or 0) ~= 0 and (r.socket or 0) ~= 0 and up.socket ~= r.socket
        and r.from ~= "application" and r.from ~= "host" then
        join(up.socket, r.socket)
      end
      st[#st + 1] = r
      if r.from == "application" and r.name == "connect" then
        local addr = (r.args or ""):match(",%s*\"?([^\",]+)")
        if addr then connects[#connects + 1] = {addr = addr, s = r.socket} end
      end
    elseif r.kind == "return" then
      for i = #st, 1, -1 do
        if st[i].name == r.name then for j = #st, i, -1 do st[j] = nil end break end
      end
      if r.to == "application" and r.name == "getsockname" and r.result then where[r.result] = r.socket end
      if r.to == "application" and r.name == "accept" and r.result then
        local s = math.tointeger(tonumber(r.result:match("^(%d+)")))
        if s then
          local list = accepted[r.socket] or {}
          accepted[r.socket] = list
          list[#list + 1] = s
        end
      end
    end
  end
  -- the n-th connect to a listener's address and the n-th socket it accepted
  local taken = {}
  for _, c in ipairs(connects) do
    local l = where[c.addr]
    if l and accepted[l] then
      taken[l] = (taken[l] or 0) + 1
      local s = accepted[l][taken[l]]
      if s then join(c.s, s) end
    end
  end
  local groups, order = {}, {}
  for x in pairs(parent) do
    local g = root(x)
    if not groups[g] then groups[g] = {}; order[#order + 1] = g end
    table.insert(groups[g], x)
  end
  local out = {}
  for _, g in ipairs(order) do
    if #groups[g] > 1 then
      table.sort(groups[g], function(a, b) return first[a] < first[b] end)
      out[#out + 1] = groups[g]
    end
  end
  table.sort(out, function(a, b) return first[a[1]] < first[b[1]] end)
  return out
end

--- A self-contained HTML page (no network, no external scripts) drawing the
-- records as a sequence diagram: a lane per party, an arrow per record
-- labelled with its decoded arguments (returns named after their call, the
-- full text on hover, never past the lanes it joins), activation bars from a
-- call to its return in the colour of its thread, a socket filter, a
-- connection filter (`trace.connections`) and a detail panel on click with
-- the parameters by name, their decoded values and the link to Microsoft's
-- page.  Lane widths fit the window (1,400 px: five lanes beside the panel).
-- The URL fragment `#socket=N` or `#connection=N` filters and `#select=SEQ`
-- opens a record's details.
-- @tparam[opt] table records (default: trace.records())
-- @tparam[opt] table opts {title =, names = {[party] = label}}
-- @treturn string
function trace.html(records, opts)
  records = records or trace.records()
  opts = opts or {}
  local title = escape_html(opts.title or "lwsp trace")
  local shown = {}
  for i, r in ipairs(records) do
    local d = trace.decode(r, opts.names)
    local c = {}
    for k, v in pairs(r) do c[k] = v end
    c.params, c.url, c.outcome, c.note = {}, d.url, d.outcome, d.note
    for j, p in ipairs(d.params) do c.params[j] = {name = p.name, value = p.value} end
    shown[i] = c
  end
  local page = PAGE:gsub("@TITLE@", function() return title end)
  page = page:gsub("@LANES@", function() return json(trace.lanes(records, opts.names)) end)
  page = page:gsub("@CONNS@", function() return json(trace.connections(records)) end)
  page = page:gsub("@RECORDS@", function() return json(shown) end)
  return page
end

--- Writes trace.html(records, opts) to a file.
function trace.write_html(file, records, opts)
  local f = assert(io.open(file, "w"))
  f:write(trace.html(records, opts))
  f:close()
  return file
end

-- One flat JSON object as the trace writes it: string and number values.
local function parse_flat(line)
  local r, i = {}, line:find("{", 1, true)
  if not i then return nil end
  i = i + 1
  local unesc = {['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t"}
  while true do
    i = line:find("%S", i)
    if not i then return nil end
    local ch = line:sub(i, i)
    if ch == "}" then return r end
    if ch == "," then i = i + 1; goto continue end
    do
      local key, after = line:match('^"([^"]*)"%s*:%s*()', i)
      if not key then return nil end
      i = after
      if line:sub(i, i) == '"' then
        local parts, j = {}, i + 1
        while true do
          local c = line:sub(j, j)
          if c == "" then return nil end
          if c == '"' then break end
          if c == "\\" then
            local e = line:sub(j + 1, j + 1)
            if e == "u" then
              parts[#parts + 1] = utf8.char(tonumber(line:sub(j + 2, j + 5), 16) or 63)
              j = j + 6
            else
              parts[#parts + 1] = unesc[e] or e
              j = j + 2
            end
          else
            parts[#parts + 1] = c
            j = j + 1
          end
        end
        r[key] = table.concat(parts)
        i = j + 1
      else
        local digits, after2 = line:match("^(-?[%d.eE+-]+)()", i)
        if not digits then return nil end
        r[key] = math.tointeger(tonumber(digits)) or tonumber(digits)
        i = after2
      end
    end
    ::continue::
  end
end

--- Reads a JSON Lines trace file (trace.start(file)) back into records.
-- @tparam string file
-- @treturn table records (errname nil where the file has "")
function trace.read(file)
  local recs = {}
  for line in io.lines(file) do
    if line:match("%S") then
      local r = assert(parse_flat(line), "not a trace record: " .. line)
      if r.errname == "" then r.errname = nil end
      recs[#recs + 1] = r
    end
  end
  return recs
end

return trace
