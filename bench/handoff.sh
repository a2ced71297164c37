#!/usr/bin/env bash
# The hand-off path (issue 13): the CPU a cluster primary spends per handed-off `Connection: close`
# connection, the corral daemon as primary against Node's own primary with the same workers, side by side
# in one run. Two sets of workers:
#
#   app   2 Node workers of examples/node/app.js: corral's daemon runs `corral start examples/node/app.js
#         -i 2` (cluster mode); Node's primary is bench/node-primary.js; bench/cmd/goprimary (the cluster
#         package alone, no daemon) for reference.
#   tiny  2 minimal Go workers (bench/cmd/goworker with GOWORKER_TINY=1: one read, one write, close per
#         connection), so that the primary's share of the work is as large as it gets: the daemon runs
#         `corral start goworker -i 2 --exec-mode cluster`, Node's primary starts them with WORKER_EXEC.
#
# Each (tool, workers) pair is loaded with `wrk -H 'Connection: close'` (one TCP connection per request, so
# requests = hand-offs), ROUNDS times, the tools interleaved within a round. Per sample, from the primary's
# utime+stime (/proc/PID/stat) over the run: `WORKERS_cpu_us_per_conn` (primary CPU µs per connection),
# `WORKERS_conns_per_s` (connections/s), `WORKERS_primary_cpu_pct` (% of one core) and, for tiny,
# `tiny_handoffs_per_cpu_s` (connections per second of primary CPU: the most hand-offs one core of the
# primary sustains at that load); `WORKERS_errors` (wrk socket errors + non-2xx).
#
# Tools: corral (the daemon's pid from $CORRAL_HOME/corral.pid), node (bench/node-primary.js), goprimary.
# Targets: corral's app_cpu_us_per_conn <= 1/3 of node's; tiny_handoffs_per_cpu_s >= 3x node's.
#
# Env: TOOLS ("corral node goprimary"), SETS ("app tiny"), ROUNDS (3), DURATION (8s), THREADS (2), CONNS
# (64), WARMUP (2s), PORT_BASE (18180), NODE (node on PATH), OUT (bench/results/handoff-<time>),
# PROFILE=1 (the daemon writes a pprof CPU profile of the whole run to $OUT/corral-cpu.pprof, read with
# `go tool pprof`), KEEP_TMP=1. About ROUNDS x tools x sets x (DURATION + 2 s) plus start-up: ~3 minutes.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOOLS=${TOOLS:-"corral node goprimary"}
SETS=${SETS:-"app tiny"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
WARMUP=${WARMUP:-2s}
PORT_BASE=${PORT_BASE:-18180}
NODE=${NODE:-$(command -v node || true)}
OUT=${OUT:-$REPO/bench/results/handoff-$(date +%Y%m%d-%H%M%S)}
dur_s=${DURATION%s}
[[ $dur_s =~ ^[0-9]+$ ]] || die "DURATION=$DURATION: want whole seconds like 8s"
[[ $ROUNDS =~ ^[0-9]+$ ]] && [ "$ROUNDS" -gt 0 ] || die "ROUNDS=$ROUNDS: want a whole number above 0"

use_node
tool_homes
ensure_apt wrk wrk || die "wrk is missing and could not be installed"
GOWORKER=$BENCH_TMP/goworker
GOPRIMARY=$BENCH_TMP/goprimary
log "building ./cmd/corral, bench/cmd/goprimary and bench/cmd/goworker"
(cd "$REPO" && go build -o "$CORRAL_BIN" ./cmd/corral && go build -o "$GOPRIMARY" ./bench/cmd/goprimary &&
	go build -o "$GOWORKER" ./bench/cmd/goworker) >"$OUT/build.log" 2>&1 || die "go build failed (see $OUT/build.log)"
APP=$REPO/examples/node/app.js
log "node $("$NODE" --version), $(nproc) cores, $(wrk --version 2>&1 | head -n 1 | cut -c1-30); results in $OUT"

CORRAL_STARTED=0
declare -A PIDS PORTS
cleanup() {
	local k d
	if [ "$CORRAL_STARTED" = 1 ]; then
		d=$(daemon_pid corral) || d=
		CLI_TIMEOUT=20 cli corral kill >/dev/null 2>&1 || true
		[ -n "$d" ] && owned "$d" && kill -KILL "$d" 2>/dev/null || true
	fi
	# start runs in $(...), so spawn's record of what it started is lost: stop them from here.
	for k in "${!PIDS[@]}"; do
		case $k in corral-*) ;; *) stop_group "${PIDS[$k]}" ;; esac
	done
	cleanup_all
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start TOOL SET PORT starts the primary of TOOL with the workers of SET on PORT and prints its pid.
# It runs in $(...): the caller records the pid (and, for corral, that the daemon runs).
start() {
	local tool=$1 set=$2 port=$3 logf=$OUT/$1-$2.log
	case $tool-$set in
	node-app) PORT=$port spawn "$logf" "$NODE" "$REPO/bench/node-primary.js" 2 "$APP" ;;
	node-tiny) PORT=$port GOWORKER_TINY=1 WORKER_EXEC=$GOWORKER spawn "$logf" "$NODE" "$REPO/bench/node-primary.js" 2 goworker ;;
	goprimary-app) spawn "$logf" "$GOPRIMARY" -workers 2 -exec "$NODE" -port "$port" -- "$APP" ;;
	goprimary-tiny) GOWORKER_TINY=1 spawn "$logf" "$GOPRIMARY" -workers 2 -exec "$GOWORKER" -port "$port" ;;
	corral-app | corral-tiny)
		# The first start starts the daemon, with the profiling asked for (PROFILE=1).
		local env=(PORT="$port")
		[ "${PROFILE:-0}" = 1 ] && [ "$CORRAL_STARTED" = 0 ] && env+=(CORRAL_DEBUG_CPUPROFILE="$OUT/corral-cpu.pprof")
		if [ "$set" = app ]; then
			env "${env[@]}" timeout -k 5 60 "$CORRAL_BIN" start "$APP" -i 2 --name handoff-app >"$logf" 2>&1 || return 1
		else
			env "${env[@]}" GOWORKER_TINY=1 timeout -k 5 60 "$CORRAL_BIN" start "$GOWORKER" -i 2 --exec-mode cluster \
				--name handoff-tiny >"$logf" 2>&1 || return 1
		fi
		wait_serving "$port" 30 >&2 || return 1
		daemon_pid corral
		return 0
		;;
	*) die "unknown tool $tool (TOOLS=$TOOLS)" ;;
	esac
	wait_line "$logf" " ready 2\$" 30 || return 1
	wait_serving "$port" 30 >&2 || return 1
	echo "$SPAWNED"
}

# result TOOL KEY VALUE records one sample.
result() { echo "$1 $2 $3" >>"$OUT/results"; }

# measure TOOL SET runs wrk in close mode against the pair and records its samples.
measure() {
	local tool=$1 set=$2 pid=${PIDS[$1-$2]} port=${PORTS[$1-$2]} out=$OUT/$1-$2-r$3.wrk c0 c1 t0 t1 reqs errs
	c0=$(cpu_ticks "$pid") || return 1
	t0=$(now_ns)
	timeout $((dur_s + 30)) wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -H 'Connection: close' "http://127.0.0.1:$port/" >"$out" 2>&1 ||
		log "wrk exited non-zero for $tool/$set (see $out)"
	t1=$(now_ns)
	c1=$(cpu_ticks "$pid") || return 1
	reqs=$(awk '/requests in/ { print $1 }' "$out")
	errs=$(awk '/Socket errors:/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 } /Non-2xx/ { s += $NF } END { print s + 0 }' "$out")
	[ -n "$reqs" ] && [ "$reqs" -gt 0 ] || {
		log "$tool/$set: no requests (see $out)"
		return 0
	}
	awk -v t="$tool" -v s="$set" -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v ns=$((t1 - t0)) -v r="$reqs" -v e="$errs" 'BEGIN {
		cpu = d / hz; secs = ns / 1e9
		printf "%s %s_cpu_us_per_conn %.1f\n", t, s, cpu * 1e6 / r
		printf "%s %s_conns_per_s %.0f\n", t, s, r / secs
		printf "%s %s_primary_cpu_pct %.1f\n", t, s, 100 * cpu / secs
		if (s == "tiny" && cpu > 0) printf "%s %s_handoffs_per_cpu_s %.0f\n", t, s, r / cpu
		printf "%s %s_errors %d\n", t, s, e
	}' >>"$OUT/results"
	printf '    %-9s %-4s round %d: %s\n' "$tool" "$set" "$3" "$(awk -v t="$tool" -v s="$set" '$1 == t && index($2, s "_") == 1 { v[$2] = $3 } END {
		printf "%s conn/s, %s µs CPU/conn, primary %s%%, errors %s", v[s "_conns_per_s"], v[s "_cpu_us_per_conn"], v[s "_primary_cpu_pct"], v[s "_errors"] }' <(tail -n 5 "$OUT/results"))" >&2
}

: >"$OUT/results"
i=0
for set in $SETS; do
	for tool in $TOOLS; do
		port=$((PORT_BASE + i))
		i=$((i + 1))
		log "starting $tool with the $set workers on 127.0.0.1:$port"
		[ "$tool" = corral ] && CORRAL_STARTED_BEFORE=$CORRAL_STARTED && CORRAL_STARTED=1
		if ! pid=$(CORRAL_STARTED=${CORRAL_STARTED_BEFORE:-0} start "$tool" "$set" "$port"); then
			log "$tool/$set did not start; left out (log: $OUT/$tool-$set.log)"
			continue
		fi
		PIDS[$tool-$set]=$pid
		PORTS[$tool-$set]=$port
		if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
			timeout 60 wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -H 'Connection: close' "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
		fi
	done
done
for r in $(seq "$ROUNDS"); do
	log "round $r of $ROUNDS"
	for set in $SETS; do
		for tool in $TOOLS; do
			[ -n "${PIDS[$tool-$set]:-}" ] && measure "$tool" "$set" "$r"
		done
	done
done

# stats TOOL KEY prints "median [min-max]" of the samples, or n/a.
stats() {
	awk -v t="$1" -v k="$2" '$1 == t && $2 == k { v[n++] = $3 } END {
		if (n == 0) { print "n/a"; exit }
		for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { x = v[i]; v[i] = v[j]; v[j] = x }
		m = n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2
		printf "%g [%g-%g]", m, v[0], v[n - 1] }' "$OUT/results"
}
median() { stats "$1" "$2" | cut -d' ' -f1; }

{
	echo
	echo "hand-off path: wrk -t$THREADS -c$CONNS -d$DURATION -H 'Connection: close', $ROUNDS rounds, $(nproc) cores, node $("$NODE" --version)"
	for set in $SETS; do
		keys="${set}_cpu_us_per_conn ${set}_conns_per_s ${set}_primary_cpu_pct ${set}_errors"
		[ "$set" = tiny ] && keys="$keys tiny_handoffs_per_cpu_s"
		for key in $keys; do
			printf '%-26s' "$key"
			for tool in $TOOLS; do printf '  %-9s %-24s' "$tool" "$(stats "$tool" "$key")"; done
			echo
		done
	done
	echo
	a=$(ratio "$(median corral app_cpu_us_per_conn)" "$(median node app_cpu_us_per_conn)")
	echo "corral/node CPU per connection, app workers: $a (target <= 0.33: $(awk -v a="$a" 'BEGIN { print (a != "n/a" && a <= 0.33) ? "met" : "not met" }'))"
	b=$(ratio "$(median corral tiny_handoffs_per_cpu_s)" "$(median node tiny_handoffs_per_cpu_s)")
	echo "corral/node hand-offs per CPU-second, tiny workers: $b (target >= 3: $(awk -v a="$b" 'BEGIN { print (a != "n/a" && a >= 3) ? "met" : "not met" }'))"
	echo "goprimary/node CPU per connection, app workers: $(ratio "$(median goprimary app_cpu_us_per_conn)" "$(median node app_cpu_us_per_conn)")"
} | tee "$OUT/summary.txt"
