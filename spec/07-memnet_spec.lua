-- memnet, the base provider written in Lua, carrying data through the host.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

local function pair(r, af, addr)
  local l = assert(host.socket(af, wsp.SOCK_STREAM, 0, 0, r.tcp))
  assert(host.bind(l, addr))
  assert(host.listen(l, 8))
  local c = assert(host.socket(af, wsp.SOCK_STREAM, 0, 0, r.tcp))
  assert(host.connect(c, host.getsockname(l)))
  local a = assert(host.accept(l))
  return l, c, a
end

local function drain(s, want)
  local got = {}
  local n = 0
  while n < want do
    local data = host.recv(s, 7919)
    if not data or data == "" then break end
    got[#got + 1] = data
    n = n + #data
  end
  return table.concat(got)
end

describe("memnet streams", function()
  local r
  before_each(function()
    r = H.provider("examples/memnet.lua", {entries = {
      {af = wsp.AF_INET, type = wsp.SOCK_STREAM}, {af = wsp.AF_INET, type = wsp.SOCK_DGRAM},
      {af = wsp.AF_INET6, type = wsp.SOCK_STREAM}, {af = wsp.AF_INET6, type = wsp.SOCK_DGRAM}}})
  end)
  after_each(H.reset)

  it("carry data both ways, byte for byte", function()
    local _, c, a = pair(r, wsp.AF_INET, "127.0.0.1:0")
    local up, down = {}, {}
    for i = 1, 200 do
      up[i] = string.pack("<I4", i):rep(i % 17 + 1)
      down[i] = ("%d:"):format(i * 7919)
    end
    for i = 1, 200 do
      assert.equal(#up[i], host.send(c, up[i]))
      assert.equal(#down[i], host.send(a, down[i]))
    end
    local u, d = table.concat(up), table.concat(down)
    assert.equal(u, drain(a, #u))
    assert.equal(d, drain(c, #d))
    assert.equal("", host.ioctl(a, wsp.FIONBIO, 1))
    H.fails_with("WSAEWOULDBLOCK", host.recv(a, 10))
  end)

  it("carry a megabyte in both directions", function()
    local _, c, a = pair(r, wsp.AF_INET, "127.0.0.1:0")
    local chunk = {}
    for i = 0, 65535 do chunk[#chunk + 1] = string.char(i % 251) end
    local block = table.concat(chunk)
    for _ = 1, 16 do assert.equal(#block, host.send(c, block)) end
    for _ = 1, 16 do assert.equal(#block, host.send(a, block)) end
    local big = block:rep(16)
    assert.equal(big, drain(a, #big))
    assert.equal(big, drain(c, #big))
  end)

  it("report names at both ends", function()
    local l, c, a = pair(r, wsp.AF_INET, "127.0.0.1:7001")
    assert.equal(7001, host.getsockname(l).port)
    assert.same(host.getsockname(c), host.getpeername(a))
    assert.same(host.getsockname(a), host.getpeername(c))
    H.fails_with("WSAENOTCONN", host.getpeername(l))
  end)

  it("work over IPv6", function()
    local _, c, a = pair(r, wsp.AF_INET6, "[::1]:0")
    assert.equal(wsp.AF_INET6, host.getpeername(a).family)
    assert.equal(6, host.send(c, "hello6"))
    assert.equal("hello6", (host.recv(a, 100)))
  end)

  it("peek without consuming and count queued bytes", function()
    local _, c, a = pair(r, wsp.AF_INET, "127.0.0.1:0")
    host.send(c, "abcdef")
    assert.equal(6, wsp.int(host.ioctl(a, wsp.FIONREAD)))
    assert.equal("abc", (host.recv(a, 3, wsp.MSG_PEEK)))
    assert.equal("abcdef", (host.recv(a, 100)))
    assert.equal(0, wsp.int(host.ioctl(a, wsp.FIONREAD)))
  end)

  it("end with EOF after the peer closes or shuts down sending", function()
    local _, c, a = pair(r, wsp.AF_INET, "127.0.0.1:0")
    host.send(c, "last words")
    assert.is_true(host.shutdown(c, wsp.SD_SEND))
    H.fails_with("WSAESHUTDOWN", host.send(c, "more"))
    assert.equal("last words", (host.recv(a, 100)))
    assert.equal("", (host.recv(a, 100)))
    assert.is_true(host.close(a))
    assert.equal("", (host.recv(c, 10)))
    H.fails_with("WSAESHUTDOWN", host.send(c, "anyone?"))
  end)

  it("refuse connections nobody listens for, and addresses in use", function()
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    H.fails_with("WSAECONNREFUSED", host.connect(c, "127.0.0.1:9"))
    local l = pair(r, wsp.AF_INET, "127.0.0.1:7002")
    local other = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    H.fails_with("WSAEADDRINUSE", host.bind(other, "127.0.0.1:7002"))
    assert.is_true(host.setsockopt(other, wsp.SOL_SOCKET, wsp.SO_REUSEADDR, true))
    assert.is_true(host.bind(other, "127.0.0.1:7002"))
    assert.is_true(host.close(l))
  end)

  it("would block on accept and recv when nothing is there, in non-blocking mode", function()
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 1))
    assert(host.ioctl(l, wsp.FIONBIO, 1))
    H.fails_with("WSAEWOULDBLOCK", host.accept(l))
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(host.connect(c, host.getsockname(l)))
    local c2 = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    H.fails_with("WSAECONNREFUSED", host.connect(c2, host.getsockname(l)))  -- backlog of 1 is full
    local a = assert(host.accept(l))
    assert(host.ioctl(a, wsp.FIONBIO, 1))
    H.fails_with("WSAEWOULDBLOCK", host.recv(a, 1))
    H.fails_with("WSAENOTCONN", host.send(c2, "x"))
  end)

  it("let the application's condition function reject a connection", function()
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 2))
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(host.connect(c, host.getsockname(l)))
    H.fails_with("WSAECONNREFUSED", host.accept(l, nil, wsp.CF_REJECT))
    assert.same(host.getsockname(c), (host.last_condition()))
    H.fails_with("WSAECONNRESET", host.send(c, "x"))
  end)

  it("keep options per socket", function()
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert.equal(wsp.SOCK_STREAM, wsp.int(host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_TYPE)))
    assert.is_true(host.setsockopt(s, wsp.SOL_SOCKET, wsp.SO_RCVBUF, 1234))
    assert.equal(1234, wsp.int(host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_RCVBUF)))
    H.fails_with("WSAENOPROTOOPT", host.setsockopt(s, wsp.SOL_SOCKET, 0x4444, 1))
    local info = host.getsockopt(s, wsp.SOL_SOCKET, wsp.SO_PROTOCOL_INFOW, 628)
    assert.equal(r.tcp, string.unpack("<I4", info, 37))
  end)

  it("convert addresses to and from text through the provider", function()
    assert.equal("[::1]:80", host.address_to_string("[::1]:80", r.ids[3]))
    assert.same({family = 2, address = "10.1.2.3", port = 4}, host.string_to_address("10.1.2.3:4", wsp.AF_INET, r.tcp))
    H.fails_with("WSAEINVAL", host.string_to_address("10.1.2", wsp.AF_INET, r.tcp))
  end)
end)

describe("memnet datagrams", function()
  local r
  before_each(function()
    r = H.provider("examples/memnet.lua", {entries = {
      {af = wsp.AF_INET, type = wsp.SOCK_STREAM}, {af = wsp.AF_INET, type = wsp.SOCK_DGRAM}}})
  end)
  after_each(H.reset)

  it("keep message boundaries and tell the sender", function()
    local a = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
    local b = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
    assert(host.bind(a, "127.0.0.1:5353"))
    assert.equal(3, host.sendto(b, "one", "127.0.0.1:5353"))
    assert.equal(3, host.sendto(b, "two", "127.0.0.1:5353"))
    local d, from = host.recvfrom(a, 100)
    assert.equal("one", d)
    assert.same(host.getsockname(b), from)
    assert.equal("two", (host.recvfrom(a, 100)))
    assert(host.ioctl(a, wsp.FIONBIO, 1))
    H.fails_with("WSAEWOULDBLOCK", host.recvfrom(a, 100))
    assert.equal(5, host.sendto(a, "reply", from))
    assert.equal("reply", (host.recv(b, 100)))
  end)

  it("cut a datagram larger than the buffer with WSAEMSGSIZE", function()
    local a = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
    local b = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
    assert(host.bind(a, "127.0.0.1:0"))
    host.sendto(b, "0123456789", host.getsockname(a))
    local mark = H.mark()
    local ok, msg, code, partial = host.recvfrom(a, 4)
    H.fails_with("WSAEMSGSIZE", ok, msg, code)
    assert.equal("0123", partial)
    assert.is_nil(H.find_log(mark, "the rest is lost", true)) -- expected for datagrams: no complaint
  end)

  it("send to a connected peer with send and drop what nobody receives", function()
    local a = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
    local b = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
    assert(host.bind(a, "127.0.0.1:0"))
    assert(host.connect(b, host.getsockname(a)))
    assert.equal(4, host.send(b, "ping"))
    assert.equal("ping", (host.recv(a, 10)))
    assert.equal(4, host.sendto(b, "void", "127.0.0.1:1"))
    H.fails_with("WSAEDESTADDRREQ", host.sendto(a, "x", nil))
  end)
end)
