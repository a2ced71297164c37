#!/usr/bin/env bash
# Compares the corral daemon with PM2, side by side, each with a private home in a scratch directory
# (PM2_HOME, CORRAL_HOME); all traffic goes to 127.0.0.1. Measured for each tool:
#
#   ls latency      `ls` with 14 processes loaded (hyperfine if it is there, else a loop of 20 runs)
#   daemon RSS      VmRSS of the daemon ($PM2_HOME/pm2.pid, $CORRAL_HOME/corral.pid): idle, then with 10
#                   fork apps + one 4-instance cluster app (examples/node/app.js)
#   reload          failed requests over RELOADS sequential `reload` of a RELOAD_INSTANCES-instance cluster
#                   app (examples/node/graceful.js) under a steady load from bench/cmd/loadgen, once with
#                   keep-alive connections and once with Connection: close
#   crash→serving   kill -9 the worker of a 1-instance cluster app; time until the port answers 200 from a
#                   new process (median and max of CRASH_ROUNDS)
#
# pm2 comes from npm into the scratch directory (PM2_VERSION, default latest); corral is built from
# ./cmd/corral. TOOLS="pm2 corral" (default) picks the tools; a corral that does not build is left out.
# Env: RATE (loadgen req/s, default 300), RELOADS (10), RELOAD_INSTANCES (2), CRASH_ROUNDS (5),
# PORT_BASE (19000), NODE (default node on PATH), OUT (default bench/results/pm2-<time>), KEEP_TMP=1.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOOLS=${TOOLS:-"pm2 corral"}
PM2_VERSION=${PM2_VERSION:-latest}
RATE=${RATE:-300}
RELOADS=${RELOADS:-10}
RELOAD_INSTANCES=${RELOAD_INSTANCES:-2}
CRASH_ROUNDS=${CRASH_ROUNDS:-5}
PORT_BASE=${PORT_BASE:-19000}
NODE=${NODE:-$(command -v node || true)}
OUT=${OUT:-$REPO/bench/results/pm2-$(date +%Y%m%d-%H%M%S)}
APP=$REPO/examples/node/app.js
GRACEFUL=$REPO/examples/node/graceful.js
LOADGEN=$BENCH_TMP/loadgen
GOWORKER=$BENCH_TMP/goworker

use_node
tool_homes
ensure_apt hyperfine hyperfine || log "hyperfine unavailable; timing ls with a loop"

# cli TOOL ARGS... runs the tool's CLI with its private home, bounded in time; unlike lib.sh's, its
# stderr is left alone.
cli() {
	local tool=$1
	shift
	case $tool in
	pm2) timeout 60 "$PM2_BIN" "$@" ;;
	corral) timeout 60 "$CORRAL_BIN" "$@" ;;
	esac
}

# kill_daemon TOOL stops the daemon with the tool's own `kill`, then by pid if it is still there.
kill_daemon() {
	local tool=$1 pid
	pid=$(daemon_pid "$tool") || true
	cli "$tool" kill >/dev/null 2>&1 || true
	if [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
}

cleanup() {
	local tool
	for tool in $TOOLS; do
		kill_daemon "$tool"
	done
	cleanup_all
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# jlist_rows TOOL prints "name pid status" for every process in `jlist`.
jlist_rows() {
	cli "$1" jlist 2>/dev/null | "$NODE" -e '
		let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
			const i = s.indexOf("[");
			for (const p of JSON.parse(s.slice(i))) console.log(p.name, p.pid, p.pm2_env && p.pm2_env.status);
		});'
}

# wait_online TOOL N SECONDS waits until jlist shows N processes online with a pid.
wait_online() {
	local tool=$1 n=$2 secs=$3 i count
	for i in $(seq $((secs * 5))); do
		count=$(jlist_rows "$tool" | awk '$3 == "online" && $2 > 0' | wc -l) || count=0
		[ "$count" -ge "$n" ] && return 0
		sleep 0.2
	done
	echo "$tool: $count of $n processes online after ${secs}s" >&2
	return 1
}

# median prints the median of the numbers on stdin.
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a"; else print a[int((NR + 1) / 2)] }'; }

# ls_ms TOOL prints the mean wall time of `TOOL ls` in milliseconds.
ls_ms() {
	local tool=$1 bin i t0 t1
	bin=$([ "$tool" = pm2 ] && echo "$PM2_BIN" || echo "$CORRAL_BIN")
	if command -v hyperfine >/dev/null 2>&1; then
		hyperfine -N --style none --warmup 3 --runs 20 --export-json "$OUT/$tool-ls.json" "$bin ls" >/dev/null 2>&1 &&
			"$NODE" -p "(require('$OUT/$tool-ls.json').results[0].mean * 1000).toFixed(1)" && return 0
		log "hyperfine failed; timing with a loop"
	fi
	for i in $(seq 20); do
		t0=$(now_ns)
		cli "$tool" ls >/dev/null 2>&1
		t1=$(now_ns)
		echo $(((t1 - t0) / 1000))
	done | awk '{ s += $1 } END { printf "%.1f", s / NR / 1000 }'
}

# result TOOL KEY VALUE records one measurement.
result() {
	echo "$1 $2 $3" >>"$OUT/results"
	printf '    %-7s %-28s %s\n' "$1" "$2" "$3" >&2
}

# reload_run TOOL MODE PORT measures failed requests over RELOADS reloads with loadgen in MODE.
reload_run() {
	local tool=$1 mode=$2 port=$3 flags=() lpid i t0 t1 line
	case $mode in *close) flags=(-close) ;; esac
	"$LOADGEN" -url "http://127.0.0.1:$port/" -rate "$RATE" -duration 300s "${flags[@]}" >"$OUT/$tool-reload-$mode.txt" 2>&1 &
	lpid=$!
	sleep 1
	t0=$(now_ns)
	for i in $(seq "$RELOADS"); do
		cli "$tool" reload reload-app >>"$OUT/$tool-reload-cli.log" 2>&1 || log "$tool reload $i failed (see $OUT/$tool-reload-cli.log)"
	done
	t1=$(now_ns)
	wait_online "$tool" "$RELOAD_INSTANCES" 30 || true
	sleep 1
	kill -INT "$lpid" 2>/dev/null || true
	wait "$lpid" || true
	line=$(tail -n 1 "$OUT/$tool-reload-$mode.txt")
	result "$tool" "reload_failed_$mode" "$(sed -E 's/.*failures=([0-9]+).*/\1/' <<<"$line")/$(sed -E 's/^sent=([0-9]+).*/\1/' <<<"$line")"
	result "$tool" "reload_secs_$mode" "$(awk -v ns=$((t1 - t0)) -v n="$RELOADS" 'BEGIN { printf "%.2f", ns / 1e9 / n }')"
}

# bench_tool TOOL runs every measurement for one tool.
bench_tool() {
	local tool=$1 dpid i port rows pid t0 ok ms times=()
	log "$tool: daemon idle"
	cli "$tool" ls >/dev/null
	for i in $(seq 50); do
		dpid=$(daemon_pid "$tool") && [ -n "$dpid" ] && kill -0 "$dpid" 2>/dev/null && break
		sleep 0.1
	done
	[ -n "${dpid:-}" ] || die "$tool: no daemon pid file"
	sleep 1
	result "$tool" rss_idle_kib "$(rss_kib "$dpid")"

	log "$tool: 10 fork apps + a 4-instance cluster app"
	for i in $(seq 10); do
		PORT=$((PORT_BASE + i)) cli "$tool" start "$APP" --name "fork$i" >/dev/null
	done
	PORT=$((PORT_BASE + 20)) cli "$tool" start "$APP" -i 4 --name web >/dev/null
	wait_online "$tool" 14 60 || die "$tool: apps did not come online"
	for i in $(seq 10) 20; do wait_http $((PORT_BASE + i)) 10; done
	sleep 2
	result "$tool" rss_loaded_kib "$(rss_kib "$dpid")"
	result "$tool" ls_ms "$(ls_ms "$tool")"
	cli "$tool" delete all >/dev/null

	log "$tool: $RELOADS reloads of a $RELOAD_INSTANCES-instance app under $RATE req/s"
	port=$((PORT_BASE + 30))
	PORT=$port cli "$tool" start "$GRACEFUL" -i "$RELOAD_INSTANCES" --name reload-app >/dev/null
	wait_online "$tool" "$RELOAD_INSTANCES" 30 || die "$tool: reload-app did not come online"
	wait_http "$port" 10
	reload_run "$tool" keepalive "$port"
	reload_run "$tool" close "$port"
	cli "$tool" delete all >/dev/null

	if [ "$tool" = corral ]; then
		# Go workers built with the cluster package (cluster.ServeHTTP drains): PM2 cannot run these in
		# cluster mode at all.
		log "$tool: $RELOADS reloads of a $RELOAD_INSTANCES-instance Go cluster app under $RATE req/s"
		port=$((PORT_BASE + 35))
		PORT=$port cli "$tool" start "$GOWORKER" -i "$RELOAD_INSTANCES" --exec-mode cluster --name reload-app >/dev/null
		wait_online "$tool" "$RELOAD_INSTANCES" 30 || die "$tool: Go reload-app did not come online"
		wait_http "$port" 10
		reload_run "$tool" go-keepalive "$port"
		reload_run "$tool" go-close "$port"
		cli "$tool" delete all >/dev/null
	fi

	log "$tool: crash to serving, $CRASH_ROUNDS rounds"
	port=$((PORT_BASE + 40))
	PORT=$port cli "$tool" start "$APP" -i 1 --name crash-app >/dev/null
	for i in $(seq "$CRASH_ROUNDS"); do
		wait_online "$tool" 1 30 || die "$tool: crash-app not online"
		wait_http "$port" 10
		sleep 1.2 # past min_uptime, so the restart counts as a stable one
		pid=$(jlist_rows "$tool" | awk '$1 == "crash-app" { print $2; exit }')
		[ -n "$pid" ] && [ "$pid" -gt 0 ] || die "$tool: no pid for crash-app"
		t0=$(now_ns)
		kill -KILL "$pid"
		ok=$("$LOADGEN" -wait-ok -url "http://127.0.0.1:$port/" -not-pid "$pid" -interval 2ms -timeout 5s -deadline 30s) ||
			die "$tool: port $port not serving after kill -9"
		ok=${ok#ok_unix_ns=}
		ms=$(awk -v a="${ok%% *}" -v b="$t0" 'BEGIN { printf "%.1f", (a - b) / 1e6 }')
		times+=("$ms")
	done
	result "$tool" crash_to_serving_ms_median "$(printf '%s\n' "${times[@]}" | median)"
	result "$tool" crash_to_serving_ms_max "$(printf '%s\n' "${times[@]}" | sort -n | tail -n 1)"
	cli "$tool" delete all >/dev/null
	kill_daemon "$tool"
}

log "building bench/cmd/loadgen"
(cd "$REPO" && go build -o "$LOADGEN" ./bench/cmd/loadgen) || die "go build ./bench/cmd/loadgen failed"
(cd "$REPO" && go build -o "$GOWORKER" ./bench/cmd/goworker) || die "go build ./bench/cmd/goworker failed"
BUILD_NOTE=1 prepare_tools corral
log "node $("$NODE" --version); tools: $TOOLS; results in $OUT"

: >"$OUT/results"
for tool in $TOOLS; do
	bench_tool "$tool"
done

# value TOOL KEY prints one recorded measurement.
value() { awk -v t="$1" -v k="$2" '$1 == t && $2 == k { print $3 }' "$OUT/results"; }

{
	echo
	echo "pm2 vs corral: node $("$NODE" --version), $(nproc) cores, $RATE req/s during reloads"
	printf '%-28s %14s %14s %10s\n' measurement pm2 corral corral/pm2
	for key in ls_ms rss_idle_kib rss_loaded_kib reload_failed_keepalive reload_failed_close reload_secs_keepalive \
		reload_secs_close reload_failed_go-keepalive reload_failed_go-close crash_to_serving_ms_median crash_to_serving_ms_max; do
		a=$(value pm2 "$key")
		b=$(value corral "$key")
		printf '%-28s %14s %14s %10s\n' "$key" "${a:--}" "${b:--}" "$(ratio "${b%%/*}" "${a%%/*}")"
	done
	echo "(reload_failed_* = failed/sent requests; reload_secs_* = seconds per reload)"
} | tee "$OUT/summary.txt"
