-- A provider that records every call it gets (as "CALL {...}" log lines) and
-- answers each with fixed, recognisable results, so specs can check both the
-- arguments that reach Lua and the results that reach the caller.
local wsp = require "wsp"
local lwsp = require "lwsp"

local ser = require "ser"

local function record(name, ...)
  local args = table.pack(...)
  local parts = {ser(name)}
  for i = 1, args.n do parts[#parts + 1] = ser(args[i] == nil and "<nil>" or args[i]) end
  lwsp.log("CALL {" .. table.concat(parts, ",") .. "}", "recorder")
end

local M = {description = "recorder (lwsp spec provider)"}

function M.socket(s, af, type, protocol, info, group, flags)
  s.recorder = true
  record("socket", s, af, type, protocol, info.iAddressFamily, info.ProviderId, group, flags)
  return true
end
function M.accept(s, ns, condition)
  ns.recorder = true
  local verdict = condition and condition({family = 2, address = "10.0.0.9", port = 999}, "hello") or "<none>"
  record("accept", s, ns, verdict)
  return {family = wsp.AF_INET, address = "10.0.0.9", port = 999}
end
function M.addresstostring(addr, info)
  record("addresstostring", addr, info and info.dwCatalogEntryId)
  return "recorded " .. addr.address .. " port " .. addr.port
end
function M.asyncselect(s, hwnd, msg, events) record("asyncselect", s, hwnd, msg, events) return true end
function M.bind(s, addr) record("bind", s, addr) return true end
function M.cancelblockingcall() record("cancelblockingcall") return true end
function M.cleanup() record("cleanup") end
function M.closesocket(s) record("closesocket", s) return true end
function M.connect(s, addr, caller_data, sqos, gqos)
  record("connect", s, addr, caller_data, sqos, gqos)
  return true, "callee-data"
end
function M.duplicatesocket(s, pid)
  record("duplicatesocket", s, pid)
  return {dwProviderReserved = pid, szProtocol = "duplicated"}
end
function M.enumnetworkevents(s, event)
  record("enumnetworkevents", s, event)
  return wsp.FD_READ | wsp.FD_CLOSE, {[wsp.FD_CLOSE] = wsp.WSAECONNRESET, [wsp.FD_READ] = 0}
end
function M.eventselect(s, event, mask) record("eventselect", s, event, mask) return true end
function M.getoverlappedresult(s, ov, wait) record("getoverlappedresult", s, ov.address, wait) return 1234, 7 end
function M.getpeername(s) record("getpeername", s) return {family = wsp.AF_INET, address = "192.0.2.1", port = 80} end
function M.getsockname(s)
  record("getsockname", s)
  return {family = wsp.AF_INET6, address = "2001:db8::1", port = 443, flowinfo = 5, scope_id = 3}
end
function M.getsockopt(s, level, name, optlen)
  record("getsockopt", s, level, name, optlen)
  if name == wsp.SO_RCVBUF then return 8192 end
  if name == wsp.SO_KEEPALIVE then return true end
  if name == wsp.SO_LINGER then return {l_onoff = 1, l_linger = 5} end
  if name == wsp.SO_PROTOCOL_INFOW then return {szProtocol = "recorded info"} end
  if name == 0x7001 then return "raw-bytes" end
  return nil, wsp.WSAENOPROTOOPT
end
function M.getqosbyname(s, name)
  record("getqosbyname", s, name)
  return {SendingFlowspec = {TokenRate = 100, Latency = 7}, ReceivingFlowspec = {TokenRate = 200}}
end
function M.ioctl(s, code, input, outlen)
  record("ioctl", s, code, input, outlen)
  if code == wsp.FIONREAD then return 42 end
  if code == wsp.FIONBIO then return nil end
  return "out:" .. (input or "")
end
function M.joinleaf(s, addr, caller_data, sqos, gqos, flags)
  record("joinleaf", s, addr, caller_data, sqos, gqos, flags)
  return true
end
function M.listen(s, backlog) record("listen", s, backlog) return true end
function M.recv(s, len, flags)
  record("recv", s, len, flags)
  return ("r"):rep(math.min(len, 10)), wsp.MSG_PARTIAL
end
function M.recvdisconnect(s) record("recvdisconnect", s) return "bye" end
function M.recvfrom(s, len, flags)
  record("recvfrom", s, len, flags)
  return "dgram", {family = wsp.AF_INET, address = "198.51.100.7", port = 53}, 0
end
function M.select(r, w, e, timeout)
  record("select", r, w, e, timeout)
  return r, {}, nil
end
function M.send(s, data, flags) record("send", s, data, flags) return #data - 1 end
function M.senddisconnect(s, data) record("senddisconnect", s, data) return true end
function M.sendto(s, data, to, flags) record("sendto", s, data, to, flags) return #data end
function M.setsockopt(s, level, name, value, raw) record("setsockopt", s, level, name, value, raw) return true end
function M.shutdown(s, how) record("shutdown", s, how) return true end
function M.stringtoaddress(text, af, info)
  record("stringtoaddress", text, af, info and info.dwCatalogEntryId)
  return lwsp.parse_address(text, af)
end

return M
