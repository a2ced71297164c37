#!/usr/bin/env bash
# The connection drain's cost per request when no drain is in progress: examples/node/app.js as one
# Node process, loaded with wrk over keep-alive connections, with and without internal/drain/drain.js
# (loaded as corral loads it: NODE_OPTIONS=--require, CORRAL_DRAIN), ROUNDS alternating rounds each;
# prints per round the req/s and the app's CPU time per request (utime+stime from /proc, in µs: less
# sensitive than req/s to other jobs on the machine), and the medians. Loopback only.
#
# Env: ROUNDS (3), DURATION (5s), CONNS (8), PORT (19600), NODE (node on PATH), OUT
# (bench/results/drain-overhead-<time>).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-8}
PORT=${PORT:-19600}
NODE=${NODE:-$(command -v node || true)}
OUT=${OUT:-$REPO/bench/results/drain-overhead-$(date +%Y%m%d-%H%M%S)}
[ -x "$NODE" ] || die "node not found (set NODE)"
ensure_apt wrk wrk || die "wrk is missing and could not be installed"
mkdir -p "$OUT"
trap cleanup_all EXIT

# run MODE prints "req/s cpu-µs-per-request" of one wrk run against a fresh app.js, MODE "drain" or "plain".
run() {
	local mode=$1 rps
	if [ "$mode" = drain ]; then
		spawn "$OUT/app-$mode.log" env PORT="$PORT" NODE_OPTIONS="--require $REPO/internal/drain/drain.js" \
			CORRAL_DRAIN='{"t":1200}' "$NODE" "$REPO/examples/node/app.js"
	else
		spawn "$OUT/app-$mode.log" env PORT="$PORT" "$NODE" "$REPO/examples/node/app.js"
	fi
	local pid=$SPAWNED
	wait_http "$PORT" 20 || die "app.js did not answer"
	wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$PORT/" >/dev/null # warm-up
	local app c0 c1 out
	app=$(pgrep -P "$pid" -f examples/node/app.js || echo "$pid")
	c0=$(cpu_ticks "$app")
	out=$(wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$PORT/")
	c1=$(cpu_ticks "$app")
	stop_group "$pid"
	rps=$(awk '/^Requests\/sec/ { print int($2) }' <<<"$out")
	awk -v rps="$rps" -v reqs="$(awk '/requests in/ { print $1 }' <<<"$out")" -v ticks=$((c1 - c0)) -v hz="$CLK_TCK" \
		'BEGIN { printf "%d %.2f\n", rps, ticks / hz * 1e6 / reqs }'
}

# median COLUMN prints the median of column COLUMN of stdin.
median() { awk -v c="$1" '{ print $c }' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

: >"$OUT/plain.txt"
: >"$OUT/drain.txt"
for r in $(seq "$ROUNDS"); do
	log "round $r"
	run plain >>"$OUT/plain.txt"
	run drain >>"$OUT/drain.txt"
done
p=$(median 1 <"$OUT/plain.txt")
d=$(median 1 <"$OUT/drain.txt")
pc=$(median 2 <"$OUT/plain.txt")
dc=$(median 2 <"$OUT/drain.txt")
echo "app.js, one process, node $("$NODE" --version), wrk -t1 -c$CONNS -d$DURATION, $ROUNDS rounds (req/s, CPU µs per request)"
echo "without the drain: $(tr '\n' ',' <"$OUT/plain.txt") median $p req/s, $pc µs"
echo "with the drain:    $(tr '\n' ',' <"$OUT/drain.txt") median $d req/s, $dc µs (req/s ratio $(ratio "$d" "$p"), CPU ratio $(ratio "$dc" "$pc"))"
