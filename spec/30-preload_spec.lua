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
  local srv, srv11
  setup(function()
    os.execute("mkdir -p '" .. tmp .. "/www'")
    make_file(tmp .. "/www/big.bin", 8 * 1024 * 1024 + 123)
    srv = util.http_server(tmp .. "/www")
    -- the same server speaking HTTP/1.1 (keep-alive)
    srv11 = util.spawn(("python3 -u %s %s"):format(root .. "/spec/tools/http11_server.py", tmp .. "/www"))
    srv11.port = assert(tonumber((srv11.first or ""):match("port (%d+)")), tostring(srv11.first))
  end)
  teardown(function()
    if srv then srv.stop() end
    if srv11 then srv11.stop() end
  end)

  for _, c in ipairs(chains) do
    it("curl downloads 8 MiB " .. c.name .. " (the checksum of the server's file)", function()
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

    it("curl to a refused port fails as the kernel makes it fail " .. c.name, function()
      local code, _, err = run(c.chain, "curl -sS http://127.0.0.1:9/")
      assert.are.equal(7, code)
      assert.matches("Couldn't connect to server", err)
    end)

    it("python3: a blocking echo over a socket it listens on, and urllib " .. c.name, function()
      local code, o, err = run(c.chain, ("python3 %s http://127.0.0.1:%d/big.bin"):format(
        quote(root .. "/spec/tools/preload_echo.py"), srv.port))
      assert.are.equal(0, code, err)
      assert.are.equal("echo 1048576 True True\nurllib 8388731\n", o)
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
      assert.are.equal(11, oks, o)
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
    assert.is_true(got > 8388731, text)
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
end)
