-- What a layer does when its script cannot run, as its install chose:
-- on_failure "fail" (WSPStartup fails with WSAEPROVIDERFAILEDINIT) or
-- "passthrough" (wsp.layered runs in the script's place: every call goes to
-- the layer below, with a log line and a trace record).  A broken prototype
-- must not cut a machine off the network.  Real loopback TCP through the
-- native base provider.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host
local trace = require "wsp.trace"
local catalog = require "wsp.catalog"

local native
local function layer(src, on_failure, extra)
  local dir = H.tmp .. "/" .. lwsp.guid():sub(2, 9)
  H.mkdir(dir)
  local script = dir .. "/layer.lua"
  if src then assert(io.open(script, "w")):write(src):close() end
  for name, text in pairs(extra or {}) do
    H.mkdir((dir .. "/" .. name):match("^(.*)[/\\]"))
    assert(io.open(dir .. "/" .. name, "w")):write(text):close()
  end
  return H.layered{script = script, over = native, name = "broken", on_failure = on_failure}
end

-- a connection through the layer's chain to a native listener, data both ways
local function carries(catalog)
  local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
  assert(host.bind(l, "127.0.0.1:0"))
  assert(host.listen(l, 4))
  local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, catalog))
  assert(host.connect(c, host.getsockname(l)))
  local a = assert(host.accept(l))
  assert.equal(5, host.send(c, "hello"))
  assert.equal("hello", host.recv(a, 100))
  assert.equal(3, host.send(a, "bye"))
  assert.equal("bye", host.recv(c, 100))
  host.close(c) host.close(a) host.close(l)
end

local fallback_line = "the provider script could not run; its install says on-failure passthrough"

describe("on_failure", function()
  before_each(function() native = H.base() end)
  after_each(function() trace.stop() H.reset() end)

  describe("fail (the default)", function()
    it("a script that does not load: sockets through the layer fail with WSAEPROVIDERFAILEDINIT", function()
      local r = layer("return {", nil)
      assert.equal("fail", lwsp.registry.on_failure(r.guid))
      local mark = H.mark()
      H.fails_with("WSAEPROVIDERFAILEDINIT", host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
      assert.falsy(H.find_log(mark, fallback_line, true))
    end)
  end)

  describe("passthrough", function()
    it("a script with a syntax error: every call goes to the layer below, with a log line and a trace record", function()
      local r = layer("return {", "passthrough")
      assert.equal("passthrough", lwsp.registry.on_failure(r.guid))
      local mark = H.mark()
      trace.start()
      carries(r.tcp)
      trace.stop()
      assert.truthy(H.find_log(mark, "layer.lua", true))            -- why the script failed
      assert.truthy(H.find_log(mark, fallback_line, true))
      local found
      for _, rec in ipairs(trace.records()) do
        if rec.kind == "fallback" and rec.name == "on-failure passthrough" and rec.from == r.guid then found = rec end
      end
      assert.truthy(found, "no trace record of the passthrough")
      assert.truthy(trace.text(trace.records()):find("* on-failure passthrough", 1, true))
    end)

    it("a script file that is gone", function()
      local r = layer(nil, "passthrough")
      local mark = H.mark()
      carries(r.tcp)
      assert.truthy(H.find_log(mark, fallback_line, true))
    end)

    it("a script whose top level raises, or returns no table", function()
      carries(layer("error('prototype broke')", "passthrough").tcp)
      carries(layer("return 42", "passthrough").tcp)
    end)

    it("a script whose state the budget condemned (its top level ran away)", function()
      local r = layer("while true do end", "passthrough")
      local mark = H.mark()
      carries(r.tcp)
      assert.truthy(H.find_log(mark, "instruction budget exceeded", true))
      assert.truthy(H.find_log(mark, fallback_line, true))
    end)

    it("a state lost at the last WSPCleanup whose script no longer loads when it starts again", function()
      local r = layer("return require('wsp.layered').new()", "passthrough")
      local mark = H.mark()
      carries(r.tcp)
      assert.falsy(H.find_log(mark, fallback_line, true))
      host.cleanup()                                   -- the state is closed with the last WSPCleanup
      assert(io.open(lwsp.registry.get(r.guid), "w")):write("return {"):close()
      carries(r.tcp)
      assert.truthy(H.find_log(mark, fallback_line, true))
    end)

    it("does not read modules from the failed script's folder", function()
      local decoy = "error('read from the script folder')"
      local r = layer("return require('missing_module')", "passthrough",
        {["wsp/layered.lua"] = decoy, ["wsp/init.lua"] = decoy, ["wsp.lua"] = decoy})
      carries(r.tcp)
    end)

    it("a script that loads is the one that runs", function()
      local r = layer("local P = require('wsp.layered').new()\n"
        .. "local send = P.send\n"
        .. "function P.send(s, data, ...) return send(s, data:upper(), ...) end\n"
        .. "P.views = false\nreturn P\n", "passthrough")
      local mark = H.mark()
      local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
      assert(host.bind(l, "127.0.0.1:0"))
      assert(host.listen(l, 4))
      local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
      assert(host.connect(c, host.getsockname(l)))
      local a = assert(host.accept(l))
      host.send(c, "hello")
      assert.equal("HELLO", host.recv(a, 100))
      host.close(c) host.close(a) host.close(l)
      assert.falsy(H.find_log(mark, fallback_line, true))
    end)
  end)

  describe("the installer (wsp.catalog, lwsp-catalog)", function()
    local function main(argv, b)
      local out = {}
      local status = catalog.main(argv, function(l) out[#out + 1] = l end, b)
      return status, table.concat(out, "\n")
    end

    it("install --on-failure passthrough: list shows it, and a script broken later passes calls down", function()
      local b = catalog.host()
      local script = H.script("return require('wsp.layered').new()")
      local r = assert(catalog.install{script = script, name = "onfail", over = {"tcp"}, backend = b,
        on_failure = "passthrough"})
      finally(function() host.cleanup() catalog.remove(r.guid, b) end)
      local status, text = main({"list"}, b)
      assert.equal(0, status, text)
      assert.truthy(text:find(r.guid .. "  lwsp onfail  [" .. r.layer .. "]  " .. script .. "  on-failure passthrough", 1, true), text)
      carries(r.chains.tcp)
      host.cleanup()
      assert(io.open(script, "w")):write("return {"):close()
      local mark = H.mark()
      carries(r.chains.tcp)
      assert.truthy(H.find_log(mark, fallback_line, true))
    end)

    it("install without the option: on-failure fail, listed so", function()
      local b = catalog.host()
      local status, text = main({"install", H.script("return require('wsp.layered').new()"), "--name", "plain",
        "--over", "tcp"}, b)
      assert.equal(0, status, text)
      local guid = text:match("installed (%b{})")
      finally(function() host.cleanup() catalog.remove(guid, b) end)
      assert.equal("fail", lwsp.registry.on_failure(guid))
      status, text = main({"list"}, b)
      local line = text:match("[^\n]*" .. guid:gsub("%p", "%%%0") .. "  lwsp plain  [^\n]*")
      assert.truthy(line and line:sub(-17) == "  on-failure fail", text)
    end)

    it("refuses another choice, and installs nothing", function()
      local b = catalog.host()
      local before = #host.catalog()
      local status, text = main({"install", H.script("return {}"), "--on-failure", "ignore"}, b)
      assert.equal(1, status)
      assert.truthy(text:find('on-failure must be fail or passthrough, not "ignore"', 1, true), text)
      assert.equal(before, #host.catalog())
    end)
  end)

  describe("the registry", function()
    it("keeps the choice beside the script's entry, and removing the entry removes it", function()
      local r = layer("return {", "passthrough")
      assert.equal("passthrough", lwsp.registry.on_failure(r.guid))
      assert(lwsp.registry.set_on_failure(r.guid, "fail"))
      assert.equal("fail", lwsp.registry.on_failure(r.guid))
      assert(lwsp.registry.set_on_failure(r.guid, "passthrough"))
      assert.is_nil(lwsp.registry.list()[r.guid .. ".on-failure"])   -- not listed as a provider
      assert(lwsp.registry.remove(r.guid))
      assert.equal("fail", lwsp.registry.on_failure(r.guid))
    end)

    it("refuses another choice", function()
      assert.has_error(function() lwsp.registry.set_on_failure(lwsp.guid(), "ignore") end)
      assert.has_error(function() host.install_layered{script = "/x.lua", over = native, on_failure = "ignore"} end)
    end)
  end)
end)
