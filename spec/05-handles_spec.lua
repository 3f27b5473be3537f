-- Socket handles: non-IFS handles from WPUCreateSocketHandle with contexts
-- that map back to the Lua socket, IFS handles through WPUModifyIFSHandle.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host

local function ctx_parts(ctx)
  return ctx & 0xffffffff, ctx >> 32  -- index + 1, generation
end

describe("non-IFS socket handles", function()
  local r
  before_each(function() r = H.provider("examples/memnet.lua") end)
  after_each(H.reset)

  it("come from WPUCreateSocketHandle, with a context naming the socket's slot and generation", function()
    local a = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local b = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local ia, ib = host.socket_info(a), host.socket_info(b)
    assert.is_false(ia.ifs)
    assert.equal(r.tcp, ia.catalog)
    local slot_a, gen_a = ctx_parts(ia.context)
    local slot_b, gen_b = ctx_parts(ib.context)
    assert.equal(slot_a + 1, slot_b)
    assert.not_equal(gen_a, gen_b)
    assert.not_equal(0, gen_a)
  end)

  it("are closed with WPUCloseSocketHandle, and a reused slot gets a new generation", function()
    local a = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local slot, gen = ctx_parts(host.socket_info(a).context)
    assert.is_true(host.close(a))
    H.fails_with("WSAENOTSOCK", host.socket_info(a))
    H.fails_with("WSAENOTSOCK", host.send(a, "x"))
    local b = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local slot2, gen2 = ctx_parts(host.socket_info(b).context)
    assert.equal(slot, slot2)
    assert.not_equal(gen, gen2)
    assert.not_equal(a, b)
  end)

  it("give accepted sockets their own handles and contexts", function()
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 4))
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(host.connect(c, host.getsockname(l)))
    local a = assert(host.accept(l))
    local seen = {}
    for _, h in ipairs{l, c, a} do
      local ctx = host.socket_info(h).context
      assert.is_nil(seen[ctx])
      seen[ctx] = true
    end
  end)

  it("scale to thousands of sockets, each found again by its context", function()
    local hs = {}
    for i = 1, 3000 do
      hs[i] = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
      assert(host.bind(hs[i], {family = wsp.AF_INET, address = "127.0.0.1", port = 20000 + i}))
    end
    for i = 1, 3000, 7 do
      assert.equal(20000 + i, host.getsockname(hs[i]).port)
    end
    for i = 1, 3000 do assert(host.close(hs[i])) end
  end)

  it("are all released by the last WSPCleanup", function()
    local hs = {}
    for i = 1, 10 do hs[i] = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp)) end
    host.cleanup()
    for i = 1, 10 do H.fails_with("WSAENOTSOCK", host.socket_info(hs[i])) end
  end)
end)

describe("IFS socket handles", function()
  after_each(H.reset)

  it("are proposed by the provider and registered with WPUModifyIFSHandle", function()
    local r = H.provider([[
local wsp = require "wsp"
local n = 0x50000
return {
  ifs = true,
  socket = function(s) n = n + 4; s.mine = n; return n end,
  getsockname = function(s) return {family = 2, address = "10.9.8.7", port = s.mine & 0xffff} end,
  accept = function(s, ns) n = n + 4; return {family = 2, address = "10.0.0.1", port = 1}, n end,
}
]])
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert.equal(0x50004, s)
    assert.is_true(host.socket_info(s).ifs)
    assert.equal(0x0004, host.getsockname(s).port)
    local a = assert(host.accept(s))
    assert.equal(0x50008, a)
    assert.is_true(host.socket_info(a).ifs)
    assert.is_true(host.close(s))
    H.fails_with("WSAENOTSOCK", host.socket_info(s))
    H.fails_with("WSAENOTSOCK", host.getsockname(s))
  end)

  it("complete overlapped receives by event and by routine, never through WPUCompleteOverlappedRequest", function()
    -- the host refuses IFS handles in WPUCompleteOverlappedRequest (WSAEINVAL)
    local r = H.provider([[
local wsp = require "wsp"
return {
  ifs = true,
  socket = function(s) return 0x52000 end,
  recv = function(s, len, flags)
    if flags == 0 then wsp.wait({}, 0.01) end
    return "ifs", 0
  end,
}
]])
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local mark = H.mark()
    for _, flags in ipairs{0, wsp.MSG_PEEK} do   -- pending, then at once
      local ev = host.create_event()
      local ov = host.overlapped(ev)
      local ok, _, code = host.wsarecv(s, 10, ov, {flags = flags})
      assert.is_true(ok or code == wsp.WSA_IO_PENDING)
      assert.equal(1, host.wait({ev}, false, 3000, false))
      assert.equal(3, ov.InternalHigh)
      assert.equal(0, ov.OffsetHigh)
      assert.equal("ifs", ov.data)
    end
    host.completions()
    local ov = host.overlapped()
    local ok, _, code = host.wsarecv(s, 10, ov, {routine = true})
    assert.is_true(ok or code == wsp.WSA_IO_PENDING)
    host.sleep(1000, true)
    local done = host.completions()
    assert.equal(1, #done)
    assert.equal(3, done[1].bytes)
    assert.falsy(H.find_log(mark, "WPUCompleteOverlappedRequest failed", true))
  end)

  it("refuse a handle already in use, and a socket handler that proposes none", function()
    local r = H.provider([[
return {
  ifs = true,
  socket = function(s, af) if af == 23 then return true end return 0x60000 end,
}
]], {entries = {{af = 2, type = 1}, {af = 23, type = 1}}})
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert.equal(0x60000, s)
    H.fails_with("WSAEINVAL", host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local mark = H.mark()
    H.fails_with("WSAENETDOWN", host.socket(wsp.AF_INET6, wsp.SOCK_STREAM, 0, 0, r.ids[2]))
    assert.truthy(H.find_log(mark, "must return its socket handle", true))
  end)
end)
