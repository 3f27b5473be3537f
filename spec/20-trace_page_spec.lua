-- The trace page (wsp.trace.html) in real headless Chromium: a lane per party,
-- an arrow per record (completions among them), the socket filter, the detail
-- panel, and a screenshot that shows the drawing.
local H = require "helpers"
local wsp, host = H.wsp, H.host
local trace = require "wsp.trace"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>/dev/null"))
  local out = p:read("a")
  p:close()
  return out
end

-- Chromium runs without lwsp's preloads (sanitizer and valgrind runs set LD_PRELOAD)
local CHROME = "env -u LD_PRELOAD chromium --headless --no-sandbox --disable-gpu --hide-scrollbars " ..
               "--user-data-dir=" .. H.tmp .. "/chromium "

local function dom(file, fragment)
  return sh(("%s --dump-dom 'file://%s%s'"):format(CHROME, file, fragment or ""))
end

local function count(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

describe("the trace page in headless Chromium #subprocess #chromium", function()
  local file, recs, lanes, c, outer, inner, native

  setup(function()
    native = host.install_native()
    inner = host.install_layered{script = H.root .. "/examples/passthrough.lua", over = native, name = "inner"}
    outer = host.install_layered{script = H.root .. "/examples/meter.lua", over = inner, name = "outer"}
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 2))
    c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, outer.tcp))
    assert(host.connect(c, host.getsockname(l)))
    local a = assert(host.accept(l))
    trace.start()
    local ov = host.overlapped(host.create_event())
    H.fails_with("WSA_IO_PENDING", host.wsarecv(c, 10, ov))
    host.send(a, "hi")
    assert.equal(1, host.wait({ov.hEvent}, false, 5000))
    local port = host.port()
    assert(host.associate(c, port, 1))
    local ov2 = host.overlapped()
    H.fails_with("WSA_IO_PENDING", host.wsarecv(c, 10, ov2))
    host.send(a, "again")
    assert.equal(5, (host.dequeue(port, 5000)))
    trace.stop()
    recs = trace.records()
    lanes = trace.lanes(recs)
    file = H.tmp .. "/page.html"
    trace.write_html(file, recs, {title = "two layers", names = {[outer.guid] = "meter", [inner.guid] = "passthrough",
                                                                  [native.guid] = "native"}})
  end)
  teardown(H.reset)

  it("draws a lane per party, in calling order, and an arrow per record", function()
    local d = dom(file)
    assert.truthy(d:find('data-ready="1"', 1, true), "the page's script did not finish:\n" .. d:sub(1, 2000))
    local parties = {}
    for p in d:gmatch('<g class="lane" data%-party="([^"]+)"') do parties[#parties + 1] = p end
    assert.same({"application", "host", outer.guid, inner.guid, native.guid}, parties)
    assert.equal(5, #lanes)
    for _, label in ipairs{">application<", ">host<", ">meter<", ">passthrough<", ">native<"} do
      assert.truthy(d:find(label, 1, true), label)
    end
    assert.equal(#recs, count(d, '<g class="arrow kind%-'))
    local kinds = {}
    for _, r in ipairs(recs) do kinds[r.kind] = (kinds[r.kind] or 0) + 1 end
    for kind, n in pairs(kinds) do
      assert.equal(n, count(d, '<g class="arrow kind%-' .. kind .. '[ "]'), kind)
    end
    assert.is_true(kinds.complete >= 2)                -- the event and the port packet
    assert.truthy(d:find('data%-kind="complete" data%-from="host" data%-to="application"'))
    assert.equal(tostring(#recs), d:match('data%-arrows="(%d+)"'))
  end)

  it("opens a record's details, and filters by socket", function()
    local pick
    for _, r in ipairs(recs) do
      if r.kind == "upcall" and r.name == "WPUCompleteOverlappedRequest" then pick = r break end
    end
    local d = dom(file, "#select=" .. pick.seq)
    assert.truthy(d:find('<aside id="detail" data%-seq="' .. pick.seq .. '"'), d:match("<aside.-</aside>"))
    local panel = d:match("<aside.-</aside>")
    assert.truthy(panel:find('<tr data-field="name"><td>name</td><td>WPUCompleteOverlappedRequest</td></tr>', 1, true), panel)
    assert.truthy(panel:find('<tr data-field="from"><td>from</td><td>meter</td></tr>', 1, true), panel)
    assert.truthy(panel:find('<tr data-field="arguments"><td>arguments</td><td>error 0, 2 bytes</td></tr>', 1, true), panel)
    assert.truthy(panel:find('<tr data-field="socket"><td>socket</td><td>s' .. c .. '</td></tr>', 1, true), panel)
    assert.truthy(d:find('class="arrow kind%-upcall selected" data%-seq="' .. pick.seq .. '"'))
    local mine = 0
    for _, r in ipairs(recs) do if r.socket == c then mine = mine + 1 end end
    local f = dom(file, "#socket=" .. c)
    assert.equal(mine, count(f, '<g class="arrow kind%-'))
    assert.is_true(mine < #recs)
    for sock in f:gmatch('<g class="arrow[^"]*" data%-seq="%d+" data%-socket="(%d+)"') do
      assert.equal(tostring(c), sock)
    end
  end)

  it("renders: a screenshot shows the lanes and the arrows in their colours", function()
    local png = H.tmp .. "/page.png"
    sh(("%s --window-size=1100,700 --screenshot=%s 'file://%s'"):format(CHROME, png, file))
    local out = sh(("python3 %s/spec/tools/png_colors.py %s"):format(H.root, png))
    local w, h = out:match("^(%d+) (%d+)")
    assert.same({"1100", "700"}, {w, h})
    local colours = {}
    for rgb, n in out:gmatch("\n(%x+) (%d+)") do colours[rgb] = tonumber(n) end
    -- the page's colours for lane heads, calls, returns, upcalls and completions
    for _, rgb in ipairs{"eef2f8", "1f5fbf", "6b6b6b", "8a3ab9", "17813a"} do
      assert.is_true((colours[rgb] or 0) > 20, rgb .. " missing from the screenshot")
    end
  end)
end)
