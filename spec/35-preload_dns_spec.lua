-- Name resolution through the chain (src/preload/preload_dns.c): a
-- program's getaddrinfo asks the nameservers of resolv.conf with sockets the
-- chain serves, so a layer sees each query and may redirect or refuse it.
-- The nameserver here is spec/tools/dns_server.py on a port of its own; the
-- program is told "nameserver 127.0.0.1" (LWSP_RESOLV_CONF) and a layer of
-- the spec's sends what goes to port 53 there.
-- posix: LD_PRELOAD and a Linux loader; subprocess: real programs.
local H = require "helpers"
local util = require "wsp.util"

local root = H.root
local run_tool = root .. "/bin/lwsp-run"
local passthrough = root .. "/examples/passthrough.lua"
local tmp = H.tmp .. "/preload_dns"
os.execute("mkdir -p '" .. tmp .. "'")

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- A layer that sends what goes to port 53 to the spec's nameserver (and
-- logs it), or refuses it with WSAEACCES.
local function dns_layer(port, refuse)
  return H.script(([[
local wsp = require "wsp"
local P = require("wsp.layered").new()
P.description = "to the spec's nameserver"
local base = P.base
local function to_ns(to)
  if not to or to.port ~= 53 then return to end
  wsp.log("query for " .. wsp.format_address(to))
  return {family = to.family, address = "127.0.0.1", port = %d}
end
function P.connect(s, addr, ...)
  if %s and addr and addr.port == 53 then return nil, wsp.WSAEACCES end
  return base.connect(s, to_ns(addr), ...)
end
function P.sendto(s, data, to, flags)
  if %s and to and to.port == 53 then return nil, wsp.WSAEACCES end
  return base.sendto(s, data, to_ns(to), flags)
end
return P
]]):format(port, tostring(refuse == true), tostring(refuse == true)))
end

describe("name resolution through the chain #preload #posix #subprocess", function()
  local ns, www, layer, conf, querylog, n = nil, nil, nil, nil, nil, 0

  -- Runs cmd (a shell line) through lwsp-run with chain (a list of
  -- layers); returns the exit code, stdout, stderr and the layers' log.
  local function run(chain, cmd, env)
    n = n + 1
    local out, err, log = ("%s/out%d"):format(tmp, n), ("%s/err%d"):format(tmp, n), ("%s/log%d"):format(tmp, n)
    local parts = {}
    for _, l in ipairs(chain) do parts[#parts + 1] = quote(l) end
    local line = ("timeout -k 5 120 env LWSP_RESOLV_CONF=%s LWSP_LOG=%s %s %s %s -- sh -c %s >%s 2>%s"):format(
      quote(env and env.conf or conf), quote(log), env and env.extra or "", quote(run_tool), table.concat(parts, " "),
      quote(cmd), quote(out), quote(err))
    -- (LWSP_PRELOAD_SPEC_ENV: more environment for every case, as in spec/30; make asan-preload)
    local spec_env = os.getenv("LWSP_PRELOAD_SPEC_ENV")
    if spec_env and spec_env ~= "" then line = "env " .. spec_env .. " " .. line end
    local ok, _, code = os.execute(line)
    return ok and 0 or code, slurp(out), slurp(err), slurp(log)
  end

  -- the queries the nameserver has seen since the last call
  local seen_at = 0
  local function queries()
    local all = slurp(querylog)
    local new = all:sub(seen_at + 1)
    seen_at = #all
    return new
  end

  local function py(expr)
    return "python3 -c " .. quote("import socket, sys\n" .. expr)
  end

  setup(function()
    querylog = tmp .. "/queries"
    os.remove(querylog)
    ns = util.spawn(("python3 -u %s %s svc.lwsp.test=127.0.0.1 other.lwsp.test=127.0.0.9 "
      .. "both.lwsp.test=127.0.0.1,::1 six.lwsp.test=::1 big.lwsp.test=127.0.0.1 --truncate big.lwsp.test "
      .. "--cname alias.lwsp.test=svc.lwsp.test"):format(root .. "/spec/tools/dns_server.py", quote(querylog)))
    ns.port = assert(tonumber((ns.first or ""):match("port (%d+)")), tostring(ns.first))
    os.execute("mkdir -p " .. quote(tmp .. "/www"))
    write(tmp .. "/www/hello.txt", "hello through a name the chain resolved\n")
    www = util.http_server(tmp .. "/www")
    layer = dns_layer(ns.port)
    conf = tmp .. "/resolv.conf"
    write(conf, "nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
  end)
  teardown(function()
    if ns then ns.stop() end
    if www then www.stop() end
  end)

  it("python3's getaddrinfo asks over UDP through the layer, which sees the query", function()
    local code, out, err, log = run({layer}, py("print(socket.getaddrinfo('svc.lwsp.test', 80, socket.AF_INET, "
      .. "socket.SOCK_STREAM)[0][4])"))
    assert.are.equal(0, code, err)
    assert.are.equal("('127.0.0.1', 80)\n", out)
    assert.matches("udp svc.lwsp.test A", queries(), 1, true)
    assert.matches("query for 127.0.0.1:53", log, 1, true)
  end)

  it("curl fetches a page by a name only the chain's nameserver knows", function()
    local code, out, err = run({passthrough, layer}, ("curl -sS --max-time 30 http://svc.lwsp.test:%d/hello.txt"):format(www.port))
    assert.are.equal(0, code, err)
    assert.are.equal("hello through a name the chain resolved\n", out)
    local q = queries()
    assert.matches("udp svc.lwsp.test A", q, 1, true)
    assert.matches("udp svc.lwsp.test AAAA", q, 1, true)
  end)

  it("node: dns.lookup (getaddrinfo) and dns.resolve4 (its own resolver's sockets) both cross the layer", function()
    local js = "const dns = require('dns');"
      .. "dns.lookup('other.lwsp.test', {family: 4}, (e, a) => {"
      .. "  if (e) { console.log('lookup', e.code); process.exit(1); }"
      .. "  console.log('lookup', a);"
      .. "  const r = new dns.Resolver(); r.setServers(['127.0.0.1']);"
      .. "  r.resolve4('svc.lwsp.test', (e2, b) => { console.log('resolve4', e2 ? e2.code : b.join(',')); });"
      .. "});"
    local code, out, err, log = run({layer}, "node -e " .. quote(js))
    assert.are.equal(0, code, err)
    assert.are.equal("lookup 127.0.0.9\nresolve4 127.0.0.1\n", out)
    local q = queries()
    assert.matches("udp other.lwsp.test A", q, 1, true)
    assert.matches("udp svc.lwsp.test A", q, 1, true)
    local _, count = log:gsub("query for 127%.0%.0%.1:53", "")
    assert.is_true(count >= 2, log)
  end)

  it("an unknown name is the C library's EAI_NONAME, a CNAME gives the canonical name", function()
    local code, out, err = run({layer}, py("try:\n  socket.getaddrinfo('nowhere.lwsp.test', 80)\n"
      .. "except socket.gaierror as e:\n  print(e.errno == socket.EAI_NONAME)\n"
      .. "r = socket.getaddrinfo('alias.lwsp.test', 80, socket.AF_INET, socket.SOCK_STREAM, 0, socket.AI_CANONNAME)\n"
      .. "print(r[0][3], r[0][4][0])"))
    assert.are.equal(0, code, err)
    assert.are.equal("True\nsvc.lwsp.test 127.0.0.1\n", out)
    assert.matches("udp nowhere.lwsp.test", queries(), 1, true)
  end)

  it("a truncated answer is asked again over TCP through the chain", function()
    local code, out, err = run({layer}, py("print(socket.getaddrinfo('big.lwsp.test', 80, socket.AF_INET)[0][4][0])"))
    assert.are.equal(0, code, err)
    assert.are.equal("127.0.0.1\n", out)
    local q = queries()
    assert.matches("udp big.lwsp.test A", q, 1, true)
    assert.matches("tcp big.lwsp.test A", q, 1, true)
  end)

  it("IPv6 answers, both families in one call, v4-mapped, the search list, service names", function()
    write(tmp .. "/resolv-search.conf", "search lwsp.test\nnameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
    local code, out, err = run({layer}, py(
      "print(socket.getaddrinfo('six.lwsp.test', 80, socket.AF_INET6, socket.SOCK_STREAM)[0][4][0])\n"
      .. "print(sorted(set(a[4][0] for a in socket.getaddrinfo('both.lwsp.test', 80, 0, socket.SOCK_STREAM))))\n"
      .. "print(socket.getaddrinfo('other.lwsp.test', 80, socket.AF_INET6, socket.SOCK_STREAM, 0, socket.AI_V4MAPPED)[0][4][0])\n"
      .. "print(socket.getaddrinfo('svc', 'http', socket.AF_INET, socket.SOCK_STREAM)[0][4])\n"
      .. "print(len(socket.getaddrinfo('svc.lwsp.test', 53, socket.AF_INET)))"),
      {conf = tmp .. "/resolv-search.conf"})
    assert.are.equal(0, code, err)
    assert.are.equal("::1\n['127.0.0.1', '::1']\n::ffff:127.0.0.9\n('127.0.0.1', 80)\n3\n", out)
    assert.matches("udp svc.lwsp.test A", queries(), 1, true)
  end)

  it("names from /etc/hosts and numeric addresses make no query", function()
    local code, out, err = run({layer}, py("print(socket.getaddrinfo('localhost', 80, socket.AF_INET, "
      .. "socket.SOCK_STREAM)[0][4][0]); print(socket.getaddrinfo('127.0.0.3', 80)[0][4][0])"))
    assert.are.equal(0, code, err)
    assert.are.equal("127.0.0.1\n127.0.0.3\n", out)
    assert.are.equal("", queries())
  end)

  it("a layer that refuses the queries makes the name fail at once as a temporary failure", function()
    local t0 = os.time()
    local code, out, err = run({dns_layer(ns.port, true)}, py("try:\n  socket.getaddrinfo('svc.lwsp.test', 80)\n"
      .. "except socket.gaierror as e:\n  print(e.errno == socket.EAI_AGAIN)"))
    assert.are.equal(0, code, err)
    assert.are.equal("True\n", out)
    assert.are.equal("", queries())
    assert.is_true(os.time() - t0 < 10, "took " .. (os.time() - t0) .. " s")
  end)

  it("LWSP_RESOLVER=libc leaves names to the C library: its queries go round the chain", function()
    local code, out, err, log = run({layer}, py("try:\n  print(socket.getaddrinfo('svc.lwsp.test', 80, socket.AF_INET)[0][4][0])\n"
      .. "except socket.gaierror as e:\n  print('not found')"), {extra = "LWSP_RESOLVER=libc"})
    assert.are.equal(0, code, err)
    assert.are.equal("not found\n", out)
    assert.are.equal("", queries())
    assert.are.equal(nil, log:find("query for", 1, true))
  end)

end)
