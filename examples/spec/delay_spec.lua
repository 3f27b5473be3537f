-- A spec of one's own: examples/delay.lua tested with wsp.test.
-- Run it with `bin/lwsp-spec examples/spec` (or `lwsp-spec` after luarocks make).
local T = require("wsp.test").new()
local host, wsp = T.host, T.wsp
-- delay.lua is in the folder above this spec's spec/ folder
local src = debug.getinfo(1, "S").source:sub(2)
local here = src:match("^(.*)[/\\]spec[/\\][^/\\]*$") or (src:match("^spec[/\\]") and ".") or "examples"
local DELAY = here .. "/delay.lua"

describe("delay.lua", function()
  after_each(function() T:done() end)

  it("holds a blocking connect back, then carries the data and counts it", function()
    local top = T:chain{DELAY, base = "memnet", config = {{delay = 0.01}}}
    local c, a = T:pair(top)
    assert.truthy(T:find_log("holding connect to 127.0.0.1:"))
    assert.equal(5, host.send(c, "hello"))
    assert.equal("hello", (host.recv(a, 100)))
    assert(host.close(c))
    assert(host.close(a))
    assert.truthy(T:find_log("sent 5 B, received 0 B"))
  end)

  it("answers a non-blocking connect with WSAEWOULDBLOCK and reports FD_CONNECT later", function()
    local top = T:chain{DELAY, base = "native", config = {{delay = 0.01}}}
    local l = T:check(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, top.base.tcp))
    T:check(host.bind(l, "127.0.0.1:0"))
    T:check(host.listen(l, 4))
    local c = T:check(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, top.tcp))
    local ev = host.create_event()
    T:check(host.event_select(c, ev, wsp.FD_CONNECT))
    local ok, _, code = host.connect(c, host.getsockname(l))
    assert.is_nil(ok)
    assert.equal(wsp.WSAEWOULDBLOCK, code)
    assert.equal(1, host.wait({ev}, false, 5000))
    local mask, errors = T:check(host.enum_network_events(c, ev))
    assert.equal(wsp.FD_CONNECT, mask & wsp.FD_CONNECT)
    assert.equal(0, errors[wsp.FD_CONNECT])
    local a = T:check(host.accept(l))
    for _, s in ipairs{c, a, l} do assert(host.close(s)) end
    host.close_event(ev)
  end)
end)
