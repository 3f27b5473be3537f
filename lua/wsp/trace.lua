--- wsp.trace: lwsp's trace of every crossing, and a readable view of it.
-- `trace.start([file])` begins recording (JSON Lines into file if given),
-- `trace.stop()` ends it, `trace.records()` returns the records:
-- {seq, t, thread, kind = "call"|"return"|"upcall"|"complete", from, to,
-- name, socket, error, errname, us, depth}.
-- @module wsp.trace
local lwsp = require "lwsp"

local trace = {}
trace.start, trace.stop, trace.records = lwsp.trace.start, lwsp.trace.stop, lwsp.trace.records

local function party(p)
  return p:match("^{") and ("provider " .. p:sub(1, 9) .. "}") or p
end

--- An indented call tree per thread, upcalls and completions marked.
-- @tparam[opt] table records (default: trace.records())
-- @treturn string
function trace.text(records)
  records = records or trace.records()
  local by, order = {}, {}
  for _, r in ipairs(records) do
    if not by[r.thread] then by[r.thread] = {}; order[#order + 1] = r.thread end
    local lines = by[r.thread]
    local pad = ("  "):rep(r.depth)
    local sock = r.socket ~= 0 and (" s%d"):format(r.socket) or ""
    if r.kind == "call" then
      lines[#lines + 1] = ("%s%s -> %s: %s%s"):format(pad, party(r.from), party(r.to), r.name, sock)
    elseif r.kind == "return" then
      lines[#lines + 1] = ("%s<- %s %s (%.0f us)"):format(pad, r.name, r.errname or "ok", r.us)
    elseif r.kind == "upcall" then
      lines[#lines + 1] = ("%s^ upcall %s from %s%s"):format(pad, r.name, party(r.from), sock)
    else
      lines[#lines + 1] = ("%s* %s%s%s"):format(pad, r.name, sock, r.errname and (" " .. r.errname) or "")
    end
  end
  local out = {}
  for _, th in ipairs(order) do
    out[#out + 1] = ("thread %d"):format(th)
    for _, l in ipairs(by[th]) do out[#out + 1] = "  " .. l end
  end
  return table.concat(out, "\n")
end

return trace
