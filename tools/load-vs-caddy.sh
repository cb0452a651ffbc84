#!/bin/sh
# `qsr load` against Caddy 2.6 (quic-go): does the generator saturate it? Runs everything inside a private network
# namespace (loopback only, fixed ports cannot collide):
#
#   unshare -rn -- sh -c 'ip link set lo up && exec sh tools/load-vs-caddy.sh [ROUNDS] [N]'     (or unshare -n as root)
#
# Caddy serves /static (a 12-byte `respond`) and reverse_proxies /text* to our text service (`qsr service text`,
# GET /text/sample). Each round runs, alternately, N requests with: qsr load on one connection (1 x 100 streams),
# on two (2 x 100), on four over two worker processes (4 x 100, -w 2), the quic-go client (one connection, 100 in
# flight) and gtlsclient (one connection, N requests multiplexed: the server's 100-stream limit caps it). Each line:
# req/s, Caddy's CPU seconds and its share of the wall time (`busy`, in % of one core; it can use both), the
# client's CPU seconds (process start and handshake included) and per request, and for /text the text service's
# CPU seconds. Caddy is saturated when more generator capacity (connections, processes) no longer raises its req/s
# and qsr load's req/s is at least the peer clients'. PIDs are recorded and only those are stopped.
# Needs a build (dist/), /usr/bin/caddy, the quic-go client (built by the interop tests into
# $TMPDIR/qsr-quicgo-*/quicgo-client; that row is skipped without it) and /usr/bin/gtlsclient (skipped without it).
set -eu
ROUNDS=${1:-3}
N=${2:-10000}
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
  c0=$(cpu $CADDY_PID); t0=$(cpu $TEXT_PID); w0=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$W/time" timeout 300 "$@" >"$W/out.json" 2>"$W/err" || true
  c1=$(cpu $CADDY_PID); t1=$(cpu $TEXT_PID); w1=$(date +%s.%N)
  client=$(awk '{ printf "%.2f", $1 + $2 }' "$W/time")
  case "$label" in
    quic-go) rps=$(node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1]));const t=j.totals;console.log((t.ok/(t.wallMs/1000)).toFixed(0)+" req/s ok="+t.ok+" failed="+t.failed)' "$W/out.json") ;;
    gtlsclient)
      # gtlsclient prints nothing with -q: every stream must have closed (h3-bench.sh checks the same way); wall time
      # includes its start and handshake.
      rps=$(awk -v a="$w0" -v b="$w1" -v n="$N" 'BEGIN { printf "%.0f req/s (wall, incl. start)", n / (b - a) }') ;;
    *) rps=$(node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log(j.requestsPerSec.toFixed(0)+" req/s ok="+j.requests.ok+" failed="+j.requests.failed+" p50="+j.latencyMs.p50+"ms p99="+j.latencyMs.p99+"ms generator="+(1e6*j.generator.cpuSeconds/j.requests.total).toFixed(0)+"us/req")' "$W/out.json") ;;
  esac
  caddy=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')
  busy=$(awk -v a="$c0" -v b="$c1" -v x="$w0" -v y="$w1" 'BEGIN { printf "%.0f", 100 * (b - a) / (y - x) }')
  text=""
  case "$path" in /text*) text="  text_cpu=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')s" ;; esac
  echo "$path  $label: $rps  caddy_cpu=${caddy}s busy=${busy}%  client_cpu=${client}s ($(awk -v c="$client" -v n="$N" 'BEGIN { printf "%.0f", 1e6 * c / n }') us/req)$text"
}

for r in $(seq 1 "$ROUNDS"); do
  for path in /static /text/sample; do
    U=https://127.0.0.1:$PORT$path
    run "qsr load -c1 -s100" $path $QSR load "$U" --ca "$W/cert.pem" -n "$N" -c 1 -s 100 --json
    run "qsr load -c2 -s100" $path $QSR load "$U" --ca "$W/cert.pem" -n "$N" -c 2 -s 100 --json
    run "qsr load -c4 -s100 -w2" $path $QSR load "$U" --ca "$W/cert.pem" -n "$N" -c 4 -s 100 -w 2 --json
    if [ -n "$QUICGO" ]; then
      run quic-go $path "$QUICGO" -ca "$W/cert.pem" -n "$N" -c 100 -timeout 120s "$U"
    fi
    if [ -x /usr/bin/gtlsclient ]; then
      run gtlsclient $path /usr/bin/gtlsclient -q --exit-on-all-streams-close -n "$N" --timeout=120s 127.0.0.1 $PORT "$U"
    fi
  done
done
echo "work dir: $W"
