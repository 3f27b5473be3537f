-- The main job, for now: a Lua provider (examples/traced.lua over memnet)
-- loaded by lwsp's own ws2_32 and driven the way an application drives
-- Winsock.  Each application call is printed with its result, and under it
-- every WSP call the provider received.
local lwsp = require "lwsp"
local wsp = require "wsp"
local host = require "wsp.host"

local dir = os.getenv("LWSP_DEMO_DIR") or os.tmpname()
os.remove(dir)
os.execute("mkdir -p '" .. dir .. "'")
lwsp.registry.set_root(dir .. "/registry")
lwsp.set_log(dir .. "/lwsp.log")

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
if here:sub(1, 1) ~= "/" then here = (os.getenv("PWD") or ".") .. "/" .. here end
local r = host.install_lua{script = here .. "/traced.lua", name = "traced memnet"}

local seq = select(2, lwsp.log_lines())
local function flush()
  local lines
  lines, seq = lwsp.log_lines(seq)
  for _, l in ipairs(lines) do print("      " .. l:gsub("^lwsp%[provider%] ", "provider: ")) end
end

local function show(v)
  if type(v) == "table" then return lwsp.format_address(v) end
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

local function call(label, ...)
  local res = table.pack(...)
  local text
  if res[1] == nil and res.n >= 2 then
    text = "error " .. tostring(res[2])
  else
    local parts = {}
    for i = 1, res.n do parts[i] = show(res[i]) end
    text = table.concat(parts, ", ")
  end
  print(("%-44s -> %s"):format(label, text))
  flush()
  return ...
end

print(("lwsp %s: provider %s (%s), catalog entries %d (TCP) and %d (UDP)")
  :format(lwsp.version, r.guid, here .. "/traced.lua", r.tcp, r.udp))
print(("provider DLL: %s"):format(lwsp.path()))
print()

local l = call("socket(AF_INET, SOCK_STREAM)", host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
call("bind(listener, 127.0.0.1:7000)", host.bind(l, "127.0.0.1:7000"))
call("listen(listener, 5)", host.listen(l, 5))
local c = call("socket(AF_INET, SOCK_STREAM)", host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
call("connect(client, 127.0.0.1:7000)", host.connect(c, "127.0.0.1:7000"))
local a = call("accept(listener)", host.accept(l))
call('send(client, "hello, provider")', host.send(c, "hello, provider"))
call("recv(server, 64)", host.recv(a, 64))
call('send(server, "hello, application")', host.send(a, "hello, application"))
call("recv(client, 64)", host.recv(c, 64))
call("ioctl(client, FIONBIO, 1)", host.ioctl(c, wsp.FIONBIO, 1))
call("recv(client, 64) again, non-blocking", host.recv(c, 64))
call("connect(other, 127.0.0.1:9)", host.connect(call("socket(AF_INET, SOCK_STREAM)",
  host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp)), "127.0.0.1:9"))
local u = call("socket(AF_INET, SOCK_DGRAM)", host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp))
call("bind(udp, 127.0.0.1:5353)", host.bind(u, "127.0.0.1:5353"))
call('sendto(client-udp, "datagram", 127.0.0.1:5353)', host.sendto(
  host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, r.udp), "datagram", "127.0.0.1:5353"))
call("recvfrom(udp, 64)", host.recvfrom(u, 64))
call("close(client)", host.close(c))
call("recv(server, 64) after the client closed", host.recv(a, 64))
call("WSACleanup", host.cleanup())
print()
print("every line under a call is one WSP entry the Lua provider handled; log: " .. dir .. "/lwsp.log")
