#!/usr/bin/env bash
# Real programs through the chain (docs/preload.md): curl downloading 1 GiB
# from a local HTTP server, directly and through one Lua passthrough, and
# 10,000 short requests over one keep-alive connection.  Prints a table:
# wall time, throughput or requests per second, and the process's CPU time
# (user+sys: curl's own plus, through the chain, lwsp's threads).
#   PRELOAD_BENCH_MIB (1024) and PRELOAD_BENCH_REQUESTS (10000) change the sizes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mib=${PRELOAD_BENCH_MIB:-1024}
reqs=${PRELOAD_BENCH_REQUESTS:-10000}
tmp=$(mktemp -d)
srv=
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/www"
truncate -s "${mib}M" "$tmp/www/big.bin"
echo small > "$tmp/www/small.txt"
python3 -u "$root/spec/tools/http11_server.py" "$tmp/www" > "$tmp/srv.out" 2>/dev/null &
srv=$!
for _ in $(seq 50); do grep -q port "$tmp/srv.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$tmp/srv.out" | head -1)
for _ in $(seq "$reqs"); do echo "url = \"http://127.0.0.1:$port/small.txt\""; echo "output = /dev/null"; done > "$tmp/urls"

# runs "$@", prints "wall cpu" in seconds
measure() {
  /usr/bin/time -f "%e %U %S" -o "$tmp/t" "$@" >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
  awk '{printf "%s %.2f\n", $1, $2 + $3}' "$tmp/t"
}
run_tool="$root/bin/lwsp-run"
curl -sS -o /dev/null "http://127.0.0.1:$port/big.bin"   # (a warm-up: the file in the page cache)
pass="$root/examples/passthrough.lua"
read -r dw dc < <(measure curl -sS -o /dev/null "http://127.0.0.1:$port/big.bin")
read -r pw pc < <(measure "$run_tool" "$pass" -- curl -sS -o /dev/null "http://127.0.0.1:$port/big.bin")
read -r rdw rdc < <(measure curl -sS -K "$tmp/urls")
read -r rpw rpc < <(measure "$run_tool" "$pass" -- curl -sS -K "$tmp/urls")
awk -v mib="$mib" -v reqs="$reqs" -v dw="$dw" -v dc="$dc" -v pw="$pw" -v pc="$pc" \
    -v rdw="$rdw" -v rdc="$rdc" -v rpw="$rpw" -v rpc="$rpc" 'BEGIN {
  printf "\nreal programs through the chain (curl; python3 http.server, HTTP/1.1, on loopback)\n\n"
  printf "| case | direct | through passthrough | ratio |\n|---|---|---|---|\n"
  printf "| %d MiB download: MiB/s | %.0f | %.0f | %.2f |\n", mib, mib / dw, mib / pw, dw / pw
  printf "| %d MiB download: CPU s (process) | %.2f | %.2f | +%.2f s per GiB |\n", mib, dc, pc, (pc - dc) * 1024 / mib
  printf "| %d requests, one connection: req/s | %.0f | %.0f | %.2f |\n", reqs, reqs / rdw, reqs / rpw, rdw / rpw
  printf "| %d requests: CPU s (process) | %.2f | %.2f | |\n", reqs, rdc, rpc
}'
