#!/usr/bin/env bash
# The main job with real programs: curl and python3, unmodified, fetch a page
# from python3 -m http.server through examples/meter.lua over
# examples/firewall.lua over the native base (bin/lwsp-run ... -- PROGRAM,
# docs/preload.md); the bytes are checked against a direct fetch, the
# firewall's refusal shows in curl's own error message, and the layers' log
# lines say what each saw.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
srv=
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/www"
head -c $((512 * 1024)) /dev/urandom > "$tmp/www/page.bin"
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$tmp/www" > "$tmp/srv.out" 2>/dev/null &
srv=$!
for _ in $(seq 50); do grep -q port "$tmp/srv.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$tmp/srv.out" | head -1)
url="http://127.0.0.1:$port/page.bin"
chain=("$root/examples/meter.lua" "$root/examples/firewall.lua")
export LWSP_LOG="$tmp/layers.log"
echo "HTTP server: python3 -m http.server on 127.0.0.1:$port"
echo "chain: meter -> firewall -> native (bin/lwsp-run meter.lua firewall.lua -- PROGRAM)"
echo
curl -sS -o "$tmp/direct" "$url"
"$root/bin/lwsp-run" "${chain[@]}" -- curl -sS -o "$tmp/curl" "$url"
"$root/bin/lwsp-run" "${chain[@]}" -- python3 -c \
  "import sys, urllib.request; open(sys.argv[2], 'wb').write(urllib.request.urlopen(sys.argv[1]).read())" \
  "$url" "$tmp/python"
printf '%-34s %8s bytes  sha256 %.16s\n' "curl, direct:" "$(stat -c %s "$tmp/direct")" "$(sha256sum < "$tmp/direct")"
printf '%-34s %8s bytes  sha256 %.16s\n' "curl through meter + firewall:" "$(stat -c %s "$tmp/curl")" "$(sha256sum < "$tmp/curl")"
printf '%-34s %8s bytes  sha256 %.16s\n' "python3 through meter + firewall:" "$(stat -c %s "$tmp/python")" "$(sha256sum < "$tmp/python")"
same=yes
cmp -s "$tmp/direct" "$tmp/curl" && cmp -s "$tmp/direct" "$tmp/python" || same=NO
echo "identical: $same"
echo
echo "curl http://192.0.2.1/ through the chain (firewall.rules: deny 192.0.2.1 *):"
set +e
"$root/bin/lwsp-run" "${chain[@]}" -- curl -sS --connect-timeout 5 http://192.0.2.1/ 2>&1 | sed 's/^/  /'
refused=${PIPESTATUS[0]}
set -e
echo
echo "what the layers saw:"
sed 's/^/  /' "$tmp/layers.log"
[ "$same" = yes ] && [ "$refused" = 7 ]
