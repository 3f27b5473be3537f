-- Tracing: every crossing between the application, the host, the provider
-- layers and the upcalls, recorded in order with arguments, results, errors
-- and durations; the text view and the page built from the records.
local H = require "helpers"
local lwsp, wsp, host = H.lwsp, H.wsp, H.host
local trace = require "wsp.trace"

local function brief(records, g)
  local out = {}
  for _, r in ipairs(records) do
    local function p(x) return x == g and "P" or x end
    out[#out + 1] = ("%s %s>%s %s s%d (%s) -> %s %s"):format(r.kind, p(r.from), p(r.to), r.name, r.socket, r.args,
      r.result, r.errname or "ok")
  end
  return out
end

local function find(records, pred)
  local out = {}
  for _, r in ipairs(records) do if pred(r) then out[#out + 1] = r end end
  return out
end

describe("the trace", function()
  after_each(function() trace.stop() H.reset() end)

  it("records a scripted scenario exactly: parties, names, arguments, results, errors, in order", function()
    local r = H.provider("examples/memnet.lua")
    local g = r.guid
    trace.start()
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(host.bind(s, "127.0.0.1:0"))
    local t = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local name = host.getsockname(s)
    H.fails_with("WSAEADDRINUSE", host.bind(t, name))
    local cs, ct = ("0x%x"):format(host.socket_info(s).context), ("0x%x"):format(host.socket_info(t).context)
    assert(host.close(s))
    assert.equal(33, trace.stop())
    local at = lwsp.format_address(name)
    local S, T = "s" .. s, "s" .. t
    local f = string.format
    assert.same({
      "call application>host socket s0 (2, 1, 0, 0, " .. r.tcp .. ") ->  ok",
      "call host>P WSPStartup s0 (2.2) ->  ok",
      "return P>host WSPStartup s0 () ->  ok",
      f("call host>P WSPSocket %s (%s, 2, 1, 0, {entry %d, type 1, protocol 6, chain %d}, 0, 0) ->  ok", S, S, r.tcp, r.tcp),
      f("upcall P>host WPUCreateSocketHandle %s (catalog %d, context %s) ->  ok", S, r.tcp, cs),
      f("return P>host WSPSocket %s () -> true ok", S),
      f("return host>application socket %s () -> %d ok", S, s),
      f('call application>host bind %s (%d, "127.0.0.1:0") ->  ok', S, s),
      f("call host>P WSPBind %s (%s, 127.0.0.1:0) ->  ok", S, S),
      f("upcall P>host WPUQuerySocketHandleContext %s (context %s) ->  ok", S, cs),
      f("return P>host WSPBind %s () -> true ok", S),
      f("return host>application bind %s () -> true ok", S),
      "call application>host socket s0 (2, 1, 0, 0, " .. r.tcp .. ") ->  ok",
      f("call host>P WSPSocket %s (%s, 2, 1, 0, {entry %d, type 1, protocol 6, chain %d}, 0, 0) ->  ok", T, T, r.tcp, r.tcp),
      f("upcall P>host WPUCreateSocketHandle %s (catalog %d, context %s) ->  ok", T, r.tcp, ct),
      f("return P>host WSPSocket %s () -> true ok", T),
      f("return host>application socket %s () -> %d ok", T, t),
      f("call application>host getsockname %s (%d) ->  ok", S, s),
      f("call host>P WSPGetSockName %s (%s) ->  ok", S, S),
      f("upcall P>host WPUQuerySocketHandleContext %s (context %s) ->  ok", S, cs),
      f("return P>host WSPGetSockName %s () -> %s ok", S, at),
      f("return host>application getsockname %s () -> %s ok", S, at),
      f("call application>host bind %s (%d, %s) ->  ok", T, t, at),
      f("call host>P WSPBind %s (%s, %s) ->  ok", T, T, at),
      f("upcall P>host WPUQuerySocketHandleContext %s (context %s) ->  ok", T, ct),
      f("return P>host WSPBind %s () ->  WSAEADDRINUSE", T),
      f("return host>application bind %s () ->  WSAEADDRINUSE", T),
      f("call application>host close %s (%d) ->  ok", S, s),
      f("call host>P WSPCloseSocket %s (%s) ->  ok", S, S),
      f("upcall P>host WPUQuerySocketHandleContext %s (context %s) ->  ok", S, cs),
      f("upcall P>host WPUCloseSocketHandle %s () ->  ok", S),
      f("return P>host WSPCloseSocket %s () -> true ok", S),
      f("return host>application close %s () -> true ok", S),
    }, brief(trace.records(), g))
    -- sequence numbers, depths and one thread
    local recs = trace.records()
    for i, x in ipairs(recs) do
      assert.equal(i, x.seq)
      assert.equal(recs[1].thread, x.thread)
    end
    assert.same({0, 1, 1, 1, 2, 1, 0}, {recs[1].depth, recs[2].depth, recs[3].depth, recs[4].depth, recs[5].depth,
                                        recs[6].depth, recs[7].depth})
    assert.equal(wsp.WSAEADDRINUSE, recs[26].error)
    assert.is_true(recs[26].us >= 0 and recs[27].us >= recs[26].us)
  end)

  it("follows a call down through two layers, names who resumes a pending call, and shows its completion", function()
    local native = H.base()
    local inner = H.layered{script = H.root .. "/examples/passthrough.lua", over = native, name = "inner"}
    local outer = H.layered{script = H.root .. "/examples/passthrough.lua", over = inner, name = "outer"}
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
    local calls = find(recs, function(r) return r.kind == "call" and r.name == "WSPGetSockOpt" end)
    assert.same({outer.guid, inner.guid, native.guid}, {calls[1].to, calls[2].to, calls[3].to})
    assert.same({"host", outer.guid, inner.guid}, {calls[1].from, calls[2].from, calls[3].from})
    assert.same({1, 2, 3}, {calls[1].depth, calls[2].depth, calls[3].depth})
    -- the host's send on the native socket is recorded by the host (native is not lwsp's)
    local sends = find(recs, function(r) return r.kind == "call" and r.name == "WSPSend" and r.socket == a end)
    assert.equal(1, #sends)
    assert.same({"host", native.guid, a .. ', "hi"'}, {sends[1].from, sends[1].to, sends[1].args})
    -- the pending WSPRecv is resumed on the outer layer's service thread: the
    -- outer provider calls down, and completes to the host
    local app = recs[1].thread
    local resumed = find(recs, function(r)
      return r.kind == "call" and r.name == "WSPRecv" and r.thread ~= app and r.to == inner.guid
    end)
    assert.is_true(#resumed >= 1)
    assert.equal(outer.guid, resumed[#resumed].from)
    local done = find(recs, function(r) return r.name == "WPUCompleteOverlappedRequest" end)
    assert.equal(1, #done)
    assert.same({"upcall", outer.guid, "host", c, "error 0, 2 bytes"}, {done[1].kind, done[1].from, done[1].to,
                                                                        done[1].socket, done[1].args})
    local signalled = find(recs, function(r) return r.kind == "complete" and r.name == "event signalled" end)
    assert.same({"host", "application", c, "2 bytes"}, {signalled[1].from, signalled[1].to, signalled[1].socket,
                                                        signalled[1].args})
    -- the text view
    local text = trace.text(recs, {[outer.guid] = "outer", [inner.guid] = "inner", [native.guid] = "native"})
    assert.truthy(text:find("host -> outer: WSPGetSockOpt(s" .. c, 1, true), text)
    assert.truthy(text:find("outer -> inner: WSPGetSockOpt(s", 1, true), text)
    assert.truthy(text:find("inner -> native: WSPGetSockOpt(", 1, true), text)
    assert.truthy(text:find("^ upcall WPUCompleteOverlappedRequest from outer s" .. c .. " (dwError=0 (no error), cbTransferred=2)", 1, true), text)
    assert.truthy(text:find("* event signalled s" .. c .. " (cbTransfer=2)", 1, true), text)
    -- the JSON Lines file holds the same records
    local back = trace.read(file)
    assert.equal(#recs, #back)
    for i, x in ipairs(recs) do
      for k, v in pairs(x) do
        if k == "t" or k == "us" then
          assert.is_true(math.abs(back[i][k] - v) < (k == "t" and 1e-5 or 0.1))
        else
          assert.equal(v, back[i][k], ("record %d field %s"):format(i, k))
        end
      end
    end
    -- lanes: callers left of callees, the base last
    assert.same({"application", "host", outer.guid, inner.guid, native.guid},
      (function() local ids = {} for i, l in ipairs(trace.lanes(recs)) do ids[i] = l.id end return ids end)())
  end)

  it("names a layer's calls down to a C provider as they were made: WSPGetPeerName, WSPSocket's real flags", function()
    local native = H.base()
    local layer = H.layered{script = H.root .. "/examples/passthrough.lua", over = native, name = "layer"}
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 2))
    trace.start()
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, layer.tcp))
    assert(host.connect(c, host.getsockname(l)))
    assert(host.getpeername(c))
    assert(host.getsockname(c))
    trace.stop()
    local recs = trace.records()
    local down = find(recs, function(r) return r.kind == "call" and r.from == layer.guid and r.to == native.guid end)
    local names = {}
    for _, r in ipairs(down) do names[#names + 1] = r.name end
    local peer = find(down, function(r) return r.name == "WSPGetPeerName" end)
    local sock = find(down, function(r) return r.name == "WSPGetSockName" end)
    assert.equal(1, #peer, table.concat(names, " "))
    assert.equal(1, #sock, table.concat(names, " "))
    -- the lower socket is opened with WSA_FLAG_OVERLAPPED (0x1) ORed into the flags
    local opened = find(down, function(r) return r.name == "WSPSocket" end)
    assert.equal(1, #opened)
    assert.truthy(opened[1].args:find("0x1$"), opened[1].args)
    l = host.close(l)
  end)

  it("decodes: parameters by their names in ws2spi.h, constants by name, handles in hex, GUIDs named, "
    .. "WSA_IO_PENDING and WSAEWOULDBLOCK as expected outcomes, the page on learn.microsoft.com", function()
    local native = H.base()
    local layer = H.layered{script = H.root .. "/examples/passthrough.lua", over = native, name = "layer"}
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 2))
    trace.start()
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, layer.tcp))
    assert(host.connect(c, host.getsockname(l)))
    local a = assert(host.accept(l))
    assert(host.getsockopt(c, wsp.SOL_SOCKET, wsp.SO_RCVBUF))
    assert(host.getsockopt(c, wsp.IPPROTO_TCP, wsp.TCP_NODELAY))
    assert(host.ioctl(c, wsp.FIONREAD, nil, 4))
    local ev = host.create_event()
    assert(host.event_select(c, ev, wsp.FD_READ | wsp.FD_CLOSE))
    local w = host.window()
    assert(host.async_select(a, w, 0x400 + 7, wsp.FD_READ | wsp.FD_WRITE))
    local ov = host.overlapped(host.create_event())
    H.fails_with("WSA_IO_PENDING", host.wsarecv(c, 10, ov))
    assert(host.send(a, "hi"))
    assert.equal(1, host.wait({ov.hEvent}, false, 5000))
    trace.stop()
    local recs = trace.records()
    local names = {[layer.guid] = "layer", [native.guid] = "native"}
    local function first(pred) return find(recs, pred)[1] end
    local function params(r)
      local out = {}
      for _, p in ipairs(trace.decode(r, names).params) do out[#out + 1] = p.name .. "=" .. p.value end
      return table.concat(out, ", ")
    end
    -- WSPSocket: its own parameter list, no socket argument, the flags as passed down
    local top = first(function(r) return r.kind == "call" and r.name == "WSPSocket" and r.to == layer.guid end)
    -- (a protocol info by the fields that say what it is: the entry, socket type, protocol and chain)
    local chain
    for _, e in ipairs(host.catalog()) do if e.dwCatalogEntryId == layer.tcp then chain = e.ProtocolChain end end
    assert.equal(("af=AF_INET, type=SOCK_STREAM, protocol=0, lpProtocolInfo={dwCatalogEntryId=%d, iSocketType=SOCK_STREAM, "
      .. "iProtocol=IPPROTO_TCP, ProtocolChain={%d, %d}}, g=0, dwFlags=0"):format(layer.tcp, chain[1], native.tcp),
      params(top))
    assert.equal(native.tcp, chain[2])
    local down = first(function(r) return r.kind == "call" and r.name == "WSPSocket" and r.from == layer.guid end)
    assert.truthy(params(down):find("dwFlags=WSA_FLAG_OVERLAPPED$"), params(down))
    -- the info passed down is the base's own entry's (ChainLen 1)
    assert.truthy(params(down):find(("lpProtocolInfo={dwCatalogEntryId=%d, iSocketType=SOCK_STREAM, iProtocol=IPPROTO_TCP, "
      .. "ProtocolChain={%d}}"):format(native.tcp, native.tcp), 1, true), params(down))
    local d = trace.decode(down)
    assert.equal("https://learn.microsoft.com/en-us/windows/win32/api/ws2spi/nc-ws2spi-lpwspsocket", d.url)
    -- levels and options, ioctl codes
    local opts = find(recs, function(r) return r.kind == "call" and r.name == "WSPGetSockOpt" and r.to == layer.guid end)
    assert.equal(("s=s%d, level=SOL_SOCKET, optname=SO_RCVBUF"):format(c), params(opts[1]):gsub(", optlen=.*", ""))
    assert.equal(("s=s%d, level=IPPROTO_TCP, optname=TCP_NODELAY"):format(c), params(opts[2]):gsub(", optlen=.*", ""))
    local io = first(function(r) return r.kind == "call" and r.name == "WSPIoctl" and r.to == layer.guid end)
    assert.truthy(params(io):find(("^s=s%d, dwIoControlCode=FIONREAD"):format(c)), params(io))
    local nb = first(function(r) return r.kind == "call" and r.name == "WSPIoctl" and r.to == native.guid end)
    assert.truthy(params(nb):find("dwIoControlCode=FIONBIO", 1, true), params(nb))
    -- FD_ masks, the event handle in hex, WM_USER+n, the same notation on both sides of the host
    local es = first(function(r) return r.kind == "call" and r.name == "WSPEventSelect" end)
    assert.equal(("s=s%d, hEventObject=0x%x, lNetworkEvents=FD_READ|FD_CLOSE"):format(c, ev), params(es))
    local app = first(function(r) return r.kind == "call" and r.name == "event_select" end)
    assert.equal(("s=s%d, hEventObject=0x%x, lNetworkEvents=FD_READ|FD_CLOSE"):format(c, ev), params(app))
    local as = first(function(r) return r.kind == "call" and r.name == "async_select" end)
    assert.truthy(params(as):find("wMsg=WM_USER+7, lEvent=FD_READ|FD_WRITE", 1, true), params(as))
    -- a GUID the caller named
    local path = first(function(r) return r.name == "WPUGetProviderPath" end)
    assert.equal(("lpProviderId=%s (native)"):format(native.guid), params(path))
    -- without names, the catalog's: the native base's first entry
    local entry
    for _, e in ipairs(host.catalog()) do if e.ProviderId == native.guid then entry = entry or e end end
    assert.equal(("lpProviderId=%s (%s)"):format(native.guid, entry.szProtocol), trace.decode(path).text)
    -- an upcall's page is its function's (ws2spi.h's LPWPU* types have no page of their own)
    assert.equal("https://learn.microsoft.com/en-us/windows/win32/api/ws2spi/nf-ws2spi-wpugetproviderpath",
      trace.decode(path).url)
    -- completions: the upcall's parameters, WSA_IO_PENDING expected, not failed
    local done = first(function(r) return r.name == "WPUCompleteOverlappedRequest" end)
    assert.equal("dwError=0 (no error), cbTransferred=2", params(done))
    local pend = first(function(r) return r.kind == "return" and r.name == "WSPRecv" and r.errname == "WSA_IO_PENDING" end)
    assert.same({"expected", "https://learn.microsoft.com/en-us/windows/win32/api/ws2spi/nc-ws2spi-lpwsprecv"},
      {trace.decode(pend).outcome, trace.decode(pend).url})
    local wb = first(function(r) return r.kind == "return" and r.errname == "WSAEWOULDBLOCK" end)
    assert.equal("expected", trace.decode(wb).outcome)
    -- a C provider's results: the handles WSPSocket and WSPAccept return, the bytes a send took
    local acc = first(function(r) return r.kind == "return" and r.name == "WSPAccept" and r.to == "host" end)
    assert.equal("s" .. a, acc.result)
    local lowsock = first(function(r) return r.kind == "return" and r.name == "WSPSocket" and r.from == native.guid end)
    assert.truthy(lowsock.result:match("^s%d+$"), lowsock.result)
    local sent = first(function(r) return r.kind == "return" and r.name == "WSPSend" and r.from == native.guid end)
    assert.equal("2 bytes", sent.result)
    -- the text tree says so
    local text = trace.text(recs, names)
    assert.truthy(text:find("<- WSPRecv WSA_IO_PENDING (expected)", 1, true), text)
    assert.truthy(text:find(("host -> layer: WSPEventSelect(s%d, 0x%x, FD_READ|FD_CLOSE)"):format(c, ev), 1, true), text)
    assert.truthy(text:find("layer -> native: WSPSocket(AF_INET, SOCK_STREAM, 0, ", 1, true), text)
    host.close(c); host.close(a); host.close(l)
  end)

  it("shows each layer registering its handles under its own catalog entry, as Microsoft's layered sample does",
    function()
    local native = H.base()
    local inner = H.layered{script = H.root .. "/examples/passthrough.lua", over = native, name = "inner"}
    local outer = H.layered{script = H.root .. "/examples/passthrough.lua", over = inner, name = "outer"}
    assert.are_not.equal(inner.tcp, outer.tcp)
    trace.start()
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, outer.tcp))
    local u = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, outer.udp))
    trace.stop()
    -- which entry each handle was registered under, as the host (ws2_32's part) sees it
    local made = {}
    for _, r in ipairs(trace.records()) do
      if r.name == "WPUCreateSocketHandle" then
        made[#made + 1] = {r.from, host.socket_info(r.socket).catalog, tonumber(r.args:match("^catalog (%d+)"))}
      end
    end
    assert.same({
      {outer.guid, outer.tcp, outer.tcp}, {inner.guid, inner.tcp, inner.tcp}, {native.guid, native.tcp, native.tcp},
      {outer.guid, outer.udp, outer.udp}, {inner.guid, inner.udp, inner.udp}, {native.guid, native.udp, native.udp},
    }, made)
    assert.equal(outer.tcp, host.socket_info(c).catalog)
    assert.equal(outer.udp, host.socket_info(u).catalog)
    -- lwsp's order, as the tour says (step 15): a layer registers its handle, then opens its
    -- socket below (Microsoft's sample opens the lower socket first)
    local recs = trace.records()
    local function at(pred) for _, r in ipairs(recs) do if pred(r) then return r.seq end end end
    for _, layer in ipairs{outer, inner} do
      local handle = at(function(r) return r.name == "WPUCreateSocketHandle" and r.from == layer.guid end)
      local down = at(function(r) return r.kind == "call" and r.name == "WSPSocket" and r.from == layer.guid end)
      assert.is_true(handle < down)
    end
    -- and the sockets work through both layers
    assert.equal(wsp.SOCK_STREAM, wsp.int(assert(host.getsockopt(c, wsp.SOL_SOCKET, wsp.SO_TYPE))))
    assert(host.close(c)); assert(host.close(u))
  end)

  it("shows a layer's WSPSelect mapping the lower sets back with ws2_32's WPUFDIsSet, as Microsoft's sample does",
    function()
    local base = H.provider("examples/memnet.lua")
    local layer = H.layered{script = H.root .. "/examples/passthrough.lua", over = base, name = "layer"}
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, base.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 4))
    local c1 = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, layer.tcp))
    assert(host.connect(c1, host.getsockname(l)))
    local a1 = assert(host.accept(l))
    local c2 = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, layer.tcp))
    assert(host.connect(c2, host.getsockname(l)))
    local a2 = assert(host.accept(l))
    assert(host.send(a1, "x"))              -- c1 is readable, c2 is not
    trace.start()
    local n, r = host.select({c2, c1}, nil, nil, 5)
    trace.stop()
    assert.equal(1, n)
    assert.same({c1}, r)
    local recs = trace.records()
    -- the layer's call down: its lower sockets, in the application's order
    local down = find(recs, function(x) return x.kind == "call" and x.name == "WSPSelect" and x.from == layer.guid end)[1]
    local lh2, lh1 = down.args:match("^{(%d+), (%d+)}, nil, nil, ")
    assert.truthy(lh2, down.args)
    assert.is_true(lh2 ~= tostring(c2) and lh1 ~= tostring(c1))
    -- then, for each application socket in turn, the host's WPUFDIsSet on the set the layer below returned
    local ups = find(recs, function(x) return x.name == "WPUFDIsSet" end)
    assert.equal(2, #ups)
    local names = {[layer.guid] = "layer", [base.guid] = "memnet"}
    for i, want in ipairs{{lh2, ("s=s%s, fdset={s%s}, returns=0 (not a member)"):format(lh2, lh1)},
                          {lh1, ("s=s%s, fdset={s%s}, returns=1 (a member)"):format(lh1, lh1)}} do
      assert.same({"upcall", layer.guid, "host", tonumber(want[1])}, {ups[i].kind, ups[i].from, ups[i].to, ups[i].socket})
      assert.is_true(ups[i].seq > down.seq)
      local d = trace.decode(ups[i], names)
      assert.equal(want[2], d.text)
      assert.equal("https://learn.microsoft.com/en-us/windows/win32/api/ws2spi/nf-ws2spi-wpufdisset", d.url)
    end
    -- both inside the layer's WSPSelect, after the call down returned
    local ret = find(recs, function(x) return x.kind == "return" and x.name == "WSPSelect" and x.from == layer.guid end)[1]
    local downret = find(recs, function(x) return x.kind == "return" and x.name == "WSPSelect" and x.to == layer.guid end)[1]
    assert.is_true(downret.seq < ups[1].seq and ups[2].seq < ret.seq)
    assert.equal(("{s%d}, {}, {}"):format(c1), ret.result)
    local text = trace.text(recs, names)
    assert.truthy(text:find(("^ upcall WPUFDIsSet from layer s%s (s=s%s, fdset={s%s}, returns=1 (a member))"):format(lh1, lh1,
      lh1), 1, true), text)
    for _, s in ipairs{c1, c2, a1, a2, l} do host.close(s) end
  end)

  it("records each completion mechanism and the upcalls behind it", function()
    local r = H.provider("examples/memnet.lua")
    local c, a = H.memnet_pair(r)
    host.completions()
    trace.start()
    -- event
    local ov1 = host.overlapped(host.create_event())
    H.fails_with("WSA_IO_PENDING", host.wsarecv(a, 100, ov1))
    host.send(c, "one")
    -- completion routine: an APC
    local ov2 = host.overlapped()
    H.fails_with("WSA_IO_PENDING", host.wsarecv(a, 100, ov2, {routine = true}))
    host.send(c, "two")
    assert.equal("io_completion", host.sleep(1000, true))
    -- completion port
    local port = host.port()
    assert(host.associate(a, port, 3))
    local ov3 = host.overlapped()
    H.fails_with("WSA_IO_PENDING", host.wsarecv(a, 100, ov3))
    host.send(c, "three")
    assert.equal(5, (host.dequeue(port, 1000)))
    -- a window message
    local w = host.window()
    assert(host.async_select(c, w, 0x0401, wsp.FD_READ))
    host.send(a, "four")
    assert.equal(1, #host.messages(w, 1000))
    trace.stop()
    local recs = trace.records()
    local function names(kind, sock)
      local out = {}
      for _, x in ipairs(recs) do
        if x.kind == kind and (not sock or x.socket == sock) then out[#out + 1] = x.name end
      end
      return out
    end
    assert.same({"event signalled", "APC delivered", "completion-port packet", "message posted"}, names("complete"))
    local msg = find(recs, function(x) return x.name == "message posted" end)[1]
    assert.same({c, ("msg 0x401, event 0x%x, error 0"):format(wsp.FD_READ)}, {msg.socket, msg.args})
    local seen = {}
    for _, n in ipairs(names("upcall")) do seen[n] = true end
    for _, n in ipairs{"WPUQuerySocketHandleContext", "WPUCompleteOverlappedRequest", "WPUQueueApc", "WPUPostMessage"} do
      assert.is_true(seen[n], n)
    end
    -- each completion comes after the upcall that caused it
    local function index(name, from)
      for i = from or 1, #recs do if recs[i].name == name then return i end end
    end
    assert.is_true(index("WPUCompleteOverlappedRequest") < index("event signalled"))
    assert.is_true(index("WPUQueueApc") < index("APC delivered"))
    assert.is_true(index("WPUPostMessage") < index("message posted"))
  end)

  it("records every upcall, each once, with the provider as the caller", function()
    local r = H.provider("spec/providers/upcaller.lua")
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    local w = host.window()
    local ov = host.overlapped(host.create_event())
    local code = ([[
      local h = up.create_socket_handle(%d, 7)
      up.query_socket_handle_context(h)
      up.close_socket_handle(h)
      up.modify_ifs_handle(%d, 0x9200)
      local ev = up.create_event()
      up.set_event(ev) up.reset_event(ev) up.close_event(ev)
      up.fd_isset(7, {3, 7})
      up.get_provider_path(%q)
      up.post_message(%d, 0x401, %d, 1)   -- (the window the application selected for s)
      up.query_blocking_callback()
      local t = up.open_current_thread()
      up.queue_apc(t, function() end)
      up.close_thread(t)
      on_result = function(s, ov) up.complete_overlapped_request(s.handle, ov, 0, 1) return 1, 0 end
      return "return true"
    ]]):format(r.tcp, r.tcp, r.guid, w, s)
    assert.is_true(host.async_select(s, w, 0x401, wsp.FD_READ))
    trace.start()
    assert(host.ioctl(s, 0x7100, code, 1024))
    assert.equal(1, host.get_overlapped_result(s, ov, false))   -- its handler completes the overlapped it is given
    trace.stop()
    local got = {}
    for _, x in ipairs(trace.records()) do
      if x.kind == "upcall" then
        assert.equal(r.guid, x.from)
        assert.equal("host", x.to)
        got[#got + 1] = x.name
      end
    end
    -- the first query is lwsp's own, finding s for the WSPIoctl, and so is the last
    assert.same({"WPUQuerySocketHandleContext", "WPUCreateSocketHandle", "WPUQuerySocketHandleContext",
                 "WPUCloseSocketHandle", "WPUModifyIFSHandle", "WPUCreateEvent", "WPUSetEvent", "WPUResetEvent",
                 "WPUCloseEvent", "WPUFDIsSet", "WPUGetProviderPath", "WPUPostMessage", "WPUQueryBlockingCallback",
                 "WPUOpenCurrentThread", "WPUQueueApc", "WPUCloseThread",
                 "WPUQuerySocketHandleContext", "WPUCompleteOverlappedRequest"}, got)   -- (lwsp's query: WSPGetOverlappedResult)
  end)

  it("closes a host call that raised, and a provider call refused before its handler ran", function()
    local r = H.provider("examples/memnet.lua")
    local other = H.provider("examples/memnet.lua")
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, other.tcp))
    trace.start()
    assert.has_error(function() host.bind(s, {}) end)
    assert(host.getsockname(s) == nil)
    -- another provider's socket: refused with WSAENOTSOCK before any Lua runs
    assert.equal(wsp.WSAENOTSOCK, host.probe("getsockname:ok", s, other.tcp))
    trace.stop()
    local recs = trace.records()
    assert.same({"call", "bind", 0}, {recs[1].kind, recs[1].name, recs[1].depth})
    assert.same({"return", "bind", "raised an error", 0}, {recs[2].kind, recs[2].name, recs[2].result, recs[2].depth})
    assert.same({"call", "getsockname", 0}, {recs[3].kind, recs[3].name, recs[3].depth})
    local refused = find(recs, function(x) return x.errname == "WSAENOTSOCK" end)
    assert.equal(1, #refused, trace.text(recs))
    assert.same({"return", other.guid, "application", "WSPGetSockName", s},
      {refused[1].kind, refused[1].from, refused[1].to, refused[1].name, refused[1].socket})
    local depth = 0
    for _, x in ipairs(recs) do
      if x.kind == "call" then depth = depth + 1 elseif x.kind == "return" then depth = depth - 1 end
      assert.is_true(depth >= 0)
    end
    assert.equal(0, depth)
  end)

  -- trace.records builds its tables without the trace's lock: a finalizer
  -- that runs meanwhile may trace calls of its own (the records move), and
  -- one that takes the host's lock must not hold it against the trace's
  -- (make asan: a heap-use-after-free otherwise; make tsan: a lock-order
  -- inversion).
  it("reads its records while finalizers run and trace calls of their own", function()
    trace.start()
    for _ = 1, 600 do host.sleep(0) end
    local reading, ran = false, 0
    local port = assert(host.port())
    -- each finalizer leaves the next one's object behind: one runs in every
    -- collection cycle for as long as the records are read
    local function link()
      setmetatable({}, {__gc = function()
        if not reading or ran >= 20 then return end
        ran = ran + 1
        assert(host.post(port, 0, 1))
        for _ = 1, 200 do host.sleep(0) end
        link()
      end})
    end
    collectgarbage("stop")
    link()
    local mode = collectgarbage("incremental", 10, 1000)
    collectgarbage("restart")
    reading = true
    local recs = lwsp.trace.records()
    reading = false
    collectgarbage(mode)
    trace.stop()
    assert.is_true(ran > 0, "no finalizer ran while the records were read")
    assert.is_true(#recs >= 1200)
    for i, x in ipairs(recs) do
      assert.equal(i, x.seq)
      assert.equal(x.kind == "call" and "application" or "host", x.from)
    end
    host.close_object(port)
  end)
  it("costs nothing it records when off", function()
    local r = H.provider("examples/memnet.lua")
    trace.start()
    trace.stop()
    assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert.same({}, trace.records())
  end)

  it("builds a self-contained page: no network, the lanes and every record embedded", function()
    local r = H.provider("examples/memnet.lua")
    trace.start()
    local s = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
    assert(host.close(s))
    trace.stop()
    local recs = trace.records()
    local page = trace.html(recs, {title = "a <test>", names = {[r.guid] = "memnet"}})
    assert.falsy(page:find("https?://[%w.]+/[%w/]*%.js"))
    assert.falsy(page:find("<script[^>]+src="))
    assert.falsy(page:find("<link[^>]+href="))
    assert.truthy(page:find("<title>a &lt;test&gt;</title>", 1, true))
    local lanes = page:match('<script type="application/json" id="trace%-lanes">(.-)</script>')
    assert.equal(('[{"id":"application","label":"application"},{"id":"host","label":"host"},' ..
                  '{"id":"%s","label":"memnet"}]'):format(r.guid), lanes)
    local data = page:match('<script type="application/json" id="trace%-data">(.-)</script>')
    local n = 0
    for _ in data:gmatch('"seq":') do n = n + 1 end
    assert.equal(#recs, n)
  end)
end)
