-- The layered examples over the native base provider, on real loopback
-- sockets: passthrough, meter, firewall, xor, socks5.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host
local util = require "wsp.util"

local native
local function over(script, extra_files, below)
  local dir = H.tmp .. "/" .. lwsp.guid():sub(2, 9)
  H.mkdir(dir)
  local src = assert(io.open(H.root .. "/examples/" .. script)):read("a")
  assert(io.open(dir .. "/" .. script, "w")):write(src):close()
  for name, text in pairs(extra_files or {}) do assert(io.open(dir .. "/" .. name, "w")):write(text):close() end
  return H.layered{script = dir .. "/" .. script, over = below or native, name = script}
end

local function server(af)
  local l = assert(host.socket(af or wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
  assert(host.bind(l, "127.0.0.1:0"))
  assert(host.listen(l, 8))
  return l
end

local function connect(catalog, addr)
  local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, catalog))
  local ok, err, code = host.connect(c, addr)
  if not ok then host.close(c); return nil, err, code end
  return c
end

describe("layered examples", function()
  before_each(function() native = H.base() end)
  after_each(H.reset)

  it("meter reports bytes and calls per connection on close", function()
    local m = over("meter.lua")
    local l = server()
    local c = assert(connect(m.tcp, host.getsockname(l)))
    local a = assert(host.accept(l))
    host.send(c, "12345")
    host.send(c, "678")
    host.send(a, "abcdefghij")
    assert.equal("abcdefghij", (host.recv(c, 100)))
    local mark = H.mark()
    host.close(c)
    local line = H.find_log(mark, "^lwsp%[meter%]")
    assert.truthy(line)
    assert.truthy(line:find("sent 8 B in 2 call(s), received 10 B in 1 call(s)", 1, true), line)
    assert.truthy(line:find(wsp.format_address(host.getsockname(l)), 1, true), line)
  end)

  it("firewall refuses what its rules deny, logs it, and lets the rest through", function()
    local l = server()
    local port = host.getsockname(l).port
    local f = over("firewall.lua", {["firewall.rules"] = ("deny 127.0.0.1 %d\ndeny * 9 # discard\n"):format(port)})
    local mark = H.mark()
    H.fails_with("WSAECONNREFUSED", connect(f.tcp, host.getsockname(l)))
    assert.truthy(H.find_log(mark, ("denied 127.0.0.1:%d (rule: deny 127.0.0.1 %d)"):format(port, port), true))
    local other = server()
    local c = assert(connect(f.tcp, host.getsockname(other)))
    local a = assert(host.accept(other))
    assert.equal(2, host.send(c, "ok"))
    assert.equal("ok", (host.recv(a, 10)))
    local u = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, f.udp))
    H.fails_with("WSAEACCES", host.sendto(u, "x", "127.0.0.1:9"))
  end)

  it("xor changes the bytes on the wire, and a peer with the same layer reads them restored", function()
    local x = over("xor.lua")
    local l = server()
    local c = assert(connect(x.tcp, host.getsockname(l)))
    local a = assert(host.accept(l))           -- a plain native socket: sees the wire
    host.send(c, "attack at dawn")
    local wire = host.recv(a, 100)
    assert.equal(14, #wire)
    assert.not_equal("attack at dawn", wire)
    assert.equal(("attack at dawn"):byte(1) ~ 0x5A, wire:byte(1))
    -- both ends through xor
    local lx = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, x.tcp))
    assert(host.bind(lx, "127.0.0.1:0"))
    assert(host.listen(lx, 2))
    local c2 = assert(connect(x.tcp, host.getsockname(lx)))
    local a2 = assert(host.accept(lx))
    local msg = ("all the bytes: " .. string.char(table.unpack((function() local t = {} for i = 0, 255 do t[#t + 1] = i end return t end)())))
    local job = host.spawn("send", c2, msg)
    local got = {}
    while #table.concat(got) < #msg do got[#got + 1] = assert(host.recv(a2, 1000)) end
    assert.equal(msg, table.concat(got))
    assert.equal(#msg, job:join(5000))
  end)

  it("socks5 sends connects through a real SOCKS5 proxy, transparently #subprocess", function()
    local proxy = util.spawn("python3 -u " .. H.root .. "/spec/tools/socks5_server.py")
    local ok, err = pcall(function()
      local port = assert(tonumber(proxy.first))
      local s = over("socks5.lua", {["socks5.conf"] = "127.0.0.1 " .. port .. "\n"})
      local l = server()
      local target = host.getsockname(l)
      local c = assert(connect(s.tcp, target))
      local a = assert(host.accept(l))
      assert.same(target, host.getpeername(c))      -- the application sees its target
      local seen_from = host.getpeername(a)
      assert.not_equal(host.getsockname(c).port, seen_from.port) -- the server sees the proxy
      assert.equal(("CONNECT %s"):format(wsp.format_address(target)), proxy.out:read("l"))
      host.send(c, "through the proxy")
      assert.equal("through the proxy", (host.recv(a, 100)))
      host.send(a, "and back")
      assert.equal("and back", (host.recv(c, 100)))
    end)
    proxy.stop()
    assert(ok, err)
  end)

  it("stack: meter over xor over native still carries data", function()
    local x = over("xor.lua")
    local m = over("meter.lua", nil, x)
    local lx = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, x.tcp))
    assert(host.bind(lx, "127.0.0.1:0"))
    assert(host.listen(lx, 2))
    local c = assert(connect(m.tcp, host.getsockname(lx)))
    local a = assert(host.accept(lx))
    host.send(c, "stacked")
    assert.equal("stacked", (host.recv(a, 100)))
  end)
end)
