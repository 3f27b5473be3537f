-- The examples and the README's provider, run as a user would.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

describe("examples/upper.lua (the README's provider)", function()
  after_each(H.reset)

  it("shouts datagrams and refuses streams", function()
    local r = H.provider("examples/upper.lua", {entries = {
      {af = wsp.AF_INET, type = wsp.SOCK_DGRAM}, {af = wsp.AF_INET, type = wsp.SOCK_STREAM}}})
    local a = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
    local b = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
    assert(host.bind(a, "127.0.0.1:5000"))
    assert.equal(5, host.sendto(b, "hello", "127.0.0.1:5000"))
    local data, from = host.recvfrom(a, 100)
    assert.equal("HELLO", data)
    assert.same(host.getsockname(b), from)
    H.fails_with("WSAESOCKTNOSUPPORT", host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  end)
end)

describe("examples/demo.lua (make demo)", function()
  it("prints each application call with the WSP calls the provider handled #subprocess", function()
    local cmd = ("cd '%s' && LWSP_DEMO_DIR='%s/demo' LUA_PATH='%s/lua/?.lua;%s/lua/?/init.lua;;' "
      .. "LUA_CPATH='%s;;' lua5.4 examples/demo.lua 2>&1")
      :format(H.root, H.tmp, H.root, H.root, lwsp.path():gsub("lwsp%.so$", "?.so"))
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    assert.is_true(p:close(), out)
    assert.truthy(out:find('recv(server, 64)                             -> "hello, provider", 0', 1, true), out)
    assert.truthy(out:find('provider: WSPSend%(s%d+, "hello, application", 0%) %-> 18'), out)
    assert.truthy(out:find("connect(other, 127.0.0.1:9)                  -> error WSAECONNREFUSED", 1, true), out)
    assert.truthy(out:find("provider: WSPRecvFrom%(s%d+, 64, 0%) %-> \"datagram\", 127%.0%.0%.1:%d+, 0"), out)
    assert.truthy(out:find('recv(server, 64) after the client closed     -> "", 0', 1, true), out)
  end)
end)
