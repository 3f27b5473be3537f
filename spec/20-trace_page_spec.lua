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

-- A copy of the page with a measuring script of the spec's own appended: it
-- runs after the page's and writes what it measured into the DOM.
local MEASURE = [[
<script>
(function () {
  var out = {spill: [], overlap: [], labels: 0, clipped: 0, bars: 0, barColours: {}, returns: []};
  var svg = document.getElementById("diagram");
  var boxes = [];
  Array.prototype.forEach.call(svg.querySelectorAll("g.arrow"), function (g) {
    var line = g.querySelector("line"), t = g.querySelector("text.label"), title = g.querySelector("title");
    var x1 = Number(line.getAttribute("x1")), x2 = Number(line.getAttribute("x2"));
    var b = t.getBBox();
    out.labels++;
    if (t.textContent !== title.textContent) out.clipped++;
    var lo = Math.min(x1, x2), hi = Math.max(x1, x2), lw = Number(document.body.dataset.laneWidth);
    if (hi - lo < lw) { lo = (lo + hi) / 2 - lw / 2; hi = lo + lw; }
    if (b.x < lo - 1 || b.x + b.width > hi + 1) out.spill.push(g.dataset.seq + ": " + b.x + ".." + (b.x + b.width) + " not in " + lo + ".." + hi);
    boxes.push({seq: g.dataset.seq, x: b.x, y: b.y, w: b.width, h: b.height});
    if (g.dataset.kind === "return") out.returns.push(t.textContent);
  });
  for (var i = 0; i < boxes.length; i++) for (var j = i + 1; j < boxes.length && j < i + 3; j++) {
    var a = boxes[i], c = boxes[j];
    if (a.x < c.x + c.w && c.x < a.x + a.w && a.y < c.y + c.h && c.y < a.y + a.h) out.overlap.push(a.seq + "/" + c.seq);
  }
  Array.prototype.forEach.call(svg.querySelectorAll("rect.bar"), function (r) {
    out.bars++;
    out.barColours[r.style.fill] = (out.barColours[r.style.fill] || 0) + 1;
  });
  var main = document.getElementById("main").getBoundingClientRect();
  var sv = svg.getBoundingClientRect(), det = document.getElementById("detail").getBoundingClientRect();
  out.svgRight = sv.right; out.detailLeft = det.left; out.mainRight = main.right; out.width = window.innerWidth;
  document.body.setAttribute("data-measured", JSON.stringify(out));
})();
</script>
]]

local function measured(file, fragment, width)
  local copy = file:gsub("%.html$", "-measured.html")
  local page = assert(io.open(file)):read("a")
  local f = assert(io.open(copy, "w"))
  f:write((page:gsub("</body>", function() return MEASURE .. "</body>" end)))
  f:close()
  local d = sh(("%s --window-size=%d,900 --dump-dom 'file://%s%s'"):format(CHROME, width or 1400, copy, fragment or ""))
  local json = assert(d:match('data%-measured="([^"]*)"'), "the measuring script did not run:\n" .. d:sub(1, 1500))
  json = json:gsub("&quot;", '"'):gsub("&gt;", ">"):gsub("&lt;", "<"):gsub("&amp;", "&")
  return json, d
end

local function count(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

describe("the trace page in headless Chromium #subprocess #chromium", function()
  local file, recs, lanes, c, peer, outer, inner, native

  setup(function()
    native = host.install_native()
    inner = host.install_layered{script = H.root .. "/examples/passthrough.lua", over = native, name = "inner"}
    outer = host.install_layered{script = H.root .. "/examples/meter.lua", over = inner, name = "outer"}
    local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
    assert(host.bind(l, "127.0.0.1:0"))
    assert(host.listen(l, 2))
    trace.start()
    c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, outer.tcp))
    assert(host.connect(c, host.getsockname(l)))
    local a = assert(host.accept(l))
    peer = a
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

  it("fits 1,400 px: labels stay within the lanes they join, none overlaps another, full text on hover", function()
    local m = measured(file)
    assert.truthy(m:find('"spill":[]', 1, true), m)
    assert.truthy(m:find('"overlap":[]', 1, true), m)
    assert.equal(#recs, tonumber(m:match('"labels":(%d+)')))
    assert.is_true(tonumber(m:match('"clipped":(%d+)')) >= 1, m)      -- some were cut, and keep their text on hover
    assert.equal(1400, tonumber(m:match('"width":(%d+)')))
    assert.is_true(tonumber(m:match('"svgRight":([%d.]+)')) <= tonumber(m:match('"detailLeft":([%d.]+)')), m)
    -- the full text of a cut label is its <title>
    local d = dom(file)
    local long = d:match('<title>(WSPSocket%(AF_INET, SOCK_STREAM, 0, [^<]-WSA_FLAG_OVERLAPPED%))</title>')
    assert.truthy(long, "no WSPSocket call down with its flags on hover")
  end)

  it("names returns after their call and draws an activation bar per call in its thread's colour", function()
    local m = measured(file)
    assert.truthy(m:find("\"WSPRecv \u{2192} WSA_IO_PENDING\"", 1, true), m)
    -- an expected outcome is marked so, not as a failure, and says so on hover
    local d = dom(file)
    local pend
    for _, r in ipairs(recs) do if r.kind == "return" and r.errname == "WSA_IO_PENDING" then pend = r break end end
    local g = d:match('<g class="([^"]*)" data%-seq="' .. pend.seq .. '"')
    assert.equal("arrow kind-return expected", g)
    assert.truthy(d:find("<title>" .. pend.name .. " \u{2192} WSA_IO_PENDING (expected), ", 1, true))
    local pairs_, threads = 0, {}
    local open = {}
    for _, r in ipairs(recs) do
      threads[r.thread] = true
      open[r.thread] = open[r.thread] or {}
      if r.kind == "call" then table.insert(open[r.thread], r.name)
      elseif r.kind == "return" then
        local st = open[r.thread]
        for i = #st, 1, -1 do if st[i] == r.name then for j = #st, i, -1 do st[j] = nil end pairs_ = pairs_ + 1 break end end
      end
    end
    assert.equal(pairs_, tonumber(m:match('"bars":(%d+)')))
    local nthreads, colours = 0, 0
    for _ in pairs(threads) do nthreads = nthreads + 1 end
    for _ in m:match('"barColours":(%b{})'):gmatch('":') do colours = colours + 1 end
    assert.is_true(nthreads >= 2)                -- the application's thread and the layer's service thread
    assert.equal(nthreads, colours, m)
    -- a return's label is its call's name, an upcall sits inside the bar of the call it belongs to
    for ret in m:match('"returns":(%b[])'):gmatch('"([^"]*)"') do
      assert.truthy(ret:match("^[%w_ ]+ \u{2192} "), "a return label without its call's name: " .. ret)
    end
  end)

  it("opens a detail panel with the parameters by name, decoded, and the link to Microsoft's page", function()
    local pick
    for _, r in ipairs(recs) do
      if r.kind == "call" and r.name == "WSPRecv" and r.to == outer.guid then pick = r break end
    end
    local panel = dom(file, "#select=" .. pick.seq):match("<aside.-</aside>")
    assert.truthy(panel:find('<tr data-field="s" class="param"><td>s</td><td>s' .. c .. '</td></tr>', 1, true), panel)
    assert.truthy(panel:find('<tr data-field="lpFlags" class="param"><td>lpFlags</td><td>0</td></tr>', 1, true), panel)
    assert.truthy(panel:find('WSA_IO_PENDING (997), expected', 1, true) or panel:find('<tr data-field="return">', 1, true), panel)
    assert.truthy(panel:find('href="https://learn.microsoft.com/en-us/windows/win32/api/ws2spi/nc-ws2spi-lpwsprecv"', 1, true), panel)
    -- a layer's socket call down: no socket argument, its flags by name
    for _, r in ipairs(recs) do
      if r.kind == "upcall" and r.name == "WPUCompleteOverlappedRequest" then pick = r break end
    end
    panel = dom(file, "#select=" .. pick.seq):match("<aside.-</aside>")
    assert.truthy(panel:find('<tr data-field="dwError" class="param"><td>dwError</td><td>0 (no error)</td></tr>', 1, true), panel)
    assert.truthy(panel:find('<tr data-field="cbTransferred" class="param"><td>cbTransferred</td><td>2</td></tr>', 1, true), panel)
    assert.truthy(panel:find('nf-ws2spi-wpucompleteoverlappedrequest"', 1, true), panel)
  end)

  it("follows one connection through every layer: the application's socket, the sockets below it, the peer", function()
    local conns = trace.connections(recs)
    assert.equal(1, #conns)
    local conn = conns[1]
    assert.equal(c, conn[1])
    assert.equal(4, #conn)                   -- meter's socket, passthrough's, native's, and the accepted peer
    local lowers = {}
    for _, r in ipairs(recs) do
      if r.kind == "call" and r.name == "WSPRecv" and r.from == outer.guid then lowers[r.socket] = true end
    end
    assert.is_true(lowers[conn[2]], "the second socket is the one meter calls on below")
    assert.equal(peer, conn[4])
    local d = dom(file, "#connection=1")
    local want, seen = {}, {}
    for _, s in ipairs(conn) do want[tostring(s)] = true end
    local n = 0
    for sock in d:gmatch('<g class="arrow[^"]*" data%-seq="%d+" data%-socket="(%d+)"') do
      assert.truthy(want[sock], sock)
      seen[sock] = true
      n = n + 1
    end
    local expect = 0
    for _, r in ipairs(recs) do if want[tostring(r.socket)] then expect = expect + 1 end end
    assert.equal(expect, n)
    for s in pairs(want) do assert.truthy(seen[s], "no record of s" .. s .. " under the connection filter") end
    assert.truthy(d:find(("<option value=\"1\">s%d \u{2192} s%d \u{2192} s%d \u{2192} s%d</option>"):format(
      conn[1], conn[2], conn[3], conn[4]), 1, true), d:match('<select id="conn%-filter">.-</select>'))
  end)
end)
