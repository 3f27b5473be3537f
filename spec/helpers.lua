-- Shared fixtures: a private registry and log per run, provider scripts
-- written to temporary files, and log inspection.
local lwsp = require "lwsp"
local wsp = require "wsp"
local host = require "wsp.host"

local H = {lwsp = lwsp, wsp = wsp, host = host}

-- The suite runs natively and, against the Windows build, under Wine
-- (make wine-test): there the registry is HKLM, paths are Windows paths, and
-- the C modules are DLLs.
H.windows = package.config:sub(1, 1) == "\\"
H.ext = H.windows and ".dll" or ".so"

local tmp
if H.windows then
  local lfs = require "lfs"
  tmp = (os.getenv("TEMP") or "C:\\windows\\temp") .. ("\\lwsp-spec-%d-%d"):format(os.time(), math.random(1e6))
  assert(lfs.mkdir(tmp))
  H.root = assert(lfs.currentdir())
else
  tmp = os.tmpname()
  os.remove(tmp)
  assert(lwsp.registry.set_root(tmp .. "/registry"))
  H.root = (os.getenv("PWD") or io.popen("pwd"):read("l"))
end
H.tmp = tmp
H.logfile = tmp .. "/lwsp.log"
lwsp.set_log(H.logfile)
local root = H.root

--- Whether a path is absolute here (/x, or C:\x and C:/x on Windows).
function H.absolute(p)
  return p:sub(1, 1) == "/" or (H.windows and p:match("^%a:[\\/]") ~= nil)
end

--- Creates a directory and its parents, with LuaFileSystem (busted's own
-- dependency), so no process is started.
function H.mkdir(dir)
  local lfs = require "lfs"
  local sep = H.windows and "\\" or "/"
  local path = dir:sub(1, 1) == "/" and "" or nil
  for part in dir:gmatch("[^/\\]+") do
    path = path and path .. sep .. part or part
    if not path:match("^%a:$") then lfs.mkdir(path) end
  end
  assert(lfs.attributes(dir, "mode") == "directory", "cannot create " .. dir)
end

--- Runs bin/lwsp-run (or another command line starting with it) from the
-- project's root with the log off, for at most 5 minutes (POSIX): its output
-- (stdout and stderr) and exit status.  On Windows through cmd.exe, with the lua.exe in $LWSP_LUA_EXE.
function H.run(cmdline)
  local line
  if H.windows then
    local lua = assert(os.getenv("LWSP_LUA_EXE"), "LWSP_LUA_EXE: the lua.exe that runs bin/lwsp-run")
    cmdline = cmdline:gsub("^bin/lwsp%-run", '"' .. lua .. '" bin\\lwsp-run')
    line = ('cd /d "%s" && set LWSP_LOG=off&& %s 2>&1'):format(root, cmdline)
  else
    -- (bounded: a scenario that hangs fails its spec instead of stopping the suite)
    line = ("cd '%s' && LWSP_LOG=off timeout -k 5 300 %s 2>&1"):format(root, cmdline)
  end
  local p = assert(io.popen(line))
  local out = p:read("a"):gsub("\r\n", "\n")
  local _, _, code = p:close()
  return out, code
end

local count = 0
--- Writes a provider script to a temporary file and returns its absolute path.
function H.script(source)
  count = count + 1
  local path = ("%s/provider%d.lua"):format(tmp, count)
  local f = assert(io.open(path, "w"))
  f:write(source)
  f:close()
  return path
end

local installed = {}
--- Installs a Lua provider from source text or an examples/ path.
function H.provider(src, opts)
  opts = opts or {}
  local path = src:match("\n") and H.script(src) or (H.absolute(src) and src or root .. "/" .. src)
  opts.script = path
  local r = host.install_lua(opts)
  installed[#installed + 1] = r
  return r
end

--- The base provider layers go over: the native one (real sockets; Winsock
-- on Windows).
function H.base()
  local r = host.install_native()
  installed[#installed + 1] = r
  return r
end

--- Installs a Lua layer (host.install_layered), removed again by H.reset.
function H.layered(o)
  local r = host.install_layered(o)
  installed[#installed + 1] = r
  return r
end

--- Unloads every provider and removes what H.provider installed.
function H.reset()
  host.cleanup()
  for _, r in ipairs(installed) do host.uninstall_lua(r) end
  installed = {}
end

--- The current position in the log.
function H.mark()
  return select(2, lwsp.log_lines())
end

--- Log lines written since mark.
function H.logs(since)
  return (lwsp.log_lines(since))
end

--- What arrives on s (up to n bytes) within the seconds given: a failing
-- spec ends instead of waiting forever.
function H.recv_within(s, n, seconds)
  local parts, got, deadline = {}, 0, os.time() + seconds
  while got < n and os.time() <= deadline do
    if host.select({s}, nil, nil, 1) > 0 then
      local data = assert(host.recv(s, 65536))
      if data == "" then break end
      parts[#parts + 1] = data
      got = got + #data
    end
  end
  return table.concat(parts)
end

--- The first log line since mark matching a Lua pattern, or nil.
function H.find_log(since, pattern, plain)
  for _, line in ipairs(H.logs(since)) do
    if line:find(pattern, 1, plain) then return line end
  end
  return nil
end

--- Call records written by spec/providers/recorder.lua since mark.
function H.calls(since, name)
  local out = {}
  for _, line in ipairs(H.logs(since)) do
    local payload = line:match("CALL (.*)$")
    if payload then
      local rec = assert(load("return " .. payload))()
      if not name or rec[1] == name then out[#out + 1] = rec end
    end
  end
  return out
end

--- Asserts a failure triple: nil, "NAME: text", code.
function H.fails_with(name, ok, msg, code)
  assert(ok == nil, "expected a failure, got " .. tostring(ok))
  assert(code == wsp[name], ("expected %s (%s), got %s (%s)"):format(name, tostring(wsp[name]), tostring(code), tostring(msg)))
  assert(msg:find(name, 1, true) == 1, "message should start with the error name: " .. tostring(msg))
  return true
end

--- A connected TCP pair over a memnet installation: client, accepted, listener.
function H.memnet_pair(r)
  local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  assert(host.bind(l, "127.0.0.1:0"))
  assert(host.listen(l, 64))
  local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
  assert(host.connect(c, host.getsockname(l)))
  local a = assert(host.accept(l))
  return c, a, l
end

--- Waits (alertably, up to 5 s) until the recording completion routine has
-- run, and returns what it recorded.
function H.await_completions()
  for _ = 1, 50 do
    host.sleep(100, true)
    local done = host.completions()
    if #done > 0 then return done end
  end
  return {}
end

return H
