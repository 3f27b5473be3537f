--- wsp.preload: runs a real program with its inet sockets served by a chain
-- of Lua layers (bin/lwsp-run ... -- PROGRAM ARGS, docs/preload.md).
-- The chain is described in the environment (LWSP_PRELOAD_CHAIN), so a
-- program that execs another gets the chain again through LD_PRELOAD.
-- @module wsp.preload
local M = {}

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function absolute(p)
  if p:sub(1, 1) == "/" then return p end
  return (os.getenv("PWD") or io.popen("pwd"):read("l")) .. "/" .. p
end

--- The environment that serves a program through the chain.
-- @tparam table o {root =, layers = {paths, top first}, base = "native" or path, trace = prefix?, registry = dir}
-- @treturn table name -> value
function M.environment(o)
  local lwsp = require "lwsp"
  local items = {}
  for _, l in ipairs(o.layers) do items[#items + 1] = ("layer=%s=%s"):format(lwsp.guid(), absolute(l)) end
  if o.base == "native" then items[#items + 1] = "native==" else
    items[#items + 1] = ("base=%s=%s"):format(lwsp.guid(), absolute(o.base))
  end
  -- ($LWSP_PRELOAD_LIB: another build, for example under AddressSanitizer;
  -- a preload already there, such as the sanitizer's runtime, stays first)
  local lib = os.getenv("LWSP_PRELOAD_LIB") or absolute(o.root .. "/build/liblwsp_preload.so")
  local pre = os.getenv("LD_PRELOAD")
  local env = {
    LWSP_PRELOAD_CHAIN = table.concat(items, ";"),
    LWSP_PRELOAD_ROOT = absolute(o.root),
    LWSP_REGISTRY = o.registry,
    LD_PRELOAD = pre and pre ~= "" and (pre .. " " .. lib) or lib,
  }
  if o.trace then env.LWSP_PRELOAD_TRACE = absolute(o.trace) end
  return env
end

--- Merges the per-process trace files PREFIX.<pid>.jsonl into PREFIX.jsonl
-- and writes PREFIX.html.
-- @tparam string prefix
-- @tparam string title
-- @treturn integer records
function M.merge_trace(prefix, title)
  local trace = require "wsp.trace"
  local dir, base = prefix:match("^(.*)/([^/]*)$")
  local p = io.popen("ls " .. quote(dir) .. " 2>/dev/null")
  local records, out = {}, assert(io.open(prefix .. ".jsonl", "w"))
  for name in p:lines() do
    if name:sub(1, #base + 1) == base .. "." and name:match("%.%d+%.jsonl$") then
      local f = dir .. "/" .. name
      for line in io.lines(f) do out:write(line, "\n") end
      for _, r in ipairs(trace.read(f)) do records[#records + 1] = r end
      os.remove(f)
    end
  end
  p:close()
  out:close()
  trace.write_html(prefix .. ".html", records, {title = title})
  return #records
end

--- Runs the program (argv) with the chain; returns its exit status.
-- @tparam table o as for environment, plus argv = {program, args...}
-- @treturn integer
function M.run(o)
  local tmp = os.tmpname()
  os.remove(tmp)
  os.execute("mkdir -p " .. quote(tmp .. "/registry"))
  o.registry = tmp .. "/registry"
  local env = M.environment(o)
  local parts = {"env"}
  for k, v in pairs(env) do parts[#parts + 1] = quote(k .. "=" .. v) end
  for _, a in ipairs(o.argv) do parts[#parts + 1] = quote(a) end
  local ok, how, code = os.execute(table.concat(parts, " "))
  if o.trace then
    local n = M.merge_trace(absolute(o.trace), "lwsp: " .. table.concat(o.argv, " "))
    io.stderr:write(("lwsp-run: trace: %d records in %s.jsonl, diagram in %s.html\n"):format(n, o.trace, o.trace))
  end
  os.execute("rm -rf " .. quote(tmp))
  if ok then return 0 end
  return how == "exit" and code or 128 + (code or 0)
end

return M
