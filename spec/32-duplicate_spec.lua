-- WSPDuplicateSocket end to end, driven as ws2_32 drives it: the application's
-- WSADuplicateSocket (host.duplicate_socket) gives a protocol info whose
-- dwProviderReserved names the shared socket; WSASocket with that info
-- (host.socket(FROM_PROTOCOL_INFO, ..., info)) gives a second descriptor for
-- the same socket.  Over memnet, a Lua layer over memnet, the native base
-- (real loopback TCP and UDP) and a Lua layer over the native base.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

local FPI = wsp.FROM_PROTOCOL_INFO

local function from_info(info)
  return host.socket(FPI, FPI, FPI, wsp.WSA_FLAG_OVERLAPPED, info)
end

-- What arrives on s within a few seconds (a failing spec ends instead of hanging).
local function recv_some(s, n) return H.recv_within(s, n, 5) end

local installs = {
  memnet = function()
    return H.provider("examples/memnet.lua", {entries = {
      {af = wsp.AF_INET, type = wsp.SOCK_STREAM}, {af = wsp.AF_INET, type = wsp.SOCK_DGRAM}}})
  end,
  ["a Lua layer over memnet"] = function()
    local base = H.provider("examples/memnet.lua", {entries = {
      {af = wsp.AF_INET, type = wsp.SOCK_STREAM}, {af = wsp.AF_INET, type = wsp.SOCK_DGRAM}}})
    return H.layered{script = H.root .. "/examples/passthrough.lua", over = base, name = "pt"}, base
  end,
  ["the native base"] = function() return H.base() end,
  ["a Lua layer over the native base"] = function()
    local base = H.base()
    return H.layered{script = H.root .. "/examples/passthrough.lua", over = base, name = "pt"}, base
  end,
}

for _, name in ipairs{"memnet", "a Lua layer over memnet", "the native base", "a Lua layer over the native base"} do
  describe("WSPDuplicateSocket over " .. name, function()
    local r, base
    before_each(function() r, base = installs[name]() end)
    after_each(H.reset)

    it("gives this process a protocol info for the socket's own entry, with dwProviderReserved set", function()
      local c = H.memnet_pair(r)
      local info = assert(host.duplicate_socket(c, lwsp.process_id()))
      assert.equal(r.tcp, info.dwCatalogEntryId)
      assert.equal(r.guid, info.ProviderId)
      assert.are_not.equal(0, info.dwProviderReserved)
      if base then
        -- the layer's own chain entry: the layer first, then the entry below
        assert.equal(r.layer, info.ProtocolChain[1])
        assert.equal(base.tcp, info.ProtocolChain[2])
      end
    end)

    it("WSASocket from that info: a second descriptor that shares the connection's data", function()
      local c, a = H.memnet_pair(r)
      local d = assert(from_info(assert(host.duplicate_socket(c, lwsp.process_id()))))
      assert.are_not.equal(c, d)
      assert.same(host.getsockname(c), host.getsockname(d))
      assert.same(host.getsockname(a), host.getpeername(d))
      assert.equal(7, host.send(d, "from d;"))
      assert.equal(7, host.send(c, "from c;"))
      assert.equal("from d;from c;", recv_some(a, 14))
      assert.equal(6, host.send(a, "to one"))
      assert.equal("to one", recv_some(d, 6))
    end)

    it("closing the original leaves the duplicate connected, and the other way round", function()
      local c, a = H.memnet_pair(r)
      local d = assert(from_info(assert(host.duplicate_socket(c, lwsp.process_id()))))
      assert.is_true(host.close(c))
      H.fails_with("WSAENOTSOCK", host.send(c, "x"))
      assert.equal(5, host.send(a, "still"))
      assert.equal("still", recv_some(d, 5))
      assert.equal(5, host.send(d, "there"))
      assert.equal("there", recv_some(a, 5))
      -- a duplicate of the duplicate, then the first duplicate goes
      local e = assert(from_info(assert(host.duplicate_socket(d, lwsp.process_id()))))
      assert.is_true(host.close(d))
      assert.equal(4, host.send(e, "last"))
      assert.equal("last", recv_some(a, 4))
      -- the last descriptor closes the connection: the peer reads its end
      assert.is_true(host.close(e))
      assert.equal("", recv_some(a, 1))
    end)

    it("closing the original while a thread is blocked in its recv: that call ends, the duplicate stays connected",
      function()
      local c, a = H.memnet_pair(r)
      local d = assert(from_info(assert(host.duplicate_socket(c, lwsp.process_id()))))
      local job = host.spawn("recv", c, 10)
      host.sleep(100)
      assert.is_true(host.close(c))
      local ok, msg = job:join(5000)
      assert.is_nil(ok)
      assert.are_not.equal("timeout", msg)
      assert.equal(4, host.send(a, "more"))
      assert.equal("more", recv_some(d, 4))
      assert.equal(4, host.send(d, "back"))
      assert.equal("back", recv_some(a, 4))
    end)

    it("uses the reference once: a second WSASocket from the same info fails with WSAEINVAL", function()
      local c = H.memnet_pair(r)
      local info = assert(host.duplicate_socket(c, lwsp.process_id()))
      assert(from_info(info))
      H.fails_with("WSAEINVAL", from_info(info))
      -- a reference nobody handed out
      info.dwProviderReserved = 0x7ffffff0
      H.fails_with("WSAEINVAL", from_info(info))
    end)

    it("a socket closed before its info is used stays open for it, as for another process", function()
      local c, a = H.memnet_pair(r)
      local info = assert(host.duplicate_socket(c, lwsp.process_id()))
      assert.is_true(host.close(c))
      local d = assert(from_info(info))
      assert.equal(3, host.send(a, "hi!"))
      assert.equal("hi!", recv_some(d, 3))
    end)

    it("shares a datagram socket's bound address: what is sent to it, the duplicate receives", function()
      -- (a stream socket first: the provider starts up with the stream entry)
      assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
      local u = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
      assert(host.bind(u, "127.0.0.1:0"))
      local info = assert(host.duplicate_socket(u, lwsp.process_id()))
      assert.equal(r.udp, info.dwCatalogEntryId)          -- the datagram socket's own entry
      assert.equal(wsp.SOCK_DGRAM, info.iSocketType)
      local d = assert(from_info(info))
      assert.equal(r.udp, host.socket_info(d).catalog)
      assert.is_true(host.close(u))
      local peer = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
      assert.equal(4, host.sendto(peer, "ping", host.getsockname(d)))
      assert.equal(1, host.select({d}, nil, nil, 5))
      local data, from = host.recvfrom(d, 100)
      assert.equal("ping", data)
      assert.equal(host.getsockname(peer).port, from.port)
    end)

    if base then
      it("the layer's duplicate goes down: the layer below duplicates its own socket", function()
        local c = H.memnet_pair(r)
        local trace = require "wsp.trace"
        trace.start()
        local d = from_info(assert(host.duplicate_socket(c, lwsp.process_id())))
        trace.stop()
        assert(d)
        local dups, sockets = 0, 0
        for _, rec in ipairs(trace.records()) do
          if rec.name == "WSPDuplicateSocket" then dups = dups + 1 end
          if rec.name == "WSPSocket" then sockets = sockets + 1 end
        end
        assert.equal(2, dups)        -- the layer's, and the one it makes on the layer below
        assert.equal(2, sockets)     -- the layer's WSPSocket, and its lower socket from the lower duplicate
      end)
    end

    it("another process: WSAEINVAL, nothing shared", function()
      local c, a = H.memnet_pair(r)
      local other = lwsp.process_id() + 1
      H.fails_with("WSAEINVAL", host.duplicate_socket(c, other))
      assert.equal(2, host.send(c, "ok"))
      assert.equal("ok", recv_some(a, 2))
    end)
  end)
end

describe("the native base's references", function()
  after_each(H.reset)

  -- (the process's open descriptors: POSIX's /proc)
  it("a reference never used gives its OS socket back at the last WSPCleanup #posix", function()
    local lfs = require "lfs"
    local function fds() local n = 0 for _ in lfs.dir("/proc/self/fd") do n = n + 1 end return n end
    local r = H.base()
    local before = fds()
    local c = H.memnet_pair(r)
    assert(host.duplicate_socket(c, lwsp.process_id()))
    host.cleanup()
    assert.equal(before, fds())
  end)
end)

describe("a Lua provider's duplicatesocket handler", function()
  after_each(H.reset)

  -- a handler that returns only its reference: the rest is the socket's own
  -- entry's, not the entry that started the provider
  it("that returns only dwProviderReserved gets the rest from the socket's own catalog entry", function()
    local r = H.provider([[
return {
  socket = function() return true end,
  duplicatesocket = function(s, pid) return {dwProviderReserved = 77} end,
}
]], {entries = {{af = wsp.AF_INET, type = wsp.SOCK_STREAM}, {af = wsp.AF_INET, type = wsp.SOCK_DGRAM}}})
    assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))     -- the provider starts on the TCP entry
    local u = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
    local info = assert(host.duplicate_socket(u, lwsp.process_id()))
    assert.equal(77, info.dwProviderReserved)
    assert.equal(r.udp, info.dwCatalogEntryId)
    assert.equal(wsp.SOCK_DGRAM, info.iSocketType)
  end)
end)

describe("host.socket with a protocol info (WSASocket's lpProtocolInfo)", function()
  local r
  before_each(function()
    r = H.provider("examples/memnet.lua", {entries = {{af = wsp.AF_INET, type = wsp.SOCK_STREAM}}})
  end)
  after_each(H.reset)

  it("goes to the entry the info names, FROM_PROTOCOL_INFO taken from it", function()
    local info
    for _, e in ipairs(host.catalog()) do if e.dwCatalogEntryId == r.tcp then info = e end end
    info.path = nil
    local s = assert(from_info(info))
    assert(host.bind(s, "127.0.0.1:0"))
    assert.equal(wsp.AF_INET, host.getsockname(s).family)
  end)

  it("an info naming no catalog entry fails with WSAEINVAL; one without an entry id is the caller's mistake", function()
    H.fails_with("WSAEINVAL", from_info{dwCatalogEntryId = 0x7ffffff0})
    assert.has_error(function() from_info{iAddressFamily = wsp.AF_INET} end)
    assert.has_error(function() from_info{dwCatalogEntryId = r.tcp, dwProviderReserved = 2^40} end)
    assert.has_error(function() from_info{dwCatalogEntryId = r.tcp, iSocketType = "stream"} end)
  end)

  it("is traced under WSADuplicateSocketW's page, the provider's call under WSPDuplicateSocket's", function()
    local c = H.memnet_pair(r)
    local trace = require "wsp.trace"
    trace.start()
    assert(host.duplicate_socket(c, lwsp.process_id()))
    trace.stop()
    local app, spi
    for _, rec in ipairs(trace.records()) do
      if rec.name == "duplicate_socket" then app = rec end
      if rec.name == "WSPDuplicateSocket" then spi = rec end
    end
    assert.matches("nf-winsock2-wsaduplicatesocketw", trace.decode(assert(app)).url, 1, true)
    assert.matches("lpwspduplicatesocket", trace.decode(assert(spi)).url, 1, true)
  end)
end)
