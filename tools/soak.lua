-- A bounded soak: rounds of many connections through two Lua layers over the
-- native base provider, data pushed by application threads, random closes
-- and cancelled blocking calls, faults injected at random into the lower
-- layer.  At the end: every byte a send accepted either arrived or its
-- connection was cut and reported; every operation ended; no socket is left
-- in either layer; the layers' memory is back near where it started.
-- LWSP_SOAK_SECONDS (default 20) bounds it.
local lwsp = require "lwsp"
local wsp = require "wsp"
local host = require "wsp.host"

local root = os.getenv("LWSP_ROOT") or "."
local seconds = tonumber(os.getenv("LWSP_SOAK_SECONDS")) or 20
local tmp = os.tmpname()
os.remove(tmp)
assert(lwsp.registry.set_root(tmp .. "/registry"))
lwsp.set_log(tmp .. "/lwsp.log")

local native = host.install_native()
local inner = host.install_layered{script = root .. "/examples/passthrough.lua", over = native, name = "inner"}
local outer = host.install_layered{script = root .. "/examples/passthrough.lua", over = inner, name = "outer"}

local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, native.tcp))
assert(host.bind(l, "127.0.0.1:0"))
assert(host.listen(l, 256))
local addr = host.getsockname(l)

-- warm both layers up, then take the baseline
local w = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, outer.tcp))
assert(host.connect(w, addr)); host.close(assert(host.accept(l))); host.close(w)
local base_mem = {inner = host.bench_collect(inner.guid), outer = host.bench_collect(outer.guid)}

host.inject("lower.send", {probability = 0.01, seed = 7, error = wsp.WSAENETRESET})
host.inject("lower.recv", {probability = 0.005, error = wsp.WSAENETRESET})

local t0 = os.time()
local stats = {rounds = 0, sockets = 0, bytes = 0, cut = 0, cancelled = 0, jobs = 0}
local payload = ("0123456789abcdef"):rep(4096)   -- 64 KiB
while os.time() - t0 < seconds do
  stats.rounds = stats.rounds + 1
  local conns = {}
  for i = 1, 64 do
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, outer.tcp))
    assert(host.connect(c, addr))
    conns[i] = {c = c, a = assert(host.accept(l)), size = (i * 7919) % #payload + 1}
    stats.sockets = stats.sockets + 2
  end
  for _, k in ipairs(conns) do k.job = host.spawn("send", k.c, payload:sub(1, k.size)); stats.jobs = stats.jobs + 1 end
  -- a few blocking receives cancelled from their hook, on connections of their own
  local cancels = {}
  for i = 1, 4 do
    local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, 0, 0, outer.tcp))
    assert(host.connect(c, addr))
    local a = assert(host.accept(l))
    cancels[i] = {c = c, a = a, job = host.spawn("recv", c, 10, {cancel_after = 2})}
  end
  for i, k in ipairs(conns) do
    if i % 9 == 0 then host.close(k.a); k.cut = true end   -- cut mid-way
  end
  for _, k in ipairs(conns) do
    local sent, msg, code = k.job:join(30000)
    assert(sent or msg ~= "timeout", "a send job never ended")
    k.sent, k.code = sent, code
    host.shutdown(k.c, wsp.SD_SEND)
  end
  for _, k in ipairs(conns) do
    if k.cut then
      stats.cut = stats.cut + 1
    else
      local got = 0
      while true do
        local data = host.recv(k.a, 65536)
        if not data or data == "" then break end
        got = got + #data
      end
      if k.sent then
        assert(got == k.sent, ("sent %d, received %d"):format(k.sent, got))
        stats.bytes = stats.bytes + got
      else
        assert(k.code == wsp.WSAENETRESET or k.code == wsp.WSAECONNRESET or k.code == wsp.WSAECONNABORTED,
          "unexpected send error " .. tostring(k.code))
        stats.cut = stats.cut + 1                       -- a fault cut it: reported to the sender
      end
      host.close(k.a)
    end
    host.close(k.c)
  end
  for _, k in ipairs(cancels) do
    local ok, msg, code = k.job:join(30000)
    -- WSAEINTR from the cancel, or the fault injected into its lower receive first
    assert(ok == nil and (code == wsp.WSAEINTR or code == wsp.WSAENETRESET),
      "a cancelled receive did not end with WSAEINTR: " .. tostring(msg))
    stats.cancelled = stats.cancelled + 1
    host.close(k.c)
    host.close(k.a)
  end
end
local hits = host.injected()
host.inject()
collectgarbage()
for name, r in pairs{inner = inner, outer = outer} do
  local st = host.bench_instance(r.guid)
  local mem = host.bench_collect(r.guid)
  assert(st.sockets == 0, name .. ": sockets left: " .. st.sockets)
  assert(st.pending == 0, name .. ": operations left: " .. st.pending)
  assert(mem < base_mem[name] + 64 * 1024, ("%s: memory grew from %d to %d bytes"):format(name, base_mem[name], mem))
  stats[name .. "_memory"] = ("%d -> %d"):format(base_mem[name], mem)
end
host.close(l)
host.cleanup()
print(("soak: %d s, %d rounds, %d sockets through two Lua layers, %d send jobs, %.1f MiB delivered intact, "
  .. "%d connections cut (closed or faulted), %d blocking calls cancelled, injected faults: send %d, recv %d; "
  .. "memory inner %s, outer %s; nothing leaked")
  :format(os.time() - t0, stats.rounds, stats.sockets, stats.jobs, stats.bytes / 1048576, stats.cut, stats.cancelled,
    hits["lower.send"] or 0, hits["lower.recv"] or 0, stats.inner_memory, stats.outer_memory))
