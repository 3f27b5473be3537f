-- lwsp's benchmarks, in one run on one machine (make bench).  Prints a
-- table: dispatch cost per call, bulk throughput, overlapped completions per
-- second, and memory and call cost at scale.
local lwsp = require "lwsp"
local wsp = require "wsp"
local host = require "wsp.host"

local N = tonumber(os.getenv("LWSP_BENCH_CALLS")) or 200000
local BYTES = tonumber(os.getenv("LWSP_BENCH_BYTES")) or 1024 * 1024 * 1024
local ONLY = os.getenv("LWSP_BENCH_ONLY")   -- "calls:<config>:<op>" for the callgrind runs
local root = os.getenv("LWSP_ROOT") or "."
local tmp = os.tmpname()
os.remove(tmp)
assert(lwsp.registry.set_root(tmp .. "/registry"))
lwsp.set_log(tmp .. "/lwsp.log")

local native = host.install_native()
local memnet = host.install_lua{script = root .. "/examples/memnet.lua"}
local one = host.install_layered{script = root .. "/examples/passthrough.lua", over = native, name = "lua1"}
local two = host.install_layered{script = root .. "/examples/passthrough.lua", over = one, name = "lua2"}
local luah = host.install_layered{script = root .. "/bench/handlers.lua", over = native, name = "luah"}
local cpass = {}
for _, k in ipairs{"tcp", "udp"} do
  local below = native[k]
  local info = host.protocol_info{guid = "{6C777370-4350-4153-5300-000000000001}",
    type = k == "tcp" and wsp.SOCK_STREAM or wsp.SOCK_DGRAM, name = "cpass " .. k}
  cpass[k] = require("lwsp.host").install(info, root .. "/build/cpass.so", "base")
  assert(below)
end

local configs = {
  {"native base", native}, {"C passthrough", cpass}, {"Lua passthrough", one}, {"Lua handlers", luah},
  {"memnet (Lua base)", memnet},
}

local function udp_pair(r)
  local a = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, wsp.IPPROTO_UDP, 0, r.udp))
  assert(host.bind(a, "127.0.0.1:0"))
  local b = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, wsp.IPPROTO_UDP, 0, r.udp))
  assert(host.connect(b, host.getsockname(a)))
  return b, a
end

local function tcp_pair(r, srv)
  local l = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, wsp.IPPROTO_TCP, 0, (srv or r).tcp))
  assert(host.bind(l, "127.0.0.1:0"))
  assert(host.listen(l, 4))
  local c = assert(host.socket(wsp.AF_INET, wsp.SOCK_STREAM, wsp.IPPROTO_TCP, 0, r.tcp))
  assert(host.connect(c, host.getsockname(l)))
  return c, assert(host.accept(l))
end

if ONLY then
  local kind, name, op = ONLY:match("^(%w+):(.+):(%w+)$")
  if kind == "calls" then
    for _, c in ipairs(configs) do
      if c[1] == name then
        local s = udp_pair(c[2])
        host.bench_calls(s, op, N)
      end
    end
  elseif kind == "completions" then   -- N 64-byte overlapped receives, as in table 3b
    local r = ({["native base"] = native, ["Lua layer"] = one, ["Lua handlers"] = luah})[name]
    local cl, sv = tcp_pair(r, native)
    host.bench_overlapped_stream(cl, sv, op, N * 64, op == "event" and 32 or 64)
    host.close(sv)
  end
  host.cleanup()
  return
end

print(("lwsp %s benchmarks — %s"):format(lwsp.version, io.popen("uname -srm"):read("l")))
print(("cpu: %s"):format((io.open("/proc/cpuinfo"):read("a"):match("model name%s*:%s*([^\n]+)") or "?")))
print()
print(("1. dispatch cost per call (%d calls each, timed in C)"):format(N))
print(("   %-22s %14s %14s"):format("", "getsockopt", "64-byte send"))
local cost = {}
for _, c in ipairs(configs) do
  local s = udp_pair(c[2])
  host.bench_calls(s, "getsockopt", N // 10)   -- warm up
  local g = host.bench_calls(s, "getsockopt", N) / N * 1e9
  local t = host.bench_calls(s, "send64", N) / N * 1e9
  cost[c[1]] = {g, t}
  print(("   %-22s %11.0f ns %11.0f ns"):format(c[1], g, t))
end
print(("   Lua passthrough over C passthrough: +%.0f ns (getsockopt), +%.0f ns (send)"):format(
  cost["Lua passthrough"][1] - cost["C passthrough"][1], cost["Lua passthrough"][2] - cost["C passthrough"][2]))
print(("   Lua handlers over C passthrough:    +%.0f ns (getsockopt), +%.0f ns (send)"):format(
  cost["Lua handlers"][1] - cost["C passthrough"][1], cost["Lua handlers"][2] - cost["C passthrough"][2]))
print("   (Lua passthrough: examples/passthrough.lua, whose calls are inherited from wsp.layered and made")
print("   down in C; Lua handlers: bench/handlers.lua, the same layer with getsockopt, send and recv")
print("   handled by Lua functions)")

print()
local ROUNDS = tonumber(os.getenv("LWSP_BENCH_ROUNDS")) or 16
local ROUND_BYTES = BYTES // ROUNDS
print(("2. bulk throughput over loopback TCP (%d MiB per configuration in %d rounds of %d MiB, 64 KiB buffers;"):format(
  ROUND_BYTES * ROUNDS // (1024 * 1024), ROUNDS, ROUND_BYTES // (1024 * 1024)))
print("   each round runs the configurations one after another, in the reverse order every other round, so a")
print("   noisy moment hits them alike; the best round of each, and the median of the per-round ratios to the")
print("   base; and the same from CPU time, both threads', which the machine's other tenants do not move:")
print("   bytes per CPU second, the median of the per-round ratios to the base)")
local bulk = {{"native base", native}, {"one Lua layer", one}, {"two Lua layers", two},
              {"one, Lua handlers", luah}}
local best, low, rates, ratios, cpus, cratios = {}, {}, {}, {}, {}, {}
for round = 1, ROUNDS do
  local order = {}
  for i = 1, #bulk do order[i] = round % 2 == 1 and i or #bulk + 1 - i end
  for _, i in ipairs(order) do
    local cl, sv = tcp_pair(bulk[i][2], native)
    local c0 = os.clock()   -- the process's CPU time: every thread's
    local rate = ROUND_BYTES / host.bench_stream(cl, sv, ROUND_BYTES, 65536) / (1024 * 1024)
    cpus[i] = cpus[i] or {}
    cpus[i][round] = ROUND_BYTES / math.max(os.clock() - c0, 1e-6)
    best[i] = math.max(best[i] or 0, rate)
    low[i] = math.min(low[i] or math.huge, rate)
    rates[i] = rates[i] or {}
    rates[i][round] = rate
    host.close(cl)
    host.close(sv)
  end
  for i = 1, #bulk do
    ratios[i] = ratios[i] or {}
    ratios[i][round] = rates[i][round] / rates[1][round]
    cratios[i] = cratios[i] or {}
    cratios[i][round] = cpus[i][round] / cpus[1][round]
  end
end
local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end
for i, c in ipairs(bulk) do
  print(("   %-20s %6.0f MiB/s   ratio %.2f   median ratio %.2f   CPU-time ratio %.2f   (rounds: %.0f to %.0f MiB/s)")
    :format(c[1], best[i], best[i] / best[1], median(ratios[i]), median(cratios[i]), low[i], best[i]))
end
-- The same streams with the sender and the receiver pinned to one CPU: the
-- two threads take turns on it, so a round's time is what its bytes cost in
-- CPU, and how the threads' wake-ups happen to fall on two CPUs (which moves
-- the free-running rounds by tens of percent here) is out of it.
local PIN_ROUNDS = tonumber(os.getenv("LWSP_BENCH_PIN_ROUNDS")) or 8
local pin, pinlow, pinhigh = {}, {}, {}
local pinned = pcall(function()
  local cl, sv = tcp_pair(native, native)
  host.bench_stream(cl, sv, 65536, 65536, 0)
  host.close(cl)
  host.close(sv)
end)
if pinned then
  for round = 1, PIN_ROUNDS do
    local rate = {}
    for k = 1, #bulk do
      local i = round % 2 == 1 and k or #bulk + 1 - k
      local cl, sv = tcp_pair(bulk[i][2], native)
      rate[i] = ROUND_BYTES / host.bench_stream(cl, sv, ROUND_BYTES, 65536, 0) / (1024 * 1024)
      pinlow[i] = math.min(pinlow[i] or math.huge, rate[i])
      pinhigh[i] = math.max(pinhigh[i] or 0, rate[i])
      host.close(cl)
      host.close(sv)
    end
    for i = 1, #bulk do
      pin[i] = pin[i] or {}
      pin[i][round] = rate[i] / rate[1]
    end
  end
  print(("   both threads pinned to one CPU, %d rounds of %d MiB (the median of the per-round ratios to the base):")
    :format(PIN_ROUNDS, ROUND_BYTES // (1024 * 1024)))
  for i, c in ipairs(bulk) do
    print(("   %-20s %6.0f MiB/s   median ratio %.2f   (rounds: %.0f to %.0f MiB/s)")
      :format(c[1], pinhigh[i], median(pin[i]), pinlow[i], pinhigh[i]))
  end
else
  print("   (threads cannot be pinned to one CPU here: the pinned rounds are left out)")
end

print()
local OV = N // 10
print(("3. overlapped completions per second, ping-pong (%d receives, each completed by a 1-byte send)"):format(OV))
print(("   %-22s %10s %10s %10s"):format("receiving socket", "event", "routine", "port"))
for _, c in ipairs{{"native base", native}, {"Lua layer over native", one}, {"memnet (Lua base)", memnet}} do
  local row = {}
  for _, mode in ipairs{"event", "routine", "port"} do
    local cl, sv = tcp_pair(c[2], c[2] == memnet and memnet or native)
    row[#row + 1] = ("%10.0f"):format(OV / host.bench_overlapped(cl, sv, mode, OV))
    host.close(cl)
    host.close(sv)
  end
  print(("   %-22s %s"):format(c[1], table.concat(row, " ")))
end

print()
local STREAM = math.max(OV, 200000) * 64
local OV_ROUNDS = tonumber(os.getenv("LWSP_BENCH_OV_ROUNDS")) or 3
print(("3b. overlapped completions per second with a queue (%d MiB streamed by a sender thread, 64-byte"):format(
  STREAM // (1024 * 1024)))
print("    overlapped receives kept posted on the receiving socket: 32 with events, 64 with routines and a port;")
print(("    the best of %d rounds, each round running every configuration)"):format(OV_ROUNDS))
print(("   %-22s %10s %10s %10s"):format("receiving socket", "event", "routine", "port"))
local ovconfigs = {{"native base", native}, {"Lua layer over native", one}, {"Lua handlers over native", luah},
                   {"memnet (Lua base)", memnet}}
local ovbest, ovratio = {}, {}
for _ = 1, OV_ROUNDS do
  local rate = {}
  for i, c in ipairs(ovconfigs) do
    rate[i] = {}
    ovbest[i] = ovbest[i] or {}
    for j, mode in ipairs{"event", "routine", "port"} do
      local cl, sv = tcp_pair(c[2], c[2] == memnet and memnet or native)
      local secs, n = host.bench_overlapped_stream(cl, sv, mode, c[2] == memnet and STREAM // 10 or STREAM,
                                                   mode == "event" and 32 or 64)
      ovbest[i][j] = math.max(ovbest[i][j] or 0, n / secs)
      rate[i][j] = n / secs
      host.close(sv)
    end
  end
  for i = 2, 3 do
    ovratio[i] = ovratio[i] or {{}, {}, {}}
    for j = 1, 3 do table.insert(ovratio[i][j], rate[i][j] / rate[1][j]) end
  end
end
for i, c in ipairs(ovconfigs) do
  print(("   %-22s %10.0f %10.0f %10.0f"):format(c[1], ovbest[i][1], ovbest[i][2], ovbest[i][3]))
end
for i = 2, 3 do
  print(("   %-22s %10.2f %10.2f %10.2f"):format(i == 2 and "  layer / native" or "  handlers / native",
    median(ovratio[i][1]), median(ovratio[i][2]), median(ovratio[i][3])))
end
print("   (x / native: the median of the rounds' ratios to the native base in the same round;")
print("   the Lua layer's receives are inherited: each goes down in C when it can complete at once, and")
print("   runs wsp.layered's handler, which waits, when it cannot; Lua handlers: bench/handlers.lua)")

print()
print("4. scale: memnet sockets open at once")
print(("   %-10s %16s %16s %18s"):format("sockets", "Lua bytes/socket", "C bytes/socket", "getsockopt ns/call"))
local probe = udp_pair(memnet)
for _, n in ipairs{1000, 10000, 100000} do
  collectgarbage()
  local before = host.bench_collect(memnet.guid)       -- live bytes, after a full collection
  local heap0 = host.bench_heap()
  local socks = {}
  for i = 1, n do socks[i] = assert(host.socket(wsp.AF_INET, wsp.SOCK_DGRAM, 0, 0, memnet.udp)) end
  local lua_bytes = host.bench_collect(memnet.guid) - before
  collectgarbage()
  local heap = host.bench_heap() - heap0
  local ns = host.bench_calls(probe, "getsockopt", N // 4) / (N // 4) * 1e9
  print(("   %-10d %16.0f %16.0f %18.0f"):format(n, lua_bytes / n, (heap - lua_bytes) / n, ns))
  for i = 1, n do host.close(socks[i]) end
end
host.cleanup()
