--- wsp.trace: lwsp's trace of every crossing, and two views of it.
-- `trace.start([file])` begins recording (JSON Lines into file if given),
-- `trace.stop()` ends it, `trace.records()` returns the records:
-- {seq, t, thread, kind = "call"|"return"|"upcall"|"complete", from, to,
-- name, socket, error, errname, us, depth, args, result}.
-- `trace.text(records)` is an indented call tree per thread;
-- `trace.html(records)` a self-contained sequence diagram.
-- @module wsp.trace
local lwsp = require "lwsp"

if not lwsp.trace then error("wsp.trace is the application's side of lwsp: not available inside a provider", 2) end

local trace = {}
trace.start, trace.stop, trace.records = lwsp.trace.start, lwsp.trace.stop, lwsp.trace.records

local function short(p)
  return p:match("^{") and ("provider " .. p:sub(1, 9) .. "}") or p
end

local function namer(names)
  return function(p) return names and names[p] or short(p) end
end

--- An indented call tree per thread, upcalls and completions marked.
-- @tparam[opt] table records (default: trace.records())
-- @tparam[opt] table names party (GUID) -> name to show instead
-- @treturn string
function trace.text(records, names)
  records = records or trace.records()
  local party = namer(names)
  local by, order = {}, {}
  for _, r in ipairs(records) do
    if not by[r.thread] then by[r.thread] = {}; order[#order + 1] = r.thread end
    local lines = by[r.thread]
    local pad = ("  "):rep(r.depth)
    local sock = r.socket ~= 0 and (" s%d"):format(r.socket) or ""
    local args = r.args or ""
    if r.kind == "call" then
      lines[#lines + 1] = ("%s%s -> %s: %s(%s)"):format(pad, party(r.from), party(r.to), r.name, args)
    elseif r.kind == "return" then
      local res = (r.result or "") ~= "" and (" " .. r.result) or ""
      lines[#lines + 1] = ("%s<- %s %s%s (%.0f us)"):format(pad, r.name, r.errname or "ok", res, r.us)
      -- what the providers logged during the call, under it
      for line in (r.log or ""):gmatch("[^\n]+") do lines[#lines + 1] = ("%s   | %s"):format(pad, line) end
    elseif r.kind == "upcall" then
      lines[#lines + 1] = ("%s^ upcall %s from %s%s%s"):format(pad, r.name, party(r.from), sock,
        args ~= "" and (" (" .. args .. ")") or "")
    else
      lines[#lines + 1] = ("%s* %s%s%s%s"):format(pad, r.name, sock, args ~= "" and (" (" .. args .. ")") or "",
        r.errname and (" " .. r.errname) or "")
    end
  end
  local out = {}
  for _, th in ipairs(order) do
    out[#out + 1] = ("thread %d"):format(th)
    for _, l in ipairs(by[th]) do out[#out + 1] = "  " .. l end
  end
  return table.concat(out, "\n")
end

-- JSON for the page: records and the lane list (strings, numbers, arrays, objects).
local function json(v)
  local t = type(v)
  if t == "string" then
    return '"' .. v:gsub('[%c"\\/]', function(c)
      if c == '"' or c == "\\" or c == "/" then return "\\" .. c end
      return ("\\u%04x"):format(c:byte())
    end) .. '"'
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "0" end
    return math.type(v) == "integer" and tostring(v) or ("%.9g"):format(v)
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "table" then
    if #v > 0 or next(v) == nil then
      local parts = {}
      for i = 1, #v do parts[i] = json(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys, parts = {}, {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do parts[#parts + 1] = json(k) .. ":" .. json(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "null"
end

local function escape_html(s)
  return (s:gsub("[&<>\"]", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;"}))
end

--- The lanes of a diagram, left to right: application, host, then each
-- provider in the order calls reach it (outer layer first, base last).
-- @tparam table records
-- @tparam[opt] table names party -> name
-- @treturn table array of {id =, label =}
function trace.lanes(records, names)
  local party = namer(names)
  local first, seen, edges = {}, {}, {}
  for i, r in ipairs(records) do
    for _, p in ipairs{r.from, r.to} do
      if not seen[p] then seen[p] = true; first[p] = i end
    end
    if r.kind == "call" then edges[#edges + 1] = {r.from, r.to} end
  end
  -- a party's rank: the longest chain of calls that reaches it (callers left
  -- of callees, so a base provider is right of every layer above it)
  local rank, n = {application = 0, host = 1}, 0
  for p in pairs(seen) do n = n + 1; rank[p] = rank[p] or 2 end
  for _ = 1, n do
    local changed = false
    for _, e in ipairs(edges) do
      if e[2] ~= "application" and e[2] ~= "host" and rank[e[2]] < rank[e[1]] + 1 then
        rank[e[2]] = rank[e[1]] + 1
        changed = true
      end
    end
    if not changed then break end
  end
  local ids = {}
  for p in pairs(seen) do ids[#ids + 1] = p end
  table.sort(ids, function(a, b)
    if rank[a] ~= rank[b] then return rank[a] < rank[b] end
    return first[a] < first[b]
  end)
  local lanes = {}
  for i, p in ipairs(ids) do lanes[i] = {id = p, label = party(p)} end
  return lanes
end

local PAGE = [==[
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>@TITLE@</title>
<style>
  :root { --call: #1f5fbf; --return: #6b6b6b; --upcall: #8a3ab9; --complete: #17813a; --sel: #ffe9a8; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 13px/1.35 system-ui, sans-serif; color: #1d1d1f; background: #fafafa; display: flex; height: 100vh; }
  #main { flex: 1; overflow: auto; }
  header { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid #ddd; padding: 8px 12px;
           display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }
  header h1 { font-size: 15px; margin: 0; }
  header .legend span { margin-right: 10px; white-space: nowrap; }
  header .legend i { display: inline-block; width: 18px; height: 3px; vertical-align: middle; margin-right: 4px; }
  #detail { width: 340px; border-left: 1px solid #ddd; background: #fff; padding: 12px; overflow: auto; }
  #detail h2 { font-size: 14px; margin: 0 0 8px; }
  #detail table { border-collapse: collapse; width: 100%; }
  #detail td { border-top: 1px solid #eee; padding: 3px 4px; vertical-align: top; word-break: break-all; }
  #detail td:first-child { color: #666; width: 80px; }
  svg text { font: 12px system-ui, sans-serif; }
  .lane-head rect { fill: #eef2f8; stroke: #9fb0c8; }
  .lane-head text { font-weight: 600; text-anchor: middle; }
  .lane-line { stroke: #c6cfdb; stroke-dasharray: 2 4; }
  .arrow { cursor: pointer; }
  .arrow line { stroke-width: 1.6; }
  .arrow.kind-call line { stroke: var(--call); }
  .arrow.kind-return line { stroke: var(--return); stroke-dasharray: 5 3; }
  .arrow.kind-upcall line { stroke: var(--upcall); }
  .arrow.kind-complete line { stroke: var(--complete); stroke-width: 2.6; }
  .arrow .hit { fill: transparent; }
  .arrow:hover .hit, .arrow.selected .hit { fill: var(--sel); }
  .arrow .label { text-anchor: middle; paint-order: stroke; stroke: #fafafa; stroke-width: 4px; stroke-linejoin: round; }
  .arrow.failed .label { fill: #b3261e; font-weight: 600; }
  .gutter { fill: #888; font-size: 11px; }
</style>
</head>
<body>
<div id="main">
<header>
  <h1>@TITLE@</h1>
  <label>socket <select id="socket-filter"><option value="">all</option></select></label>
  <span class="legend">
    <span><i style="background:var(--call)"></i>call</span>
    <span><i style="background:var(--return)"></i>return</span>
    <span><i style="background:var(--upcall)"></i>upcall</span>
    <span><i style="background:var(--complete)"></i>completion</span>
  </span>
  <span id="count"></span>
</header>
<svg id="diagram" xmlns="http://www.w3.org/2000/svg"></svg>
</div>
<aside id="detail"><h2>Details</h2><p>Click an arrow.</p></aside>
<script type="application/json" id="trace-lanes">@LANES@</script>
<script type="application/json" id="trace-data">@RECORDS@</script>
<script>
(function () {
  "use strict";
  var lanes = JSON.parse(document.getElementById("trace-lanes").textContent);
  var recs = JSON.parse(document.getElementById("trace-data").textContent);
  var NS = "http://www.w3.org/2000/svg";
  var LANE_W = 190, GUTTER = 110, TOP = 56, ROW = 24;
  var svg = document.getElementById("diagram");
  var filter = document.getElementById("socket-filter");
  var detail = document.getElementById("detail");
  var index = {}, laneOf = {};
  lanes.forEach(function (l, i) { laneOf[l.id] = i; });
  recs.forEach(function (r) { index[r.seq] = r; });

  function el(name, attrs, parent, text) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function laneX(p) { return GUTTER + (laneOf[p] === undefined ? 0 : laneOf[p]) * LANE_W + LANE_W / 2; }
  function labelOf(p) { var i = laneOf[p]; return i === undefined ? p : lanes[i].label; }
  function clip(s, n) { return s.length > n ? s.slice(0, n - 1) + "\u2026" : s; }
  function text(r) {
    if (r.kind === "call") return r.name + "(" + clip(r.args || "", 34) + ")";
    if (r.kind === "return") return (r.errname || "ok") + (r.result ? " " + clip(r.result, 24) : "") + "  " + Math.round(r.us) + " \u00b5s";
    return r.name + (r.args ? " (" + clip(r.args, 28) + ")" : "") + (r.errname ? " " + r.errname : "");
  }

  var sockets = {};
  recs.forEach(function (r) { if (r.socket) sockets[r.socket] = true; });
  Object.keys(sockets).map(Number).sort(function (a, b) { return a - b; }).forEach(function (s) {
    var o = document.createElement("option");
    o.value = String(s); o.textContent = "s" + s;
    filter.appendChild(o);
  });

  function show(seq) {
    var r = index[seq];
    if (!r) return;
    Array.prototype.forEach.call(svg.querySelectorAll(".arrow.selected"), function (a) { a.classList.remove("selected"); });
    var a = svg.querySelector('.arrow[data-seq="' + seq + '"]');
    if (a) a.classList.add("selected");
    var rows = [["record", "#" + r.seq], ["kind", r.kind], ["from", labelOf(r.from)], ["to", labelOf(r.to)],
                ["name", r.name], ["socket", r.socket ? "s" + r.socket : "-"], ["thread", String(r.thread)],
                ["time", (r.t * 1000).toFixed(3) + " ms"], ["depth", String(r.depth)], ["arguments", r.args || "-"],
                ["result", r.result || "-"], ["error", r.error ? r.errname + " (" + r.error + ")" : "none"],
                ["duration", r.kind === "return" ? r.us.toFixed(1) + " \u00b5s" : "-"]];
    if (r.log) rows.push(["log", r.log]);
    detail.innerHTML = "";
    var h = document.createElement("h2");
    h.textContent = r.kind + ": " + r.name;
    detail.appendChild(h);
    var table = document.createElement("table");
    table.id = "detail-table";
    rows.forEach(function (kv) {
      var tr = document.createElement("tr");
      tr.dataset.field = kv[0];
      var a1 = document.createElement("td"); a1.textContent = kv[0];
      var a2 = document.createElement("td"); a2.textContent = kv[1];
      tr.appendChild(a1); tr.appendChild(a2); table.appendChild(tr);
    });
    detail.appendChild(table);
    detail.dataset.seq = String(seq);
  }

  function draw() {
    var want = filter.value === "" ? null : Number(filter.value);
    var shown = recs.filter(function (r) { return want === null || r.socket === want; });
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var width = GUTTER + lanes.length * LANE_W + 20, height = TOP + shown.length * ROW + 30;
    svg.setAttribute("width", width); svg.setAttribute("height", height);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    var defs = el("defs", {}, svg);
    ["call", "return", "upcall", "complete"].forEach(function (k) {
      var m = el("marker", {id: "head-" + k, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
                            orient: "auto-start-reverse"}, defs);
      el("path", {d: "M0,0 L10,5 L0,10 z", style: "fill: var(--" + k + ")"}, m);
    });
    lanes.forEach(function (l, i) {
      var g = el("g", {"class": "lane", "data-party": l.id}, svg);
      var x = GUTTER + i * LANE_W + LANE_W / 2;
      el("line", {"class": "lane-line", x1: x, y1: TOP - 10, x2: x, y2: height - 10}, g);
      var head = el("g", {"class": "lane-head"}, g);
      el("rect", {x: x - LANE_W / 2 + 8, y: 8, width: LANE_W - 16, height: 30, rx: 5}, head);
      el("text", {x: x, y: 28}, head, clip(l.label, 26));
    });
    shown.forEach(function (r, i) {
      var y = TOP + i * ROW + ROW / 2;
      var x1 = laneX(r.from), x2 = laneX(r.to);
      var cls = "arrow kind-" + r.kind + (r.error ? " failed" : "");
      var g = el("g", {"class": cls, "data-seq": r.seq, "data-socket": r.socket, "data-kind": r.kind,
                       "data-from": r.from, "data-to": r.to}, svg);
      el("rect", {"class": "hit", x: 0, y: y - ROW / 2, width: width, height: ROW}, g);
      el("text", {"class": "gutter", x: 6, y: y + 4}, g, (r.t * 1000).toFixed(2) + " ms  t" + r.thread);
      el("line", {x1: x1, y1: y + 5, x2: x2 + (x2 > x1 ? -2 : 2), y2: y + 5, "marker-end": "url(#head-" + r.kind + ")"}, g);
      el("text", {"class": "label", x: (x1 + x2) / 2, y: y}, g, text(r));
      el("title", {}, g, r.kind + " " + r.name);
      g.addEventListener("click", function () { show(r.seq); history.replaceState(null, "", "#select=" + r.seq); });
    });
    document.getElementById("count").textContent = shown.length + " of " + recs.length + " records";
    document.body.dataset.arrows = String(shown.length);
    document.body.dataset.lanes = String(lanes.length);
    if (detail.dataset.seq) { var a = svg.querySelector('.arrow[data-seq="' + detail.dataset.seq + '"]'); if (a) a.classList.add("selected"); }
  }

  filter.addEventListener("change", draw);
  var hash = {};
  location.hash.replace(/^#/, "").split("&").forEach(function (kv) { var p = kv.split("="); if (p[0]) hash[p[0]] = p[1]; });
  if (hash.socket && sockets[hash.socket]) filter.value = hash.socket;
  draw();
  if (hash.select) show(Number(hash.select));
  document.body.dataset.ready = "1";
})();
</script>
</body>
</html>
]==]

--- A self-contained HTML page (no network, no external scripts) drawing the
-- records as a sequence diagram: a lane per party, an arrow per record
-- (completions green), a socket filter and a detail panel on click.  The URL
-- fragment `#socket=N` filters and `#select=SEQ` opens a record's details.
-- @tparam[opt] table records (default: trace.records())
-- @tparam[opt] table opts {title =, names = {[party] = label}}
-- @treturn string
function trace.html(records, opts)
  records = records or trace.records()
  opts = opts or {}
  local title = escape_html(opts.title or "lwsp trace")
  local page = PAGE:gsub("@TITLE@", function() return title end)
  page = page:gsub("@LANES@", function() return json(trace.lanes(records, opts.names)) end)
  page = page:gsub("@RECORDS@", function() return json(records) end)
  return page
end

--- Writes trace.html(records, opts) to a file.
function trace.write_html(file, records, opts)
  local f = assert(io.open(file, "w"))
  f:write(trace.html(records, opts))
  f:close()
  return file
end

-- One flat JSON object as the trace writes it: string and number values.
local function parse_flat(line)
  local r, i = {}, line:find("{", 1, true)
  if not i then return nil end
  i = i + 1
  local unesc = {['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t"}
  while true do
    i = line:find("%S", i)
    if not i then return nil end
    local ch = line:sub(i, i)
    if ch == "}" then return r end
    if ch == "," then i = i + 1; goto continue end
    do
      local key, after = line:match('^"([^"]*)"%s*:%s*()', i)
      if not key then return nil end
      i = after
      if line:sub(i, i) == '"' then
        local parts, j = {}, i + 1
        while true do
          local c = line:sub(j, j)
          if c == "" then return nil end
          if c == '"' then break end
          if c == "\\" then
            local e = line:sub(j + 1, j + 1)
            if e == "u" then
              parts[#parts + 1] = utf8.char(tonumber(line:sub(j + 2, j + 5), 16) or 63)
              j = j + 6
            else
              parts[#parts + 1] = unesc[e] or e
              j = j + 2
            end
          else
            parts[#parts + 1] = c
            j = j + 1
          end
        end
        r[key] = table.concat(parts)
        i = j + 1
      else
        local num, after2 = line:match("^(-?[%d.eE+-]+)()", i)
        if not num then return nil end
        r[key] = math.tointeger(tonumber(num)) or tonumber(num)
        i = after2
      end
    end
    ::continue::
  end
end

--- Reads a JSON Lines trace file (trace.start(file)) back into records.
-- @tparam string file
-- @treturn table records (errname nil where the file has "")
function trace.read(file)
  local recs = {}
  for line in io.lines(file) do
    if line:match("%S") then
      local r = assert(parse_flat(line), "not a trace record: " .. line)
      if r.errname == "" then r.errname = nil end
      recs[#recs + 1] = r
    end
  end
  return recs
end

return trace
