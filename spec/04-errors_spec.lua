-- A provider's faults and a caller's bad arguments become Winsock errors and
-- log lines; the process carries on.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

local FAULTY = [[
local lwsp = require "lwsp"
local M = {}
for name in pairs(lwsp.handler_names) do
  M[name] = function() error("boom in " .. name) end
end
M.socket = function(s, af)
  if af == 23 then error("boom in socket") end
  return true
end
return M
]]

-- One application call per handler (socket, cleanup and closesocket apart).
local function calls(r, s)
  local ev, w, ov = host.create_event(), host.window(), host.overlapped()
  return {
    accept = function() return host.accept(s) end,
    addresstostring = function() return host.address_to_string("1.2.3.4:5", r.tcp) end,
    asyncselect = function() return host.async_select(s, w, 0x0401, wsp.FD_READ) end,
    bind = function() return host.bind(s, "1.2.3.4:5") end,
    connect = function() return host.connect(s, "1.2.3.4:5") end,
    duplicatesocket = function() return host.duplicate_socket(s, 1) end,
    enumnetworkevents = function() return host.enum_network_events(s) end,
    eventselect = function() return host.event_select(s, ev, wsp.FD_READ) end,
    getoverlappedresult = function() return host.get_overlapped_result(s, ov) end,
    getpeername = function() return host.getpeername(s) end,
    getsockname = function() return host.getsockname(s) end,
    getsockopt = function() return host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_TYPE) end,
    getqosbyname = function() return host.get_qos_by_name(s, "x") end,
    ioctl = function() return host.ioctl(s, wsp.FIONREAD) end,
    joinleaf = function() return host.join_leaf(s, "1.2.3.4:5") end,
    listen = function() return host.listen(s, 1) end,
    recv = function() return host.recv(s, 10) end,
    recvdisconnect = function() return host.recv_disconnect(s) end,
    recvfrom = function() return host.recvfrom(s, 10) end,
    select = function() return host.select({s}, nil, nil, 0) end,
    send = function() return host.send(s, "x") end,
    senddisconnect = function() return host.send_disconnect(s) end,
    sendto = function() return host.sendto(s, "x", "1.2.3.4:5") end,
    setsockopt = function() return host.setsockopt(s, wsp.SOL_SOCKET, wsp.SO_RCVBUF, 1) end,
    shutdown = function() return host.shutdown(s, wsp.SD_BOTH) end,
    stringtoaddress = function() return host.string_to_address("1.2.3.4", wsp.AF_INET, r.tcp) end,
    closesocket = function() return host.close(s) end,
    socket = function() return host.socket(wsp.AF_INET6, wsp.SOCK_STREAM, 0, 0, r.ids[2]) end,
  }
end

describe("a Lua error in a handler", function()
  after_each(H.reset)

  it("fails each of the 30 entries with WSAENETDOWN and logs the handler and a traceback", function()
    local r = H.provider(FAULTY, {entries = {{af = wsp.AF_INET, type = wsp.SOCK_STREAM}, {af = wsp.AF_INET6, type = wsp.SOCK_STREAM}}})
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local n = 0
    for name, call in pairs(calls(r, s)) do
      local mark = H.mark()
      H.fails_with("WSAENETDOWN", call())
      local line = H.find_log(mark, ("handler '%s' (%s) raised an error"):format(name, wsp.handler_names[name]), true)
      assert.truthy(line, "no log line for " .. name)
      assert.truthy(line:find("boom in " .. name, 1, true), line)
      assert.truthy(line:find("stack traceback", 1, true), line)
      n = n + 1
    end
    assert.equal(28, n)   -- all but cleanup (below) and cancelblockingcall, which lwsp owns
    -- the provider still serves: the socket is alive and new ones open
    assert.truthy(host.socket_info(s))
    local s2 = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert.truthy(host.socket_info(s2))
    local mark = H.mark()
    host.cleanup()
    assert.truthy(H.find_log(mark, "handler 'cleanup' (WSPCleanup) raised an error", true))
    H.fails_with("WSAENOTSOCK", host.close(s))
  end)
end)

local BAD_RETURNS = [[
local wsp = require "wsp"
return {
  socket = function(s) return true end,
  send = function(s, data) if data == "big" then return 1000 end return "ten" end,
  recv = function(s) return 42 end,
  getsockname = function(s) return "garbage" end,
  getpeername = function(s) return {family = 2} end,
  bind = function(s) return false end,
  listen = function(s) return nil, "not a code" end,
  ioctl = function(s) return {} end,
  accept = function(s, ns) return nil end,
  enumnetworkevents = function(s) return "x" end,
  select = function(r) return {{handle = 42}} end,
  duplicatesocket = function(s) return 5 end,
  addresstostring = function() return 5 end,
  connect = function(s) return nil, "WSAECONNREFUSED" end,
  shutdown = function(s) return nil, "WSAENOTCONN: not connected", 10057 end,
  setsockopt = function(s) return nil, 10042 end,
  getsockopt = function(s, level, name)
    if name == wsp.SO_RCVBUF then return print end
    coroutine.yield()
    return 1
  end,
}
]]

describe("a handler that returns the wrong things", function()
  local r, s
  before_each(function()
    r = H.provider(BAD_RETURNS)
    s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  end)
  after_each(H.reset)

  local function faults(pattern, ok, msg, code)
    H.fails_with("WSAENETDOWN", ok, msg, code)
    return true
  end

  local cases = {
    {"send a string count", function() return host.send(s, "hello") end, "'send' (WSPSend): returned string where a byte count"},
    {"send more than given", function() return host.send(s, "big") end, "a byte count from 0 to 3"},
    {"recv a number", function() return host.recv(s, 10) end, "where data (a string) was expected"},
    {"getsockname a string", function() return host.getsockname(s) end, "returned string where an address"},
    {"getpeername a partial table", function() return host.getpeername(s) end, "returned table where an address"},
    {"bind false", function() return host.bind(s, "1.2.3.4:1") end, "returned false without a Winsock error code"},
    {"listen junk", function() return host.listen(s, 1) end, "returned nil without a Winsock error code"},
    {"getsockopt a function", function() return host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_RCVBUF) end, "where an option value"},
    {"ioctl a table", function() return host.ioctl(s, wsp.FIONREAD) end, "where ioctl output"},
    {"accept nothing", function() return host.accept(s) end, "returned nil without a Winsock error code"},
    {"enumnetworkevents a string", function() return host.enum_network_events(s) end, "where an FD_* mask"},
    {"select a foreign socket", function() return host.select({s}) end, "taken from the sets it was given"},
    {"duplicatesocket a number", function() return host.duplicate_socket(s, 1) end, "where protocol info"},
    {"addresstostring a number", function() return host.address_to_string("1.2.3.4:1", r.tcp) end, "where a string"},
    {"getsockopt yielding", function() return host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_TYPE) end, "yielded, but this call cannot wait"},
  }
  for _, case in ipairs(cases) do
    it("fails with WSAENETDOWN and a log line: " .. case[1], function()
      local mark = H.mark()
      faults(case[3], case[2]())
      assert.truthy(H.find_log(mark, case[3], true), "no log line: " .. case[3])
    end)
  end

  it("passes error codes given as numbers, names, or name-and-message", function()
    H.fails_with("WSAECONNREFUSED", host.connect(s, "1.2.3.4:1"))
    H.fails_with("WSAENOTCONN", host.shutdown(s, wsp.SD_SEND))
    H.fails_with("WSAENOPROTOOPT", host.setsockopt(s, wsp.SOL_SOCKET, wsp.SO_RCVBUF, 1))
  end)

  it("keeps the socket usable after each fault", function()
    host.send(s, "hello")
    host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_TYPE)
    H.fails_with("WSAECONNREFUSED", host.connect(s, "1.2.3.4:1"))
    assert.is_true(host.close(s))
  end)
end)

describe("a missing handler", function()
  after_each(H.reset)

  it("answers WSAEOPNOTSUPP, except for the entries lwsp completes itself", function()
    local r = H.provider("return {socket = function() return true end}\n")
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local own = {closesocket = true, socket = true, getoverlappedresult = true, asyncselect = true,
      eventselect = true, enumnetworkevents = true, select = true}
    for name, call in pairs(calls(r, s)) do
      if not own[name] then H.fails_with("WSAEOPNOTSUPP", call()) end
    end
    for name in pairs(own) do
      if name ~= "socket" and name ~= "closesocket" and name ~= "getoverlappedresult" then
        assert.truthy(calls(r, s)[name](), name)
      end
    end
    local ov = host.overlapped()
    ov.InternalHigh, ov.Offset = 77, 3
    local bytes, flags = host.get_overlapped_result(s, ov)
    assert.equal(77, bytes)
    assert.equal(3, flags)
    ov.OffsetHigh = wsp.WSAECONNRESET
    H.fails_with("WSAECONNRESET", host.get_overlapped_result(s, ov))
    ov.Internal = wsp.WSS_OPERATION_IN_PROGRESS
    H.fails_with("WSA_IO_INCOMPLETE", host.get_overlapped_result(s, ov))
    ov.Internal = 0   -- a structure still marked pending is never freed
    assert.is_true(host.close(s))
    H.fails_with("WSAENOTSOCK", host.close(s))
  end)
end)

describe("bad pointers and lengths from the caller", function()
  local r, s, u
  before_each(function()
    r = H.provider("examples/memnet.lua")
    s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    u = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
    assert(host.bind(u, "127.0.0.1:0"))
  end)
  after_each(H.reset)

  local expect = {
    ["accept:null-addrlen"] = "WSAEFAULT", ["accept:short-addrlen"] = "WSAEFAULT",
    ["bind:null"] = "WSAEFAULT", ["bind:short"] = "WSAEFAULT", ["bind:null-errno"] = "WSAEFAULT",
    ["connect:null"] = "WSAEFAULT",
    ["getsockname:null"] = "WSAEFAULT", ["getsockname:null-len"] = "WSAEFAULT",
    ["getpeername:null"] = "WSAEFAULT",
    ["getsockopt:null-optval"] = "WSAEFAULT", ["getsockopt:null-optlen"] = "WSAEFAULT",
    ["getsockopt:short"] = "WSAEFAULT",
    ["setsockopt:null-optval"] = "WSAEFAULT", ["setsockopt:negative"] = "WSAEFAULT",
    ["recv:null-flags"] = "WSAEFAULT", ["recv:null-buf"] = "WSAEFAULT", ["recv:null-bufs"] = "WSAEFAULT",
    ["recv:null-count"] = "WSAEFAULT", ["recvfrom:null-fromlen"] = "WSAEFAULT",
    ["recv:no-bufs"] = "WSAEFAULT", ["recv:zero-count"] = "WSAEINVAL", ["recvfrom:no-bufs"] = "WSAEFAULT",
    ["send:no-bufs"] = "WSAEFAULT", ["send:zero-count"] = "WSAEINVAL",
    ["send:null-buf"] = "WSAEFAULT", ["send:null-bufs"] = "WSAEFAULT", ["send:null-sent"] = "WSAEFAULT",
    ["sendto:short-to"] = "WSAEFAULT",
    ["select:all-null"] = "WSAEINVAL", ["select:negative-timeout"] = "WSAEINVAL", ["select:too-many"] = "WSAEINVAL",
    ["ioctl:null-returned"] = "WSAEFAULT", ["ioctl:null-in"] = "WSAEFAULT",
    ["enumnetworkevents:null"] = "WSAEFAULT", ["duplicatesocket:null"] = "WSAEFAULT",
    ["getoverlappedresult:null"] = "WSAEFAULT", ["getoverlappedresult:pending"] = "WSA_IO_INCOMPLETE",
    ["getqosbyname:null"] = "WSAEFAULT",
    ["addresstostring:null"] = "WSAEFAULT", ["stringtoaddress:null"] = "WSAEFAULT",
    ["socket:null-info"] = "WSAEFAULT", ["shutdown:bad-how"] = "WSAEINVAL",
  }
  for probe, name in pairs(expect) do
    it(("%s gives %s"):format(probe, name), function()
      assert.equal(wsp[name], host.probe(probe, s))
    end)
  end

  it("recvfrom with a short address length gives WSAEFAULT and keeps the datagram", function()
    local v = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
    assert.equal(5, host.sendto(v, "hello", host.getsockname(u)))
    assert.equal(wsp.WSAEFAULT, host.probe("recvfrom:short-fromlen", u))
    assert.equal("hello", (host.recvfrom(u, 100)))
  end)

  it("reports the length needed when an output buffer is short", function()
    local code, need = host.probe("addresstostring:short", s)
    assert.equal(wsp.WSAEFAULT, code)
    assert.equal(#"127.0.0.1" + 1, need)
    code, need = host.probe("stringtoaddress:short", s)
    assert.equal(wsp.WSAEFAULT, code)
    assert.equal(16, need)
  end)
end)

describe("unknown and stale handles", function()
  after_each(H.reset)

  it("give WSAENOTSOCK from the host", function()
    H.fails_with("WSAENOTSOCK", host.send(123456, "x"))
    H.fails_with("WSAENOTSOCK", host.close(0))
    H.fails_with("WSAENOTSOCK", host.socket_info(77))
  end)

  it("give WSAENOTSOCK from a provider handed another provider's socket", function()
    local a = H.provider("examples/memnet.lua")
    local b = H.provider("examples/memnet.lua")
    local sa = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, a.tcp))
    local sb = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, b.tcp))
    assert(host.bind(sb, "127.0.0.1:0"))
    assert.equal(0, host.probe("getsockname:ok", sb, b.tcp))
    assert.equal(wsp.WSAENOTSOCK, host.probe("getsockname:ok", sa, b.tcp))
  end)
end)
