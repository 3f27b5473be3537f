-- Tracing: every crossing between the application, the host, the provider
-- layers and the upcalls, recorded in order.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host
local trace = require "wsp.trace"

describe("the trace", function()
  after_each(function() trace.stop() H.reset() end)

  local function brief(records)
    local out = {}
    for _, r in ipairs(records) do
      out[#out + 1] = ("%s %s>%s %s %s"):format(r.kind, r.from, r.to, r.name, r.errname or "ok")
    end
    return out
  end

  it("records a scripted scenario exactly: calls, returns, upcalls, in order", function()
    local r = H.provider("examples/memnet.lua")
    local g = r.guid
    trace.start()
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(host.bind(s, "127.0.0.1:0"))
    H.fails_with("WSAEADDRINUSE", (function()
      local t = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
      return host.bind(t, host.getsockname(s))
    end)())
    assert(host.close(s))
    assert.equal(27, trace.stop())
    local got = brief(trace.records())
    assert.same({
      "call application>host socket ok",
      "call host>" .. g .. " WSPSocket ok",
      "upcall " .. g .. ">host WPUCreateSocketHandle ok",
      "return " .. g .. ">host WSPSocket ok",
      "return host>application socket ok",
      "call application>host bind ok",
      "call host>" .. g .. " WSPBind ok",
      "return " .. g .. ">host WSPBind ok",
      "return host>application bind ok",
      "call application>host socket ok",
      "call host>" .. g .. " WSPSocket ok",
      "upcall " .. g .. ">host WPUCreateSocketHandle ok",
      "return " .. g .. ">host WSPSocket ok",
      "return host>application socket ok",
      "call application>host getsockname ok",
      "call host>" .. g .. " WSPGetSockName ok",
      "return " .. g .. ">host WSPGetSockName ok",
      "return host>application getsockname ok",
      "call application>host bind ok",
      "call host>" .. g .. " WSPBind ok",
      "return " .. g .. ">host WSPBind WSAEADDRINUSE",
      "return host>application bind WSAEADDRINUSE",
      "call application>host close ok",
      "call host>" .. g .. " WSPCloseSocket ok",
      "upcall " .. g .. ">host WPUCloseSocketHandle ok",
      "return " .. g .. ">host WSPCloseSocket ok",
      "return host>application close ok",
    }, got)
  end)

  it("follows a call down through two layers and shows completions", function()
    local native = host.install_native()
    local inner = host.install_layered{script = H.root .. "/examples/passthrough.lua", over = native, name = "inner"}
    local outer = host.install_layered{script = H.root .. "/examples/passthrough.lua", over = inner, name = "outer"}
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 2))
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, outer.tcp))
    assert(host.connect(c, host.getsockname(l)))
    local a = assert(host.accept(l))
    local file = H.tmp .. "/trace.jsonl"
    trace.start(file)
    assert(host.getsockopt(c, wsp.SOL_SOCKET, wsp.SO_TYPE))
    local ov = host.overlapped(host.create_event())
    H.fails_with("WSA_IO_PENDING", host.wsarecv(c, 10, ov))
    host.send(a, "hi")
    assert.equal(1, host.wait({ov.hEvent}, false, 5000))
    trace.stop()
    local recs = trace.records()
    local chain = {}
    for _, r in ipairs(recs) do
      if r.kind == "call" and r.name == "WSPGetSockOpt" then chain[#chain + 1] = r.to end
    end
    assert.same({outer.guid, inner.guid, native.guid}, chain)
    local depths = {}
    for _, r in ipairs(recs) do if r.kind == "call" and r.name == "WSPGetSockOpt" then depths[#depths + 1] = r.depth end end
    assert.same({1, 2, 3}, depths)
    local completed = false
    for _, r in ipairs(recs) do
      if r.kind == "complete" and r.name == "event signalled" and r.socket == c then completed = true end
    end
    assert.is_true(completed)
    local text = trace.text(recs)
    assert.truthy(text:find("host -> provider " .. outer.guid:sub(1, 9) .. "}: WSPGetSockOpt s" .. c, 1, true), text)
    local lines = 0
    for line in io.lines(file) do
      lines = lines + 1
      assert.truthy(line:match('^{"seq":%d+,"t":[%d.]+,"thread":%d+,"kind":"%a+"'), line)
    end
    assert.equal(#recs, lines)
  end)

  it("costs nothing it records when off", function()
    local r = H.provider("examples/memnet.lua")
    trace.start()
    trace.stop()
    assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert.same({}, trace.records())
  end)
end)
