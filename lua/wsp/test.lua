--- wsp.test: busted specs of one's own providers.
-- One `wsp.test.new()` per spec file gives a private registry and log in a
-- temporary folder, installs scripts and chains over memnet or the native
-- base, makes connected pairs, captures the providers' log lines and traces,
-- and on `done()` checks that nothing was left behind:
--
--     local T = require("wsp.test").new()
--     describe("my layer", function()
--       after_each(function() T:done() end)
--       it("passes data", function()
--         local top = T:chain{"my_layer.lua", base = "memnet"}
--         local c, a = T:pair(top)
--         assert(T.host.send(c, "hi"))
--         assert.equal("hi", (T.host.recv(a, 10)))
--       end)
--     end)
--
-- Run a folder of such specs with `lwsp-spec [FOLDER]` (it finds lwsp from the
-- checkout or the installed rock), or with busted after `luarocks make`.
-- Nothing is written outside the temporary folder (`T.dir`), which is removed
-- when the Lua state closes.
-- @module wsp.test
local lwsp = require "lwsp"
local wsp = require "wsp"
local host = require "wsp.host"
local trace = require "wsp.trace"

local test = {}
local T = {}
T.__index = T

local windows = package.config:sub(1, 1) == "\\"
local sep = windows and "\\" or "/"

local function dirname(p) return p:match("^(.*)[/\\][^/\\]*$") or "." end
local function exists(p) local f = io.open(p) if f then f:close() return true end return false end

--- lwsp's examples folder (memnet.lua, passthrough.lua, ...): beside the
-- checkout's build, or in the installed rock.
-- @treturn string|nil the folder, or nil and why
function test.examples()
  local env = os.getenv("LWSP_EXAMPLES")
  if env and exists(env .. sep .. "memnet.lua") then return env end
  local lib = dirname(lwsp.path())
  local candidates = {
    lib .. sep .. ".." .. sep .. "examples",                               -- checkout: build/lwsp.so
    lib .. "/../../luarocks/rocks-5.4/lwsp/scm-1/examples",                -- rock: lib/lua/5.4/lwsp.so
  }
  for _, d in ipairs(candidates) do
    if exists(d .. sep .. "memnet.lua") then return d end
  end
  return nil, "lwsp's examples folder (memnet.lua) was not found beside " .. lib .. "; set LWSP_EXAMPLES"
end

--- A new fixture: a private registry and log in a fresh temporary folder.
-- Call it once per spec file (the registry is per process: the last `new()`
-- wins), at the top of the file.
-- @tparam[opt] table o {dir = a folder to use instead of a temporary one}
-- @treturn table the fixture (`T.host`, `T.wsp`, `T.lwsp`, `T.dir`, `T.log`)
function test.new(o)
  o = o or {}
  local self = setmetatable({host = host, wsp = wsp, lwsp = lwsp, installed = {}, count = 0}, T)
  local dir = o.dir
  if not dir and windows then
    dir = (os.getenv("TEMP") or "C:\\Windows\\Temp") .. ("\\lwsp-test-%d-%d"):format(os.time(), math.random(1e6))
  elseif not dir then
    dir = os.tmpname()
    os.remove(dir)
  end
  self.dir = dir
  if windows then          -- the registry is HKLM there; the folder holds scripts and the log
    local ok, lfs = pcall(require, "lfs")
    if ok then lfs.mkdir(dir) else os.execute(('mkdir "%s" 2>nul'):format(dir)) end
  else
    assert(lwsp.registry.set_root(dir .. "/registry"))
  end
  if not o.dir and not windows then
    -- the temporary folder goes when the Lua state closes (busted's exit)
    self.sentinel = setmetatable({}, {__gc = function()
      os.execute(("rm -rf '%s'"):format(dir:gsub("'", "'\\''")))
    end})
  end
  self.log = dir .. sep .. "lwsp.log"
  lwsp.set_log(self.log)
  self.mark = select(2, lwsp.log_lines())
  return self
end

--- Writes `source` to a file in the fixture's folder.
-- @tparam string source Lua source of a provider
-- @tparam[opt] string name file name (default providerN.lua)
-- @treturn string its absolute path
function T:write(source, name)
  self.count = self.count + 1
  local path = self.dir .. sep .. (name or ("provider%d.lua"):format(self.count))
  local f = assert(io.open(path, "w"))
  f:write(source)
  f:close()
  return path
end

--- A provider script's absolute path: `src` is a path (made absolute), Lua
-- source text (written to a file in the fixture's folder), or "memnet".
-- @tparam string src
-- @treturn string
function T:script(src)
  if type(src) ~= "string" then error("a provider is a script path or Lua source text, got " .. type(src), 3) end
  if src:find("\n", 1, true) then return self:write(src) end
  if src == "memnet" then return assert(test.examples()) .. sep .. "memnet.lua" end
  return host.absolute(src)
end

local function keep(self, r, name)
  r.name = name
  self.installed[#self.installed + 1] = r
  return r
end
local function basename(p) return (p:match("([^/\\]+)$") or p):gsub("%.lua$", "") end

--- Installs a Lua base provider (script path, source text, or "memnet").
-- @tparam string src
-- @tparam[opt] table o options of `host.install_lua` (`config`, `entries`, `name`)
-- @treturn table what `host.install_lua` returned (`.tcp`, `.udp`)
function T:provider(src, o)
  local opts = {}
  for k, v in pairs(o or {}) do opts[k] = v end
  opts.script = self:script(src)
  return keep(self, host.install_lua(opts), opts.name or basename(opts.script))
end

--- Installs the native base provider (the operating system's sockets).
-- @treturn table `.tcp`, `.udp`, `.tcp6`, `.udp6`
function T:native()
  return keep(self, host.install_native(), "native")
end

--- Installs memnet (lwsp's in-process network, a Lua base provider).
-- @treturn table `.tcp`, `.udp`
function T:memnet()
  return self:provider("memnet", {name = "memnet"})
end

--- Installs a Lua layer over an installation.
-- @tparam string src script path or source text
-- @tparam table over what `native`, `memnet`, `provider` or `layer` returned
-- @tparam[opt] table o options of `host.install_layered` (`config`, `name`)
-- @treturn table `.tcp`, `.udp`, ... of the chain through the layer
function T:layer(src, over, o)
  local opts = {}
  for k, v in pairs(o or {}) do opts[k] = v end
  opts.script, opts.over = self:script(src), over
  return keep(self, host.install_layered(opts), opts.name or basename(opts.script))
end

--- Installs a chain: layers (top first) over a base.
-- @tparam table o {layer, ..., base = "native"|"memnet"|script|installation, config = {[i] = config of layer i}}
-- @treturn table the top of the chain; `.base` is the base installation
function T:chain(o)
  local base = o.base or "native"
  if base == "native" then base = self:native()
  elseif base == "memnet" then base = self:memnet()
  elseif type(base) == "string" then base = self:provider(base) end
  local top = base
  for k = #o, 1, -1 do
    top = self:layer(o[k], top, {config = o.config and o.config[k]})
  end
  top.base = base
  return top
end

--- Like `assert` for a host call's results (`nil, "WSAENAME: text", code`),
-- but a failure's message ends with the providers' log lines written since
-- the fixture's mark, where a script's own error shows.
-- @return the call's results, on success
function T:check(...)
  local ok, msg = ...
  if ok ~= nil then return ... end
  local lines = self:logs()
  local text = tostring(msg)
  if #lines > 0 then text = text .. "\nthe providers' log:\n  " .. table.concat(lines, "\n  ") end
  error(text, 2)
end

--- A connected TCP pair: a listener on `server_side` (default: the same
-- installation), a client through `client_side`, accepted.
-- @tparam table client_side an installation (its `.tcp` is used)
-- @tparam[opt] table server_side an installation (default `client_side.base` or `client_side`)
-- @treturn integer,integer client and server sockets
function T:pair(client_side, server_side)
  server_side = server_side or client_side.base or client_side
  local l = self:check(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, server_side.tcp))
  self:check(host.bind(l, "127.0.0.1:0"))
  self:check(host.listen(l, 8))
  local c = self:check(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, client_side.tcp))
  local ok, err = host.connect(c, self:check(host.getsockname(l)))
  if not ok then host.close(c); host.close(l); error("connect: " .. tostring(err), 2) end
  local a, aerr = host.accept(l)
  host.close(l)
  if not a then host.close(c); error("accept: " .. tostring(aerr), 2) end
  return c, a
end

--- Two UDP sockets: one bound on `server_side`, one on `client_side`.
-- @treturn integer,integer,table client, server, the server's address
function T:udp_pair(client_side, server_side)
  server_side = server_side or client_side.base or client_side
  local srv = self:check(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, server_side.udp))
  self:check(host.bind(srv, "127.0.0.1:0"))
  local c = self:check(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, client_side.udp))
  return c, srv, self:check(host.getsockname(srv))
end

local SERVER = [[
import socket, sys, threading
kind, mode = sys.argv[1], sys.argv[2]
if kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
    print("port", s.getsockname()[1], flush=True)
    while True:
        d, a = s.recvfrom(65536); s.sendto(d, a)
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
print("port", s.getsockname()[1], flush=True)
def serve(c):
    with c:
        while True:
            d = c.recv(65536)
            if not d: break
            c.sendall(d)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
]]

--- Starts a local server on 127.0.0.1 (a process of its own, python3):
-- "tcp" or "udp" echo, or "http" serving `dir` (`python3 -m http.server`).
-- It is stopped by `done()`.
-- @tparam string kind "tcp", "udp" or "http"
-- @tparam[opt] string dir the folder an HTTP server serves (default the fixture's folder)
-- @treturn table {port =, address = "127.0.0.1:port", stop = function}
function T:server(kind, dir)
  local util = require "wsp.util"
  local srv
  if kind == "http" then
    srv = util.http_server(dir or self.dir)
  elseif kind == "tcp" or kind == "udp" then
    local script = self:write(SERVER, "echo_server.py")
    srv = util.spawn(("python3 -u %q %s echo"):format(script, kind))
    srv.port = assert(tonumber((srv.first or ""):match("port (%d+)")), "the echo server did not start")
  else
    error("server: kind is \"tcp\", \"udp\" or \"http\", not " .. tostring(kind), 2)
  end
  srv.address = "127.0.0.1:" .. srv.port
  self.servers = self.servers or {}
  self.servers[#self.servers + 1] = srv
  return srv
end

--- Log lines written since the fixture was made or last `done()`, or since `mark`.
-- @tparam[opt] integer mark a position from `T:log_mark()`
-- @treturn table lines ("lwsp[name {GUID}] text")
function T:logs(mark)
  return (lwsp.log_lines(mark or self.mark))
end

--- The current position in the log (for `T:logs(mark)`).
-- @treturn integer
function T:log_mark()
  return select(2, lwsp.log_lines())
end

--- The first log line since the fixture's mark that contains `text` (plain).
-- @tparam string text
-- @treturn string|nil the line
function T:find_log(text)
  for _, line in ipairs(self:logs()) do
    if line:find(text, 1, true) then return line end
  end
  return nil
end

--- Runs `fn` with tracing on.
-- @tparam function fn
-- @return the records (see docs/api.md, Tracing), the text tree, then fn's results
function T:trace(fn)
  local names = {}
  for _, r in ipairs(self.installed) do names[r.guid] = r.name end
  trace.start()
  local res = table.pack(pcall(fn))
  trace.stop()
  local records = trace.records()
  if not res[1] then error(res[2], 0) end
  return records, trace.text(records, names), table.unpack(res, 2, res.n)
end

--- Ends a spec: checks that no socket, pending operation or extra thread
-- reference is left in any Lua provider installed through the fixture, then
-- unloads every provider (WSACleanup), removes the installs and stops the
-- servers.  Raises, after cleaning up, naming what was left.
function T:done()
  local left = {}
  for _, r in ipairs(self.installed) do
    if not r.native then
      local st = host.bench_instance(r.guid)
      if st and st.sockets > 0 then
        left[#left + 1] = ("%d socket(s) still open in %s"):format(st.sockets, r.name or r.guid)
      end
      if st and st.pending > 0 then
        left[#left + 1] = ("%d operation(s) still pending in %s"):format(st.pending, r.name or r.guid)
      end
    end
  end
  if host.thread_refs() > 1 then
    left[#left + 1] = ("%d reference(s) to this thread still held (a completion not delivered?)"):format(host.thread_refs() - 1)
  end
  host.cleanup()
  for k = #self.installed, 1, -1 do host.uninstall_lua(self.installed[k]) end
  self.installed = {}
  for _, srv in ipairs(self.servers or {}) do srv.stop() end
  self.servers = nil
  self.mark = self:log_mark()
  if #left > 0 then error("left behind: " .. table.concat(left, "; "), 2) end
end

return test
