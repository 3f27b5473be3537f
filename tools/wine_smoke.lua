-- Under Wine, against the mingw-w64 build: lwsp.dll loaded by lua.exe, the
-- provider script registered in HKLM, memnet driven through lwsp's host with
-- a blocking exchange and an overlapped receive completed by event.
local lwsp = require "lwsp"
local wsp = require "wsp"
local host = require "wsp.host"
local root = assert(arg[1], "usage: wine_smoke.lua <repo as a Windows path>")
print("lwsp " .. lwsp.version .. " from " .. lwsp.path())
local r = host.install_lua{script = root .. "\\examples\\memnet.lua"}
print("registered " .. r.guid .. " -> " .. assert(lwsp.registry.get(r.guid)) .. " in " .. lwsp.registry.where())
local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
assert(host.bind(l, "127.0.0.1:7000"))
assert(host.listen(l, 4))
local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
assert(host.connect(c, "127.0.0.1:7000"))
local a = assert(host.accept(l))
assert(host.send(c, "hello from Wine") == 15)
assert(host.recv(a, 100) == "hello from Wine")
local ev = host.create_event()
local ov = host.overlapped(ev)
local ok, msg = host.wsarecv(a, 100, ov)
assert(ok == nil and msg:find("WSA_IO_PENDING"), msg)
host.send(c, "overlapped")
assert(host.wait({ev}, false, 2000) == 1)
assert(ov.data == "overlapped")
host.cleanup()
lwsp.registry.remove(r.guid)
print("wine smoke: memnet carried data both ways, overlapped receive completed by event")
