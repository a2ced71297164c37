#!/usr/bin/env bash
# Keep-alive reloads of an unmodified Express 4 app (bench/express-app.js), side by side: PM2 7 and
# corral, with corral's connection drain (the default) and without it (--no-drain). Each tool has a
# private home in a scratch directory; all traffic goes to 127.0.0.1. For each tool: start the app
# with INSTANCES cluster instances, send RATE req/s of POSTs (never retried by the client) over CONNS
# keep-alive connections with bench/cmd/loadgen, run RELOADS sequential `reload`s, stop the load and
# count the failed requests.
#
# Env: TOOLS ("pm2 corral corral-nodrain"), PM2_VERSION (7), RATE (400), CONNS (8), RELOADS (5),
# TIMEOUT (per request, 5s: on a busy machine a slow answer is not a failed one),
# INSTANCES (2), PORT_BASE (19500), NODE (node on PATH), OUT (bench/results/drain-<time>), KEEP_TMP=1.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOOLS=${TOOLS:-"pm2 corral corral-nodrain"}
PM2_VERSION=${PM2_VERSION:-7}
RATE=${RATE:-400}
CONNS=${CONNS:-8}
RELOADS=${RELOADS:-5}
TIMEOUT=${TIMEOUT:-5s}
INSTANCES=${INSTANCES:-2}
PORT_BASE=${PORT_BASE:-19500}
NODE=${NODE:-$(command -v node || true)}
OUT=${OUT:-$REPO/bench/results/drain-$(date +%Y%m%d-%H%M%S)}
LOADGEN=$BENCH_TMP/loadgen
APPDIR=$BENCH_TMP/app

use_node
tool_homes
trap 'kill_loadgens; for t in $TOOLS; do cli "$t" kill >/dev/null 2>&1 || true; done; cleanup_all' EXIT
LOADGEN_PIDS=()

log "building bench/cmd/loadgen"
(cd "$REPO" && go build -o "$LOADGEN" ./bench/cmd/loadgen)
log "installing express@4 into $APPDIR"
mkdir -p "$APPDIR"
cp "$REPO/bench/express-app.js" "$APPDIR/app.js"
npm install --prefix "$APPDIR" --no-save --no-package-lock --no-audit --no-fund --loglevel=error express@4 \
	</dev/null >"$OUT/express-install.log" 2>&1 || die "npm install express@4 failed (see $OUT/express-install.log)"
prepare_tools "corral corral-nodrain"

i=0
for tool in $TOOLS; do
	port=$((PORT_BASE + i))
	i=$((i + 1))
	flags=()
	[ "$tool" = corral-nodrain ] && flags=(--no-drain)
	log "$tool: $INSTANCES instances, $RATE req/s over $CONNS keep-alive connections, $RELOADS reloads"
	(cd "$APPDIR" && PORT=$port cli "$tool" start app.js -i "$INSTANCES" --name web "${flags[@]}" >/dev/null)
	wait_serving "$port" 30 || die "$tool: the app does not answer"
	"$LOADGEN" -url "http://127.0.0.1:$port/" -rate "$RATE" -conns "$CONNS" -method POST -duration 300s -timeout "$TIMEOUT" -timeline "$OUT/$tool-timeline.txt" \
		>"$OUT/$tool-load.txt" 2>&1 &
	lg=$!
	LOADGEN_PIDS+=("$lg")
	sleep 1
	t0=$(now_ns)
	for r in $(seq "$RELOADS"); do
		cli "$tool" reload web >>"$OUT/$tool-reload.log" 2>&1 || log "$tool: reload $r failed (see $OUT/$tool-reload.log)"
		sleep 0.5
	done
	t1=$(now_ns)
	sleep 1
	kill -INT "$lg"
	wait "$lg" || true
	line=$(tail -n 1 "$OUT/$tool-load.txt")
	printf '%s %s secs_per_reload=%s\n' "$tool" "$line" \
		"$(awk -v ns=$((t1 - t0)) -v n="$RELOADS" 'BEGIN { printf "%.2f", ns / 1e9 / n - 0.5 }')" >>"$OUT/results.txt"
	[ "$tool" = corral ] && cli corral events web --json --nostream 2>/dev/null | grep '"type":"drain"' >"$OUT/corral-drains.txt" || true
	cli "$tool" kill >/dev/null 2>&1 || true
done

echo "keep-alive reloads: express@4 ($(cd "$APPDIR" && "$NODE" -p 'require("express/package.json").version')), node $("$NODE" --version), $(nproc) cores, $INSTANCES instances, $RATE req/s POST over $CONNS connections, $RELOADS reloads, timeout $TIMEOUT"
printf '%-16s %8s %8s %8s %8s %8s %8s %14s\n' tool failed sent timeout reset eof other secs/reload
while read -r tool rest; do
	get() { sed -nE "s/.*(^| )$1=([^ ]+).*/\2/p" <<<"$rest"; }
	printf '%-16s %8s %8s %8s %8s %8s %8s %14s\n' "$tool" "$(get failures)" "$(get sent)" "$(get timeouts)" "$(get err_reset)" "$(get err_eof)" \
		"$(get err_other)" "$(get secs_per_reload)"
done <"$OUT/results.txt"
[ -s "$OUT/corral-drains.txt" ] && echo "corral drain reports: $(wc -l <"$OUT/corral-drains.txt") drains, $(grep -o '"cut":[0-9]*' "$OUT/corral-drains.txt" | awk -F: '{ s += $2 } END { print s + 0 }') connections cut"
echo "(raw results in $OUT)"
