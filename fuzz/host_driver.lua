-- Driver for fuzz_host: turns fuzzer bytes into calls of lwsp.host's
-- application-facing functions with arbitrary arguments.  Argument errors
-- (Lua errors) are expected and ignored; crashes, hangs and sanitizer reports
-- are findings.  Calls that could wait forever get a zero timeout and every
-- socket is made non-blocking.
local lwsp = require "lwsp"
local wsp = require "wsp"
local host = require "wsp.host"

local R = host.install_lua{script = FUZZ_ROOT .. "/examples/memnet.lua", entries = {
  {af = wsp.AF_INET, type = wsp.SOCK_STREAM}, {af = wsp.AF_INET, type = wsp.SOCK_DGRAM},
  {af = wsp.AF_INET6, type = wsp.SOCK_STREAM}}}

local FUNCS = {
  "socket", "close", "bind", "listen", "connect", "accept", "send", "sendto", "recv", "recvfrom", "shutdown",
  "getsockname", "getpeername", "getsockopt", "setsockopt", "ioctl", "address_to_string", "string_to_address",
  "duplicate_socket", "event_select", "enum_network_events", "async_select", "select", "get_qos_by_name",
  "join_leaf", "send_disconnect", "recv_disconnect", "cancel_blocking_call", "socket_info", "create_event",
  "set_event", "reset_event", "close_event", "event_state", "window", "port", "associate", "post",
  "close_object", "overlapped", "get_overlapped_result", "wsasend", "wsarecv", "wsaioctl", "completions",
  "probe", "last_condition",
}
local PROBES = {"bind:null", "bind:short", "recv:null-buf", "send:null-bufs", "select:too-many", "getsockopt:short",
  "ioctl:null-in", "accept:short-addrlen", "stringtoaddress:short", "addresstostring:short"}

return function(bytes)
  local pos, handles, objects, ovs = 1, {}, {}, {}
  local function byte()
    local b = bytes:byte(pos) or 0
    pos = pos + 1
    return b
  end
  local function int()
    local k = byte()
    if k < 100 and #handles > 0 then return handles[k % #handles + 1] end
    if k < 140 and #objects > 0 then return objects[k % #objects + 1] end
    if k < 200 then return k - 150 end
    local v = 0
    for _ = 1, 4 do v = v * 256 + byte() end
    return v - 0x80000000
  end
  local function str()
    local n = byte() % 40
    local s = bytes:sub(pos, pos + n - 1)
    pos = pos + n
    return s
  end
  local function arg()
    local t = byte() % 9
    if t <= 2 then return int()
    elseif t == 3 then return str()
    elseif t == 4 then return {family = byte() % 2 == 0 and wsp.AF_INET or wsp.AF_INET6, address = byte() % 2 == 0 and "127.0.0.1" or "::1", port = byte() * 256 + byte()}
    elseif t == 5 then return ("127.0.0.1:%d"):format(byte())
    elseif t == 6 then return #ovs > 0 and ovs[byte() % #ovs + 1] or nil
    elseif t == 7 then return byte() % 2 == 0
    end
    return nil
  end
  while pos <= #bytes do
    local name = FUNCS[byte() % #FUNCS + 1]
    local args = {}
    local n = byte() % 6
    for i = 1, n do args[i] = arg() end
    if name == "socket" then args[5] = ({R.ids[1], R.ids[2], R.ids[3], int()})[byte() % 4 + 1] end
    if name == "select" then args[4] = 0 end
    if name == "ioctl" and args[2] == wsp.FIONBIO then args[3] = 1 end
    if name == "get_overlapped_result" then args[3] = false end
    if name == "probe" then args[1] = PROBES[byte() % #PROBES + 1] end
    if name == "wsarecv" or name == "wsasend" or name == "wsaioctl" then
      for i = 1, 6 do if type(args[i]) == "number" and args[i] > 65536 then args[i] = 16 end end
    end
    if name == "recv" or name == "recvfrom" then args[2] = type(args[2]) == "number" and args[2] % 4096 or 16 end
    local ok, r1 = pcall(host[name], table.unpack(args, 1, 6))
    if ok and type(r1) == "number" then
      if name == "socket" or name == "accept" then
        handles[#handles + 1] = r1
        pcall(host.ioctl, r1, wsp.FIONBIO, 1)
      elseif name == "create_event" or name == "window" or name == "port" then
        objects[#objects + 1] = r1
      end
    elseif ok and name == "overlapped" then
      ovs[#ovs + 1] = r1
    end
  end
  for _, h in ipairs(handles) do pcall(host.close, h) end
  for _, o in ipairs(objects) do pcall(host.close_object, o); pcall(host.close_event, o) end
  for _, ov in ipairs(ovs) do if ov.pending then ov.Internal = 0 end end
  host.completions()
end
