#!/bin/sh
# `qsr load` against Caddy 2.6 (quic-go): does the generator saturate it? Runs everything inside a private network
# namespace (loopback only, fixed ports cannot collide), as root:
#
#   unshare -n -- sh -c 'ip link set lo up && exec sh tools/load-vs-caddy.sh [ROUNDS] [N]'
#
# Caddy serves /static (a 12-byte `respond`) and reverse_proxies /text* to our text service (`qsr service text`,
# GET /text/sample). Each round runs, alternately: qsr load in one process (1 connection x 100 streams; 2 x 50),
# qsr load over 2 worker processes (2 x 50), and the quic-go client (one connection, 100 in flight), N requests each,
# and prints req/s with the CPU seconds Caddy and the client used. PIDs are recorded and only those are stopped.
# Needs a build (dist/), /usr/bin/caddy, and the quic-go client (built by the interop tests into
# $TMPDIR/qsr-quicgo-*/quicgo-client; that row is skipped without it).
set -eu
ROUNDS=${1:-3}
N=${2:-5000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
QSR="node $ROOT/dist/src/cli/qsr.js"
W=$(mktemp -d /tmp/qsr-load-caddy-XXXXXX)
PORT=24590
TEXT_PORT=5292
QUICGO=$(ls -1 "${TMPDIR:-/tmp}"/qsr-quicgo-*/quicgo-client 2>/dev/null | head -n 1 || true)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -keyout "$W/key.pem" -out "$W/cert.pem" \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
cat >"$W/Caddyfile" <<EOF
{
	admin off
	auto_https off
	skip_install_trust
	ocsp_stapling off
	storage file_system $W/data
	servers {
		protocols h1 h2 h3
	}
	log {
		output discard
	}
}
https://:$PORT {
	bind 127.0.0.1
	tls $W/cert.pem $W/key.pem
	handle /static {
		respond "hello world\n" 200
	}
	handle /text* {
		reverse_proxy 127.0.0.1:$TEXT_PORT
	}
}
EOF
mkdir -p "$W/home"
$QSR service text --port $TEXT_PORT >"$W/text.log" 2>&1 &
TEXT_PID=$!
HOME=$W/home XDG_DATA_HOME=$W/home XDG_CONFIG_HOME=$W/home timeout 1800 /usr/bin/caddy run --config "$W/Caddyfile" --adapter caddyfile >"$W/caddy.log" 2>&1 &
TIMEOUT_PID=$!
cleanup() { kill "$TIMEOUT_PID" "$TEXT_PID" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
sleep 2
# caddy itself is the child of `timeout`: its CPU time is what we read.
CADDY_PID=$(cat /proc/$TIMEOUT_PID/task/$TIMEOUT_PID/children | tr -d ' ')

# CPU seconds (user + system) of a PID so far.
cpu() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }

run() { # label path cmd...
  label=$1; path=$2; shift 2
  c0=$(cpu $CADDY_PID)
  /usr/bin/time -f '%U %S' -o "$W/time" timeout 300 "$@" >"$W/out.json" 2>"$W/err" || true
  c1=$(cpu $CADDY_PID)
  if [ "$label" = quic-go ]; then
    rps=$(node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1]));const t=j.totals;console.log((t.ok/(t.wallMs/1000)).toFixed(0)+" req/s ok="+t.ok+" failed="+t.failed)' "$W/out.json")
    client=$(awk '{ printf "%.2f", $1 + $2 }' "$W/time")
  else
    rps=$(node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log(j.requestsPerSec.toFixed(0)+" req/s ok="+j.requests.ok+" failed="+j.requests.failed+" p50="+j.latencyMs.p50+"ms p99="+j.latencyMs.p99+"ms")' "$W/out.json")
    client=$(awk '{ printf "%.2f", $1 + $2 }' "$W/time")
  fi
  echo "$path  $label: $rps  caddy_cpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')s  client_cpu=${client}s"
}

for r in $(seq 1 "$ROUNDS"); do
  for path in /static /text/sample; do
    U=https://127.0.0.1:$PORT$path
    run "qsr load -c1 -s100 -w1" $path $QSR load "$U" --ca "$W/cert.pem" -n "$N" -c 1 -s 100 --json
    run "qsr load -c2 -s50 -w1" $path $QSR load "$U" --ca "$W/cert.pem" -n "$N" -c 2 -s 50 --json
    run "qsr load -c2 -s50 -w2" $path $QSR load "$U" --ca "$W/cert.pem" -n "$N" -c 2 -s 50 -w 2 --json
    if [ -n "$QUICGO" ]; then
      run quic-go $path "$QUICGO" -ca "$W/cert.pem" -n "$N" -c 100 -timeout 120s "$U"
    fi
  done
done
echo "work dir: $W"
