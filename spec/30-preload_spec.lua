-- Real, unmodified programs through the chain: bin/lwsp-run ... -- PROGRAM
-- (liblwsp_preload.so, docs/preload.md).  Each program runs directly and
-- through the chain, and the results must be the same.
-- posix: LD_PRELOAD and a Linux loader; subprocess: real programs.
local H = require "helpers"
local util = require "wsp.util"

local root = H.root
local run_tool = root .. "/bin/lwsp-run"
local passthrough = root .. "/examples/passthrough.lua"
local tmp = H.tmp .. "/preload"
os.execute("mkdir -p '" .. tmp .. "'")

-- LWSP_PRELOAD_SPEC_ENV (for example "LWSP_BUDGET=1000000") runs every case
-- with more in the environment
local spec_env = os.getenv("LWSP_PRELOAD_SPEC_ENV")

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs a shell command line: directly (chain nil) or through lwsp-run with
-- the layers of chain (a list; {} means the native base alone).  Returns
-- the exit code, stdout and stderr.
local function run(chain, cmd, extra_env)
  local out, err = os.tmpname(), os.tmpname()
  local line = "sh -c " .. quote(cmd)
  if chain then
    local parts = {}
    for _, l in ipairs(chain) do parts[#parts + 1] = quote(l) end
    line = ("%s %s -- sh -c %s"):format(quote(run_tool), table.concat(parts, " "), quote(cmd))
  end
  -- (bounded: a program that hangs fails its case instead of stopping the suite)
  line = "timeout -k 5 600 " .. line
  if extra_env then line = extra_env .. " " .. line end
  if spec_env and spec_env ~= "" then line = spec_env .. " " .. line end
  local ok, _, code = os.execute(("%s >%s 2>%s"):format(line, out, err))
  local f = io.open(out, "rb"); local o = f:read("a"); f:close()
  f = io.open(err, "rb"); local e = f:read("a"); f:close()
  os.remove(out); os.remove(err)
  return ok and 0 or code, o, e
end

local function sha(path)
  local p = io.popen("sha256sum " .. quote(path))
  local s = p:read("l"):match("^(%x+)")
  p:close()
  return s
end

-- A file of n bytes every value appears in (deterministic).
local function make_file(path, n)
  local f = assert(io.open(path, "wb"))
  local chunk = {}
  for i = 0, 65535, 4 do chunk[#chunk + 1] = string.pack("<I4", (i * 2654435761) & 0xffffffff) end
  chunk = table.concat(chunk)
  local left = n
  local k = 0
  while left > 0 do
    local c = chunk:sub(1, math.min(left, #chunk))
    -- vary each block so a reordering shows
    f:write(string.pack("<I4", k), c:sub(5))
    left = left - #c
    k = k + 1
  end
  f:close()
end

local meter, firewall = root .. "/examples/meter.lua", root .. "/examples/firewall.lua"
local chains = {
  {name = "directly", chain = nil},
  {name = "through passthrough", chain = {passthrough}},
  {name = "through meter over firewall", chain = {meter, firewall}},
}

describe("preload #preload #posix #subprocess", function()
  local srv, srv11, silent
  setup(function()
    os.execute("mkdir -p '" .. tmp .. "/www'")
    make_file(tmp .. "/www/big.bin", 64 * 1024 * 1024 + 123)
    -- a git repository served over "dumb" HTTP (git clone runs git-remote-http: an exec)
    os.execute(("cd %s && git init -q repo && cd repo && echo lwsp > file.txt && git add file.txt "
      .. "&& git -c user.name=lwsp -c user.email=lwsp@localhost commit -qm one && cd .. "
      .. "&& git clone -q --bare repo www/repo.git && cd www/repo.git && git update-server-info"):format(quote(tmp)))
    -- a listener that accepts and never answers (timeouts)
    silent = util.spawn("python3 -u " .. root .. "/spec/tools/silent_server.py")
    silent.port = assert(tonumber(silent.first), tostring(silent.first))
    srv = util.http_server(tmp .. "/www")
    -- the same server speaking HTTP/1.1 (keep-alive)
    srv11 = util.spawn(("python3 -u %s %s"):format(root .. "/spec/tools/http11_server.py", tmp .. "/www"))
    srv11.port = assert(tonumber((srv11.first or ""):match("port (%d+)")), tostring(srv11.first))
  end)
  teardown(function()
    if srv then srv.stop() end
    if srv11 then srv11.stop() end
    if silent then silent.stop() end
  end)

  for _, c in ipairs(chains) do
    it("curl downloads 64 MiB " .. c.name .. " (the checksum of the server's file)", function()
      local out = tmp .. "/curl." .. (c.chain and "chain" or "direct")
      local code, _, err = run(c.chain, ("curl -sS -o %s http://127.0.0.1:%d/big.bin"):format(quote(out), srv.port))
      assert.are.equal(0, code, err)
      assert.are.equal(sha(tmp .. "/www/big.bin"), sha(out))
    end)

    it("curl keeps one connection alive for several requests " .. c.name, function()
      local code, o, err = run(c.chain, ("curl -sS -v -o /dev/null -o /dev/null -o /dev/null "
        .. "http://127.0.0.1:%d/big.bin http://127.0.0.1:%d/big.bin http://127.0.0.1:%d/big.bin 2>&1"):format(
          srv11.port, srv11.port, srv11.port))
      assert.are.equal(0, code, err)
      local _, reused = o:gsub("Re%-using existing connection", "")
      local _, fresh = o:gsub("Connected to 127%.0%.0%.1", "")
      assert.are.equal(1, fresh, o)
      assert.are.equal(2, reused, o)
    end)

    it("wget downloads 64 MiB " .. c.name, function()
      local out = tmp .. "/wget." .. (c.chain and "chain" or "direct")
      local code, _, err = run(c.chain, ("wget -q -O %s http://127.0.0.1:%d/big.bin"):format(quote(out), srv.port))
      assert.are.equal(0, code, err)
      assert.are.equal(sha(tmp .. "/www/big.bin"), sha(out))
    end)

    it("curl times out on a server that never answers " .. c.name, function()
      local t0 = os.time()
      local code, _, err = run(c.chain, ("curl -sS --max-time 2 http://127.0.0.1:%d/"):format(silent.port))
      assert.are.equal(28, code, err)
      assert.matches("Operation timed out", err)
      assert.is_true(os.time() - t0 < 10)
    end)

    it("git clones over HTTP (git execs git-remote-http, which gets the chain again) " .. c.name, function()
      local dir = tmp .. "/clone." .. (c.chain and c.chain[1]:match("(%w+)%.lua$") or "direct")
      os.execute("rm -rf " .. quote(dir))
      local code, _, err = run(c.chain, ("git clone -q http://127.0.0.1:%d/repo.git %s"):format(srv.port, quote(dir)))
      assert.are.equal(0, code, err)
      local f = assert(io.open(dir .. "/file.txt"))
      assert.are.equal("lwsp\n", f:read("a"))
      f:close()
    end)

    it("curl to a refused port fails as the kernel makes it fail " .. c.name, function()
      local code, _, err = run(c.chain, "curl -sS http://127.0.0.1:9/")
      assert.are.equal(7, code)
      assert.matches("Couldn't connect to server", err)
    end)

    it("python3: a blocking echo over a socket it listens on, and urllib " .. c.name, function()
      local code, o, err = run(c.chain, ("python3 %s http://127.0.0.1:%d/big.bin"):format(
        quote(root .. "/spec/tools/preload_echo.py"), srv.port))
      assert.are.equal(0, code, err)
      assert.are.equal("echo 1048576 True True\nurllib 67108987\n", o)
    end)
  end

  for _, c in ipairs(chains) do
    -- (traced, every layer's handler runs in Lua and records each crossing:
    -- 200 connections keep the trace files in hand)
    local conns = (spec_env or ""):find("LWSP_PRELOAD_TRACE", 1, true) and 200 or 1000
    it(("the edge cases of spec/tools/edge.c, with %d connections on epoll, "):format(conns) .. c.name, function()
      local code, o, err = run(c.chain, quote(root .. "/build/preload_edge") .. " " .. conns)
      assert.are.equal(0, code, o .. err)
      local _, oks = o:gsub(" ok\n", "")
      assert.are.equal(14, oks, o)
    end)

    it("node: http.get and a net echo (libuv, epoll) " .. c.name, function()
      local code, o, err = run(c.chain, ("node %s http://127.0.0.1:%d/big.bin"):format(
        quote(root .. "/spec/tools/preload_node.js"), srv.port))
      assert.are.equal(0, code, err)
      assert.are.equal(("http 200 %s\necho true\n"):format(sha(tmp .. "/www/big.bin")), o)
    end)

    it("python3: asyncio server and clients, UDP sendto/recvfrom, IPv6 on ::1 " .. c.name, function()
      local code, o, err = run(c.chain, "python3 " .. quote(root .. "/spec/tools/preload_asyncio.py"))
      assert.are.equal(0, code, err)
      assert.are.equal("asyncio 20 of 20\nudp PING True\nipv6 v6\n", o)
    end)
  end

  it("the firewall's refusal is curl's own error message; meter reports what it carried", function()
    local log = tmp .. "/meter.log"
    os.remove(log)
    -- 192.0.2.1 (TEST-NET-1) is denied by examples/firewall.rules: the refusal
    -- comes at once, where a direct connect would wait for the timeout
    local t0 = os.time()
    local code, _, err = run({meter, firewall}, "curl -sS --connect-timeout 20 http://192.0.2.1/", "LWSP_LOG=" .. log)
    assert.are.equal(7, code, err)
    assert.matches("Couldn't connect to server", err)
    assert.is_true(os.time() - t0 < 10)
    code, _, err = run({meter, firewall}, ("curl -sS -o /dev/null http://127.0.0.1:%d/big.bin"):format(srv.port),
      "LWSP_LOG=" .. log)
    assert.are.equal(0, code, err)
    local f = assert(io.open(log))
    local text = f:read("a")
    f:close()
    assert.matches("denied 192%.0%.2%.1:80", text)
    -- meter's report of the download: all of the file and the headers came up through it
    local got = tonumber(text:match("%[meter%] 127%.0%.0%.1:%d+ %-> %S+ sent %d+ B in %d+ call%(s%), received (%d+) B"))
    assert.is_truthy(got, text)
    assert.is_true(got > 67108987, text)
  end)

  it("a chain that does not start fails the program's inet sockets instead of going round it", function()
    local code, o, err = run({tmp .. "/no-such-layer.lua"}, ("curl -sS http://127.0.0.1:%d/big.bin"):format(srv.port))
    assert.are.equal(7, code, err)
    assert.are.equal("", o)
    local code2, _, err2 = run(nil, ("LWSP_PRELOAD_CHAIN=native== LD_PRELOAD=%s curl -sS -o /dev/null http://127.0.0.1:%d/big.bin")
      :format(quote(root .. "/build/liblwsp_preload.so"), srv.port))
    assert.are.equal(7, code2, err2)
    assert.matches("LWSP_PRELOAD_ROOT unset", err2)
  end)

  it("make demo's real-program part (examples/demo_curl.sh): identical bytes, curl's own refusal, the layers' lines", function()
    local code, o, err = run(nil, "bash " .. quote(root .. "/examples/demo_curl.sh"))
    assert.are.equal(0, code, o .. err)
    assert.matches("identical: yes", o)
    assert.matches("curl: %(7%) Failed to connect to 192%.0%.2%.1 port 80 after %d+ ms: Couldn't connect to server", o)
    assert.matches("lwsp%[firewall%] denied 192%.0%.2%.1:80", o)
    assert.matches("lwsp%[meter%] 127%.0%.0%.1:%d+ %-> 127%.0%.0%.1:%d+ sent %d+ B in 1 call%(s%), received 52%d%d%d%d B", o)
  end)

  it("a program that sets up io_uring is reported on stderr", function()
    local code, _, err = run({passthrough}, "python3 -c " .. quote("import ctypes; b = ctypes.create_string_buffer(120); "
      .. "ctypes.CDLL(None, use_errno=True).syscall(425, 4, b)"))
    assert.are.equal(0, code, err)
    assert.matches("sets up io_uring: its I/O through a ring is not served by lwsp", err)
  end)

  it("the chain is really in the way: a program's connect is in the trace", function()
    local prefix = tmp .. "/trace"
    local code, _, err = run({passthrough}, ("curl -sS -o /dev/null http://127.0.0.1:%d/big.bin"):format(srv.port)
      :gsub("^", ""), nil)
    assert.are.equal(0, code, err)
    code, _, err = run(nil, ("%s %s --trace=%s -- curl -sS -o /dev/null http://127.0.0.1:%d/big.bin"):format(
      quote(run_tool), quote(passthrough), quote(prefix), srv.port))
    assert.are.equal(0, code, err)
    local f = assert(io.open(prefix .. ".jsonl"))
    local text = f:read("a")
    f:close()
    assert.matches('"name":"WSPConnect"', text)
    assert.matches('"name":"WSPRecv"', text)
    assert.is_truthy(io.open(prefix .. ".html")):close()
  end)

  -- Side by side with proxychains-ng: one local third-party SOCKS5 proxy
  -- (microsocks), the same programs through Debian's proxychains4 and through
  -- lwsp with examples/socks5.lua.
  describe("through a SOCKS5 proxy (microsocks)", function()
    local ms_pid, ms_log, ms_port, s5dir, pc_conf
    setup(function()
      ms_port = 20000 + math.random(0, 9999)
      ms_log = tmp .. "/microsocks.log"
      local p = io.popen(("microsocks -i 127.0.0.1 -p %d >%s 2>&1 & echo $!"):format(ms_port, quote(ms_log)))
      ms_pid = tonumber(p:read("l"))
      p:close()
      s5dir = tmp .. "/socks5"
      os.execute(("mkdir -p %s && cp %s %s/"):format(quote(s5dir), quote(root .. "/examples/socks5.lua"), quote(s5dir)))
      local f = assert(io.open(s5dir .. "/socks5.conf", "w")); f:write("127.0.0.1 ", ms_port, "\n"); f:close()
      pc_conf = tmp .. "/proxychains.conf"
      f = assert(io.open(pc_conf, "w"))
      f:write("strict_chain\nquiet_mode\n[ProxyList]\nsocks5 127.0.0.1 ", ms_port, "\n")
      f:close()
      os.execute("sleep 0.3")
    end)
    teardown(function() if ms_pid then os.execute("kill " .. ms_pid) end end)

    local function through(way, cmd)
      if way == "proxychains4" then return run(nil, ("proxychains4 -f %s sh -c %s"):format(quote(pc_conf), quote(cmd))) end
      return run({s5dir .. "/socks5.lua"}, cmd)
    end
    local function proxied()
      local f = assert(io.open(ms_log)); local text = f:read("a"); f:close()
      local _, n = text:gsub("connected to 127%.0%.0%.1:" .. srv.port, "")
      return n
    end

    for _, way in ipairs{"proxychains4", "lwsp with socks5.lua"} do
      it("curl (64 MiB), python3 urllib and asyncio, node http.get: " .. way, function()
        local before = proxied()
        local out = tmp .. "/socks." .. way:gsub("%W", "")
        local code, o, err = through(way, ("curl -sS -o %s http://127.0.0.1:%d/big.bin"):format(quote(out), srv.port))
        assert.are.equal(0, code, err)
        assert.are.equal(sha(tmp .. "/www/big.bin"), sha(out))
        code, o, err = through(way, ("python3 -c %s http://127.0.0.1:%d/big.bin"):format(quote(
          "import sys, urllib.request, hashlib, asyncio\n"
          .. "print(hashlib.sha256(urllib.request.urlopen(sys.argv[1]).read()).hexdigest())\n"
          .. "async def get():\n"
          .. "    r, w = await asyncio.open_connection('127.0.0.1', int(sys.argv[1].split(':')[2].split('/')[0]))\n"
          .. "    w.write(b'GET /big.bin HTTP/1.0\\r\\n\\r\\n'); body = await r.read(); w.close()\n"
          .. "    return hashlib.sha256(body.split(b'\\r\\n\\r\\n', 1)[1]).hexdigest()\n"
          .. "print(asyncio.run(get()))"), srv.port))
        assert.are.equal(0, code, err)
        local h = sha(tmp .. "/www/big.bin")
        assert.are.equal(h .. "\n" .. h .. "\n", o)
        -- (node's http.get only: microsocks ends both directions at the first
        -- end of stream, so the half-closing net echo fails through it either way)
        code, o, err = through(way, ("node -e %s http://127.0.0.1:%d/big.bin"):format(quote(
          "const h = require('crypto').createHash('sha256');"
          .. "require('http').get(process.argv[1], (r) => { r.on('data', (d) => h.update(d));"
          .. " r.on('end', () => console.log(h.digest('hex'))); });"), srv.port))
        assert.are.equal(0, code, err)
        assert.are.equal(h .. "\n", o)
        -- every connection to the HTTP server went through the proxy: curl, urllib, asyncio, node
        assert.are.equal(4, proxied() - before)
      end)
    end
  end)
  -- ssh to a private sshd and psql to a private PostgreSQL on loopback, each
  -- directly and through both chains, with the same results (tools/deps.sh
  -- installs openssh-server and postgresql).
  describe("ssh and psql", function()
    local root_user = io.popen("id -u"):read("l") == "0"
    local user = io.popen("id -un"):read("l")
    local sshd, ssh_port, ssh_dir, pg_dir, pg_port, pg_bin, big
    local function free_port()
      local p = io.popen([[python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"]])
      local port = tonumber(p:read("l"))
      p:close()
      return assert(port, "no free port")
    end
    setup(function()
      big = tmp .. "/www/big.bin"
      -- sshd: its own host key, one user key, key logins only, on a port of its own
      ssh_dir = tmp .. "/ssh"
      ssh_port = free_port()
      os.execute(("mkdir -p %s && ssh-keygen -q -t ed25519 -N '' -f %s/host && ssh-keygen -q -t ed25519 -N '' -f %s/user"
        .. " && cp %s/user.pub %s/authorized_keys && chmod 700 %s"):format(
        quote(ssh_dir), quote(ssh_dir), quote(ssh_dir), quote(ssh_dir), quote(ssh_dir), quote(ssh_dir)))
      if root_user then os.execute("mkdir -p /run/sshd") end
      local f = assert(io.open(ssh_dir .. "/sshd_config", "w"))
      f:write(("Port %d\nListenAddress 127.0.0.1\nHostKey %s/host\nAuthorizedKeysFile %s/authorized_keys\n"
        .. "PidFile %s/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        .. "PermitRootLogin prohibit-password\nPrintMotd no\n"):format(ssh_port, ssh_dir, ssh_dir, ssh_dir))
      f:close()
      sshd = util.spawn(("/usr/sbin/sshd -D -e -f %s/sshd_config 2>&1"):format(ssh_dir))
      assert.truthy((sshd.first or ""):find("listening", 1, true), tostring(sshd.first))
      -- PostgreSQL: a cluster of its own (as the postgres user when run as root), trust on loopback
      local p = io.popen("ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1")
      pg_bin = p:read("l")
      p:close()
      assert.truthy(pg_bin, "no PostgreSQL server (tools/deps.sh installs it)")
      pg_dir = tmp .. "/pg"
      pg_port = free_port()
      local as = root_user and "runuser -u postgres -- " or ""
      os.execute(("mkdir -p %s %s"):format(quote(pg_dir), root_user and ("&& chown postgres " .. quote(pg_dir)) or ""))
      assert(os.execute(("%s%s/initdb -D %s/data -U lwsp --auth=trust -E UTF8 >%s/initdb.log 2>&1"):format(
        as, pg_bin, quote(pg_dir), quote(pg_dir))), "initdb failed")
      assert(os.execute(("%s%s/pg_ctl -D %s/data -l %s/log -w -o %s start >/dev/null 2>&1"):format(as, pg_bin,
        quote(pg_dir), quote(pg_dir), quote(("-p %d -k %s -c listen_addresses=127.0.0.1"):format(pg_port, pg_dir)))),
        "PostgreSQL did not start")
    end)
    teardown(function()
      if sshd then sshd.stop() end
      if pg_dir then
        os.execute(("%s%s/pg_ctl -D %s/data -m immediate stop >/dev/null 2>&1"):format(
          root_user and "runuser -u postgres -- " or "", pg_bin, quote(pg_dir)))
      end
    end)

    for _, c in ipairs(chains) do
      it("ssh runs a command on a private sshd and brings back 64 MiB " .. c.name, function()
        local cmd = ("ssh -F /dev/null -i %s/user -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
          .. " -o BatchMode=yes -o LogLevel=ERROR -p %d %s@127.0.0.1 'echo through ssh; cat %s' | tail -c +13 | sha256sum"
          .. " && ssh -F /dev/null -i %s/user -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
          .. " -o BatchMode=yes -o LogLevel=ERROR -p %d %s@127.0.0.1 'echo through ssh'"):format(
          ssh_dir, ssh_port, user, big, ssh_dir, ssh_port, user)
        local code, o, err = run(c.chain, cmd)
        assert.are.equal(0, code, err)
        assert.are.equal(sha(big) .. "  -\nthrough ssh\n", o)
      end)

      it("psql queries a private PostgreSQL: a sum and 1.3 MB of rows " .. c.name, function()
        local q = ("psql -X -h 127.0.0.1 -p %d -U lwsp -d postgres -Atc %s"):format(pg_port, quote(
          "select sum(g) from generate_series(1, 1000000) g"))
        local rows = ("psql -X -h 127.0.0.1 -p %d -U lwsp -d postgres -Atc %s | sha256sum"):format(pg_port, quote(
          "select string_agg(g::text, ',') from generate_series(1, 200000) g"))
        local code, o, err = run(c.chain, q .. " && " .. rows)
        assert.are.equal(0, code, err)
        local direct = io.popen("seq -s, 1 200000 | sha256sum")
        local want = direct:read("l")
        direct:close()
        assert.are.equal("500000500000\n" .. want .. "\n", o)
      end)
    end
  end)
end)
