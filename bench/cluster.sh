#!/usr/bin/env bash
# Compares cluster primaries under HTTP load on 127.0.0.1, side by side in one run:
#
#   node-node  2 Node workers (examples/node/app.js) behind Node's own cluster primary (bench/node-primary.js)
#   go-node    the same 2 Node workers behind the Go primary (bench/cmd/goprimary)
#   go-go      2 Go workers (bench/cmd/goworker) behind the Go primary
#   node-go    2 Go workers behind Node's primary (protocol interop; not in the ratios)
#   single     one Node process serving app.js directly (baseline, no primary)
#   bun-bun    2 Bun workers (bench/runtime-app.mjs) behind Bun's own primary (bench/runtime-primary.mjs)
#   go-bun     the same Bun workers behind the Go primary (Bun's node:http workers bind the port with
#              SO_REUSEPORT in both: the primary only starts them; docs/protocol.md §9)
#   deno-deno  2 Deno workers behind Deno's own primary
#   go-deno    the same Deno workers behind the Go primary (round-robin hand-off through the primary)
#
# Each is loaded with wrk in keep-alive mode and in Connection: close mode (one connection per request).
# Reported per run: requests/s, p99 latency, socket errors + non-2xx, and the CPU of the primary process
# (utime+stime from /proc/<pid>/stat, as % of one core; for "single" it is the serving process itself).
#
# Env: DURATION (wrk -d, default 10s), THREADS (-t, 2), CONNS (-c, 64), WORKERS (2), WARMUP (keep-alive
# warm-up before each config, default 2s; 0 to skip), PORT_BASE (18080), CONFIGS (default
# "node-node go-node go-go node-go single"), NODE (node binary, default the one on PATH), OUT (results
# directory, default bench/results/cluster-<time>), BUN and DENO (binaries, default the ones .ci/run installs
# in .cache/runtimes; the four Bun and Deno configs are in the default CONFIGS when both exist). Takes about
# CONFIGS x (2 x DURATION + WARMUP + ~3s).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup_all EXIT
trap 'exit 130' INT TERM

DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
WORKERS=${WORKERS:-2}
WARMUP=${WARMUP:-2s}
PORT_BASE=${PORT_BASE:-18080}
NODE=${NODE:-$(command -v node || true)}
BUN=${BUN:-$REPO/.cache/runtimes/bun/node_modules/@oven/bun-linux-x64/bin/bun}
DENO=${DENO:-$REPO/.cache/runtimes/deno/node_modules/@deno/linux-x64-glibc/deno}
default_configs="node-node go-node go-go node-go single"
if [ -x "$BUN" ] && [ -x "$DENO" ]; then
	default_configs="$default_configs bun-bun go-bun deno-deno go-deno"
fi
CONFIGS=${CONFIGS:-$default_configs}
OUT=${OUT:-$REPO/bench/results/cluster-$(date +%Y%m%d-%H%M%S)}

[ -n "$NODE" ] && [ -x "$NODE" ] || die "node not found (set NODE)"
ensure_apt wrk wrk || die "wrk is missing and could not be installed"
ensure_apt curl curl || die "curl is missing and could not be installed"
mkdir -p "$OUT"
dur_s=${DURATION%s}
[[ $dur_s =~ ^[0-9]+$ ]] || die "DURATION=$DURATION: want whole seconds like 10s"

log "building bench/cmd/goprimary and bench/cmd/goworker"
(cd "$REPO" && go build -o "$BENCH_TMP/goprimary" ./bench/cmd/goprimary && go build -o "$BENCH_TMP/goworker" ./bench/cmd/goworker) ||
	die "go build failed"
APP=$REPO/examples/node/app.js
RTAPP=$REPO/bench/runtime-app.mjs
log "node $("$NODE" --version), $(wrk --version 2>&1 | head -n 1 | cut -c1-40), results in $OUT"

# start_config NAME PORT starts the servers of config NAME and prints the pid to measure.
start_config() {
	local name=$1 port=$2 logf=$OUT/$1.log pid
	case $name in
	node-node) PORT=$port spawn "$logf" "$NODE" "$REPO/bench/node-primary.js" "$WORKERS" "$APP" && pid=$SPAWNED ;;
	go-node) spawn "$logf" "$BENCH_TMP/goprimary" -workers "$WORKERS" -exec "$NODE" -port "$port" -- "$APP" && pid=$SPAWNED ;;
	go-go) spawn "$logf" "$BENCH_TMP/goprimary" -workers "$WORKERS" -exec "$BENCH_TMP/goworker" -port "$port" && pid=$SPAWNED ;;
	node-go) PORT=$port WORKER_EXEC=$BENCH_TMP/goworker spawn "$logf" "$NODE" "$REPO/bench/node-primary.js" "$WORKERS" goworker && pid=$SPAWNED ;;
	single) PORT=$port HOST=127.0.0.1 spawn "$logf" "$NODE" "$APP" && pid=$SPAWNED ;;
	bun-bun) PORT=$port spawn "$logf" "$BUN" "$REPO/bench/runtime-primary.mjs" "$WORKERS" "$RTAPP" && pid=$SPAWNED ;;
	go-bun) spawn "$logf" "$BENCH_TMP/goprimary" -workers "$WORKERS" -exec "$BUN" -port "$port" -- "$RTAPP" && pid=$SPAWNED ;;
	deno-deno) PORT=$port spawn "$logf" "$DENO" run -A "$REPO/bench/runtime-primary.mjs" "$WORKERS" "$RTAPP" && pid=$SPAWNED ;;
	go-deno) spawn "$logf" "$BENCH_TMP/goprimary" -workers "$WORKERS" -exec "$DENO" -port "$port" -- run -A "$RTAPP" && pid=$SPAWNED ;;
	*) die "unknown config $name (CONFIGS=$CONFIGS)" ;;
	esac
	if [ "$name" = single ]; then
		wait_line "$logf" "listening on $port" 30 || return 1
	else
		wait_line "$logf" " ready $WORKERS\$" 30 || return 1
	fi
	wait_http "$port" 10 || return 1
	echo "$pid"
}

# to_ms VALUE converts a wrk latency like 812.00us, 1.20ms or 1.05s to milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) printf "%.2f", v / 1000; else if (v ~ /ms$/) printf "%.2f", v + 0;
		else if (v ~ /m$/) printf "%.2f", v * 60000; else if (v ~ /s$/) printf "%.2f", v * 1000; else print "n/a" }'
}

# measure NAME MODE PORT PID runs wrk and appends "name mode rps p99_ms errors cpu%" to $OUT/results.
measure() {
	local name=$1 mode=$2 port=$3 pid=$4 out=$OUT/$1-$2.wrk
	local hdr=() t0 t1 c0 c1 rps p99 errs cpu
	[ "$mode" = close ] && hdr=(-H 'Connection: close')
	c0=$(cpu_ticks "$pid")
	t0=$(now_ns)
	timeout $((dur_s + 30)) wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${hdr[@]}" "http://127.0.0.1:$port/" >"$out" 2>&1 ||
		log "wrk exited non-zero for $name/$mode (see $out)"
	t1=$(now_ns)
	c1=$(cpu_ticks "$pid") || c1=$c0
	rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
	p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
	errs=$(awk '/Socket errors:/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 } /Non-2xx/ { s += $NF } END { print s + 0 }' "$out")
	cpu=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", 100 * (d / hz) / (ns / 1e9) }')
	echo "$name $mode ${rps:-n/a} ${p99:-n/a} $errs $cpu" >>"$OUT/results"
	printf '    %-10s %-9s %10s req/s  p99 %8s ms  errors %6s  primary CPU %4s%%\n' "$name" "$mode" "${rps:-n/a}" "${p99:-n/a}" "$errs" "$cpu" >&2
}

: >"$OUT/results"
i=0
for name in $CONFIGS; do
	port=$((PORT_BASE + i))
	i=$((i + 1))
	log "$name on 127.0.0.1:$port"
	if ! pid=$(start_config "$name" "$port"); then
		log "$name did not start; skipped (log: $OUT/$name.log)"
		continue
	fi
	if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
		timeout 60 wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
	fi
	for mode in keepalive close; do
		measure "$name" "$mode" "$port" "$pid"
	done
	stop_group "$pid"
done

# field NAME MODE COLUMN prints one column (3 rps, 4 p99, 5 errors, 6 cpu) of a result.
field() { awk -v n="$1" -v m="$2" -v c="$3" '$1 == n && $2 == m { print $c }' "$OUT/results"; }

{
	echo
	echo "cluster bench: $WORKERS workers, wrk -t$THREADS -c$CONNS -d$DURATION, $(nproc) cores, node $("$NODE" --version)$([ -x "$BUN" ] && echo ", bun $("$BUN" --version)")$([ -x "$DENO" ] && echo ", deno $("$DENO" --version | head -n 1 | cut -d' ' -f2)")"
	printf '%-10s %-9s %10s %10s %8s %12s\n' config mode "req/s" "p99 ms" errors "primary CPU"
	while read -r n m rps p99 errs cpu; do
		printf '%-10s %-9s %10s %10s %8s %11s%%\n' "$n" "$m" "$rps" "$p99" "$errs" "$cpu"
	done <"$OUT/results"
	echo
	echo "ratios (Go primary / Node primary, same Node workers; req/s in close mode = connections/s):"
	for mode in keepalive close; do
		printf '  %-9s req/s %5s   CPU %5s   (go-go / node-node req/s %s)\n' "$mode" \
			"$(ratio "$(field go-node "$mode" 3)" "$(field node-node "$mode" 3)")" \
			"$(ratio "$(field go-node "$mode" 6)" "$(field node-node "$mode" 6)")" \
			"$(ratio "$(field go-go "$mode" 3)" "$(field node-node "$mode" 3)")"
	done
	if [ -n "$(field go-deno keepalive 3)$(field go-bun keepalive 3)" ]; then
		echo "Bun and Deno workers, Go primary / the runtime's own primary:"
		for rt in bun deno; do
			for mode in keepalive close; do
				printf '  %-4s %-9s req/s %5s   CPU %5s\n' "$rt" "$mode" \
					"$(ratio "$(field go-$rt "$mode" 3)" "$(field $rt-$rt "$mode" 3)")" \
					"$(ratio "$(field go-$rt "$mode" 6)" "$(field $rt-$rt "$mode" 6)")"
			done
		done
	fi
} | tee "$OUT/summary.txt"
