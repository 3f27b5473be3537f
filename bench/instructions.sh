#!/usr/bin/env bash
# Instructions per call, from callgrind: each configuration runs N and 2N
# calls, and the difference divided by N is what one call costs.
set -euo pipefail
cd "$(dirname "$0")/.."
export LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;" LUA_CPATH="$PWD/build/?.so;;" LWSP_ROOT=$PWD
export LWSP_CPASS_LOWER=$PWD/build/lwsp_native.so LWSP_CPASS_LOWER_ID=1001
N=${LWSP_BENCH_IR_CALLS:-20000}
out=$(mktemp -d)
ir() {   # config:op calls [cpath [kind]]
  LUA_CPATH="${3:-$PWD/build/?.so;;}" LWSP_BENCH_CALLS=$2 LWSP_BENCH_ONLY="${4:-calls}:$1" \
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" lua5.4 bench/run.lua >/dev/null 2>&1
  awk '/^summary:/ { print $2 }' "$out/cg"
}
echo
echo "5. instructions per call (valgrind --tool=callgrind, ($((2 * N)) calls - $N calls) / $N)"
printf '   %-22s %14s %14s\n' "" "getsockopt" "64-byte send"
declare -A per pct
for cfg in "native base" "C passthrough" "Lua passthrough" "Lua handlers" "memnet (Lua base)"; do
  row=""
  for op in getsockopt send64; do
    a=$(ir "$cfg:$op" "$N"); b=$(ir "$cfg:$op" $((2 * N)))
    v=$(( (b - a) / N ))
    per["$cfg:$op"]=$v
    row+=$(printf '%14d ' "$v")
  done
  printf '   %-22s %s\n' "$cfg" "$row"
done
printf '   Lua passthrough over C passthrough: +%d instructions (getsockopt), +%d (send)\n' \
  $(( ${per["Lua passthrough:getsockopt"]} - ${per["C passthrough:getsockopt"]} )) \
  $(( ${per["Lua passthrough:send64"]} - ${per["C passthrough:send64"]} ))
printf '   Lua handlers over C passthrough:    +%d instructions (getsockopt), +%d (send)\n' \
  $(( ${per["Lua handlers:getsockopt"]} - ${per["C passthrough:getsockopt"]} )) \
  $(( ${per["Lua handlers:send64"]} - ${per["C passthrough:send64"]} ))
# what the instruction budget costs a Lua handler (LWSP_BUDGET=0: none): its
# watchdog's bookkeeping per run; a short run gets no count hook
row=""
for op in getsockopt send64; do
  a=$(LWSP_BUDGET=0 ir "Lua handlers:$op" "$N"); b=$(LWSP_BUDGET=0 ir "Lua handlers:$op" $((2 * N)))
  per["nobudget:$op"]=$(( (b - a) / N ))
  row+=$(printf '%14d ' "${per["nobudget:$op"]}")
done
printf '   %-22s %s\n' "  ... budget off" "$row"
printf '   the instruction budget (its watchdog; no count hook on a short run) costs a Lua handler %d instructions (getsockopt), %d (send)\n' \
  $(( ${per["Lua handlers:getsockopt"]} - ${per["nobudget:getsockopt"]} )) \
  $(( ${per["Lua handlers:send64"]} - ${per["nobudget:send64"]} ))
# what tracing costs when off: the same Lua passthrough with tracing compiled
# out.  Lua seeds its string hashes from the clock, so counts move by a percent
# or two from run to run: both builds are measured three times, the least kept.
least() {   # config:op [cpath] -> the least per-call count of three measurements
  local best=""
  for _ in 1 2 3; do
    local a b v
    a=$(ir "$1" "$N" "${2:-}"); b=$(ir "$1" $((2 * N)) "${2:-}")
    v=$(( (b - a) / N ))
    if [ -z "$best" ] || [ "$v" -lt "$best" ]; then best=$v; fi
  done
  echo "$best"
}
if [ -f build/notrace/lwsp.so ]; then
  rowon=""; rowoff=""
  for op in getsockopt send64; do
    per["traceon:$op"]=$(least "Lua handlers:$op")
    per["notrace:$op"]=$(least "Lua handlers:$op" "$PWD/build/notrace/?.so;;")
    rowon+=$(printf '%14d ' "${per["traceon:$op"]}")
    rowoff+=$(printf '%14d ' "${per["notrace:$op"]}")
  done
  printf "   %-22s %s\n" "Lua handl., least of 3" "$rowon"
  printf '   %-22s %s\n' "  ... no tracing" "$rowoff"
  for op in getsockopt send64; do
    on=${per["traceon:$op"]}; off=${per["notrace:$op"]}
    pct[$op]=$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%+.1f%%", (a - b) * 100 / b }')
  done
  printf '   tracing built in but off: %s instructions per call (getsockopt), %s (send) over lwsp built without it\n' \
    "${pct[getsockopt]}" "${pct[send64]}"
fi
# what one overlapped completion costs, from a stream of 64-byte receives as in
# table 3b: user-space instructions of both threads (the sender's too, the
# same in every row); the kernel's share of each receive is not counted
NC=${LWSP_BENCH_IR_COMPLETIONS:-25000}
echo
echo "6. instructions per overlapped completion (valgrind --tool=callgrind, ($((2 * NC)) - $NC completions) / $NC;"
echo "   user space only: the receive's system call is not counted)"
printf '   %-22s %10s %10s %10s\n' "receiving socket" "event" "routine" "port"
for cfg in "native base" "Lua layer" "Lua handlers"; do
  row=""
  for mode in event routine port; do
    a=$(ir "$cfg:$mode" "$NC" "" completions); b=$(ir "$cfg:$mode" $((2 * NC)) "" completions)
    per["ov:$cfg:$mode"]=$(( (b - a) / NC ))
    row+=$(printf '%10d ' "${per["ov:$cfg:$mode"]}")
  done
  printf '   %-22s %s\n' "$cfg" "$row"
done
printf '   a Lua layer adds %+d (event), %+d (routine), %+d (port) instructions per completion\n' \
  $(( ${per["ov:Lua layer:event"]} - ${per["ov:native base:event"]} )) \
  $(( ${per["ov:Lua layer:routine"]} - ${per["ov:native base:routine"]} )) \
  $(( ${per["ov:Lua layer:port"]} - ${per["ov:native base:port"]} ))
rm -rf "$out"
