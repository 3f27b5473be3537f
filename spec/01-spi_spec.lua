-- The SPI's values and the conversions every entry relies on.
local H = require "helpers"
local lwsp, wsp = H.lwsp, H.wsp

describe("SPI constants", function()
  it("carry Windows values on every platform", function()
    assert.equal(23, wsp.AF_INET6)
    assert.equal(2, wsp.AF_INET)
    assert.equal(0xffff, wsp.SOL_SOCKET)
    assert.equal(0x8004667E, wsp.FIONBIO)
    assert.equal(0x4004667F, wsp.FIONREAD)
    assert.equal(0xC8000006, wsp.SIO_GET_EXTENSION_FUNCTION_POINTER)
    assert.equal(10035, wsp.WSAEWOULDBLOCK)
    assert.equal(10106, wsp.WSAEPROVIDERFAILEDINIT)
    assert.equal(997, wsp.WSA_IO_PENDING)
    assert.equal(0x103, wsp.WSS_OPERATION_IN_PROGRESS)
    assert.equal(0x20000, wsp.XP1_IFS_HANDLES)
    assert.equal(1023, wsp.FD_ALL_EVENTS)
  end)

  it("name error codes both ways", function()
    assert.equal("WSAECONNRESET", wsp.errname(10054))
    assert.is_nil(wsp.errname(424242))
    local ok, msg, code = lwsp.error(wsp.WSAENOTSOCK)
    assert.is_nil(ok)
    assert.equal("WSAENOTSOCK: not a socket", msg)
    assert.equal(10038, code)
  end)

  it("map all 30 handler names to their SPI functions", function()
    local n = 0
    for name, spi in pairs(wsp.handler_names) do
      n = n + 1
      assert.equal(name, spi:sub(4):lower())
    end
    assert.equal(30, n)
    assert.equal("WSPSendTo", wsp.handler_names.sendto)
    assert.equal("WSPGetQOSByName", wsp.handler_names.getqosbyname)
  end)
end)

describe("addresses", function()
  it("parse and format IPv4 with and without ports", function()
    local a = wsp.parse_address("192.0.2.33:8080")
    assert.same({family = wsp.AF_INET, address = "192.0.2.33", port = 8080}, a)
    assert.equal("192.0.2.33:8080", wsp.format_address(a))
    assert.equal("10.0.0.1", wsp.format_address{family = wsp.AF_INET, address = "10.0.0.1", port = 0})
  end)

  it("parse and format IPv6, compressed, bracketed, scoped and mapped", function()
    local a = wsp.parse_address("[2001:db8:0:0:0:0:0:1]:443")
    assert.equal(wsp.AF_INET6, a.family)
    assert.equal("2001:db8::1", a.address)
    assert.equal(443, a.port)
    assert.equal("::1", wsp.parse_address("::1").address)
    assert.equal("::", wsp.parse_address("::").address)
    assert.equal(7, wsp.parse_address("[fe80::1%7]:1").scope_id)
    assert.equal("::ffff:192.0.2.1", wsp.parse_address("::ffff:192.0.2.1").address)
    assert.equal("[2001:db8::1]:443", wsp.format_address(a))
  end)

  it("refuse malformed text", function()
    for _, bad in ipairs{"256.1.1.1", "1.2.3", "1.2.3.4:70000", "1::2::3", ":1", "[::1", "x", "1.2.3.4:", ""} do
      assert.is_nil(wsp.parse_address(bad), bad)
    end
    assert.is_nil(wsp.parse_address("::1", wsp.AF_INET))
    assert.is_nil(wsp.parse_address("1.2.3.4", wsp.AF_INET6))
  end)

  it("builds address tables with wsp.addr", function()
    assert.same({family = 2, address = "127.0.0.1", port = 9}, wsp.addr("127.0.0.1", 9))
  end)
end)

describe("GUIDs and the registry", function()
  it("generates distinct version-4 GUIDs", function()
    local a, b = lwsp.guid(), lwsp.guid()
    assert.not_equal(a, b)
    assert.truthy(a:match("^{%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89AB]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x}$"))
  end)

  it("maps a GUID to an absolute script path and refuses relative ones", function()
    local g = lwsp.guid()
    local abs = H.windows and "C:\\opt\\x\\provider.lua" or "/opt/x/provider.lua"
    assert.is_true(lwsp.registry.set(g, abs))
    assert.equal(abs, lwsp.registry.get(g))
    assert.has_error(function() lwsp.registry.set(g, "relative.lua") end)
    assert.is_true(lwsp.registry.remove(g))
    local none, msg = lwsp.registry.get(g)
    assert.is_nil(none)
    assert.truthy(msg:find("no script registered", 1, true))
    assert.equal(H.windows and "HKEY_LOCAL_MACHINE\\SOFTWARE\\lwsp\\Providers" or H.tmp .. "/registry",
      lwsp.registry.where())
  end)
end)
