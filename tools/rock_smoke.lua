-- Run against a luarocks tree with only the tree on the paths (no LUA_PATH):
-- the provider state must find wsp beside the installed lwsp module.
local lwsp = require "lwsp"
local host = require "wsp.host"
local wsp = require "wsp"
local tree = assert(arg[1], "usage: rock_smoke.lua TREE")
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p '" .. dir .. "'")
lwsp.registry.set_root(dir)
local examples = tree .. "/lib/luarocks/rocks-5.4/lwsp/scm-1/examples"
local r = host.install_lua{script = examples .. "/memnet.lua"}
assert(lwsp.path():find(tree, 1, true) == 1, "lwsp loaded from outside the tree: " .. lwsp.path())
local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
assert(host.bind(l, "127.0.0.1:0"))
assert(host.listen(l, 1))
local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, r.tcp))
assert(host.connect(c, host.getsockname(l)))
local a = assert(host.accept(l))
assert(host.send(c, "installed") == 9)
assert(host.recv(a, 64) == "installed")
host.cleanup()
print("rock smoke: memnet from the installed tree carried data")
