#!/usr/bin/env bash
# Crash recovery, side by side in one run (issue 13): how long after a kill -9 of one instance of an
# INSTANCES (4) instance HTTP app the app is back to full capacity, while steady background traffic
# checks that the other instances serve every request meanwhile.
#
# "Back to full capacity" (the figure, KEY <case>_ms): the time from the SIGKILL to the first HTTP 200
# answered by the replacement instance itself, seen by a client. bench/cmd/crashprobe sends the kill
# (the time is taken just before kill(2)), then opens one new TCP connection every PROBE_EVERY (1ms)
# and reads the X-Worker-Pid header of each answer until a pid that was not among the instances
# before answers: the replacement is then serving, so every instance is again (at most PROBES (8)
# probes are under way at once, so that a stalled server is not flooded). Its resolution is
# about PROBE_EVERY times the number of instances (in listen and fork mode the kernel, not the tool,
# picks the process that accepts). Each case makes ROUNDS (30) kills, the next victim the next instance
# in turn, GAP (400ms) after the previous recovery (so that no instance lives less than PM2's default
# min_uptime, 1 s, with 4 instances: no kill counts as an unstable restart).
#
# All along, RATE (200) requests/s of background traffic (GET, Connection: close, one TCP connection
# each: each one goes through accept). Failures are split: `failed_inflight`, requests that were
# already under way when a kill came (the victim may have had them: lost whatever the supervisor
# does), and `failed` — every other failure, which the supervisor could have avoided: the target is
# 0 of those.
#
# Cases (CASES), each run by every tool of TOOLS that has it:
#
#   go-listen     corral start goworker -i N --listen 127.0.0.1:PORT (the daemon holds the socket and
#                 passes it as fd 3 through its activation shim; bench/cmd/goworker serves on it)
#   go-cluster    corral start goworker -i N --exec-mode cluster (Go workers, cluster package, the
#                 daemon as primary); node: Node's primary (bench/chaos-primary.js, re-forks on exit)
#                 with the same Go workers
#   go-fork       goworker with REUSEPORT=1 in fork mode, -i N: each instance binds the port with
#                 SO_REUSEPORT (how Go prefork servers run under PM2, which cannot cluster a binary);
#                 corral and pm2
#   node-cluster  examples/node/app.js -i N: corral (daemon as primary), pm2 (cluster mode), node
#                 (Node's primary, bench/chaos-primary.js)
#   node-listen   bench/listen-app.js -i N --listen (corral only)
#
# Node apps are reported apart: Node's own start-up dominates. The script measures it on this
# machine (`node_start_ms`, tool node: wall time of `node -e` that listens on a port and exits,
# NODE_RUNS (10) runs) and, for listen mode, the cost of corral's activation shim (`shim_ms`: wall
# time of `corral __activate /bin/true` minus the median of SHIM_RUNS (20) runs of /bin/true).
#
# Load does not distort the supervisor's own cost: `restart_cpu_us` (corral, pm2; RESTART_CPU_RUNS (3)
# samples) is the daemon's CPU time (utime+stime from /proc) per crash-restart while 4 fork apps of
# /bin/false (exit 1 at once; --restart-delay 0 --max-restarts 1000000, corral also --min-uptime 0:
# PM2's CLI has none) crash-loop for RESTART_CPU_SECS (5) s, counted with restart_time from jlist.
#
# For corral, each recovery is split into phases from the daemon's own event feed (`corral events
# --json`, bench/crash-phases.js): <case>_detect_ms (kill -> exit event: the exit seen and handled),
# _restart_ms (-> status launching: the restart policy), _spawn_ms (-> online) and _serve_ms (online
# -> the replacement's first answer: its own start-up).
#
# Output: $OUT/results (one line per sample: TOOL KEY VALUE), $OUT/summary.txt (median [min-max] per
# tool and key, the ratios corral/pm2 and corral/node, the issue's target: go-listen and go-cluster
# median <= 35 ms with 0 failed), per case the probe's output ($OUT/TOOL-CASE-probe.txt) and corral's
# events and phases.
#
# Env: TOOLS ("corral pm2 node"), CASES ("go-listen go-cluster go-fork node-cluster node-listen"),
# INSTANCES (4), ROUNDS (30), GAP (400ms), RATE (200), PROBE_EVERY (1ms), PROBES (8), TIMEOUT (per request, 2s),
# NODE_RUNS (10), SHIM_RUNS (20), RESTART_CPU_RUNS (3; 0 to skip), RESTART_CPU_SECS (5), PM2_VERSION (7), PORT_BASE (19300), NODE, OUT (default
# bench/results/crash-<time>), KEEP_TMP=1. About 3-4 minutes with the defaults (plus the pm2 install).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOOLS=${TOOLS:-"corral pm2 node"}
CASES=${CASES:-"go-listen go-cluster go-fork node-cluster node-listen"}
INSTANCES=${INSTANCES:-4}
ROUNDS=${ROUNDS:-30}
GAP=${GAP:-400ms}
RATE=${RATE:-200}
PROBE_EVERY=${PROBE_EVERY:-1ms}
PROBES=${PROBES:-8}
TIMEOUT=${TIMEOUT:-2s}
NODE_RUNS=${NODE_RUNS:-10}
SHIM_RUNS=${SHIM_RUNS:-20}
RESTART_CPU_RUNS=${RESTART_CPU_RUNS:-3}
RESTART_CPU_SECS=${RESTART_CPU_SECS:-5}
PM2_VERSION=${PM2_VERSION:-7}
PORT_BASE=${PORT_BASE:-19300}
NODE=${NODE:-$(command -v node || true)}
OUT=${OUT:-$REPO/bench/results/crash-$(date +%Y%m%d-%H%M%S)}
APP=$REPO/examples/node/app.js
LISTEN_APP=$REPO/bench/listen-app.js
PROBE=$BENCH_TMP/crashprobe
GOWORKER=$BENCH_TMP/goworker
APP_NAME=crash
PRIMARY_PID=
PROBE_PID=

use_node
tool_homes

# result TOOL KEY VALUE records one sample.
result() { echo "$1 $2 $3" >>"$OUT/results"; }

# supports TOOL CASE: whether the tool runs that case.
supports() {
	case "$1:$2" in
	corral:*) return 0 ;;
	pm2:go-fork | pm2:node-cluster) return 0 ;;
	node:go-cluster | node:node-cluster) return 0 ;;
	esac
	return 1
}

# stop_tool TOOL stops the app and the daemon or primary, and whatever of this run is left.
stop_tool() {
	local tool=$1 dpid pids
	case $tool in
	node)
		[ -n "$PRIMARY_PID" ] && stop_group "$PRIMARY_PID"
		PRIMARY_PID=
		;;
	*)
		dpid=$(daemon_pid "$tool") || true
		[ -n "$dpid" ] && kill -0 "$dpid" 2>/dev/null || return 0
		pids=$(ps -o pid= --ppid "$dpid" 2>/dev/null | tr '\n' ' ') || pids=
		stop_owned "$tool" "$dpid $pids $(keeper_pid)"
		;;
	esac
}

cleanup() {
	[ -n "$PROBE_PID" ] && kill -KILL "$PROBE_PID" 2>/dev/null
	for tool in $TOOLS; do stop_tool "$tool"; done
	cleanup_all
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_case TOOL CASE PORT starts the app and waits until it serves.
start_case() {
	local tool=$1 c=$2 port=$3 eco
	case "$tool:$c" in
	corral:go-listen) cli corral start "$GOWORKER" -i "$INSTANCES" --listen "127.0.0.1:$port" --name "$APP_NAME" ;;
	corral:go-cluster) PORT=$port cli corral start "$GOWORKER" -i "$INSTANCES" --exec-mode cluster --name "$APP_NAME" ;;
	corral:node-cluster) PORT=$port cli corral start "$APP" -i "$INSTANCES" --name "$APP_NAME" ;;
	corral:node-listen) cli corral start "$LISTEN_APP" -i "$INSTANCES" --listen "127.0.0.1:$port" --name "$APP_NAME" ;;
	pm2:node-cluster) PORT=$port cli pm2 start "$APP" -i "$INSTANCES" --name "$APP_NAME" ;;
	*:go-fork)
		# One fork-mode instance per process, each binding the port with SO_REUSEPORT.
		eco=$BENCH_TMP/$tool-go-fork.json
		printf '{"apps":[{"name":"%s","script":"%s","interpreter":"none","exec_mode":"fork","instances":%d,"env":{"PORT":"%d","REUSEPORT":"1"}}]}\n' \
			"$APP_NAME" "$GOWORKER" "$INSTANCES" "$port" >"$eco"
		cli "$tool" start "$eco"
		;;
	node:go-cluster) PORT=$port WORKER_EXEC=$GOWORKER spawn "$OUT/node-$c-primary.log" "$NODE" "$REPO/bench/chaos-primary.js" "$INSTANCES" goworker && PRIMARY_PID=$SPAWNED ;;
	node:node-cluster) PORT=$port spawn "$OUT/node-$c-primary.log" "$NODE" "$REPO/bench/chaos-primary.js" "$INSTANCES" "$APP" && PRIMARY_PID=$SPAWNED ;;
	*) return 1 ;;
	esac >"$OUT/$tool-$c-start.log" 2>&1 || return 1
	[ "$tool" = node ] && { wait_line "$OUT/node-$c-primary.log" " ready $INSTANCES\$" 30 || return 1; }
	wait_serving "$port" 20
}

# kv FILE KEY prints KEY's value from the summary line (the last line) of FILE.
kv() { tail -n 1 "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }

# run_case TOOL CASE PORT: start, probe, record, stop.
run_case() {
	local tool=$1 c=$2 port=$3 key=${2//-/_} dpid probe=$OUT/$1-$2-probe.txt line
	log "$tool $c: $INSTANCES instances on 127.0.0.1:$port"
	if ! start_case "$tool" "$c" "$port"; then
		log "$tool $c did not start; skipped (see $OUT/$tool-$c-start.log, $OUT/$tool-cli.log)"
		stop_tool "$tool"
		return 0
	fi
	dpid=$(daemon_pid "$tool") || dpid=
	sleep 1 # let the start settle (PM2 reports online before its workers listen)
	log "$tool $c: $ROUNDS kills"
	timeout -k 5 600 "$PROBE" -url "http://127.0.0.1:$port/" -instances "$INSTANCES" -rounds "$ROUNDS" -gap "$GAP" \
		-rate "$RATE" -probe-every "$PROBE_EVERY" -probes "$PROBES" -timeout "$TIMEOUT" -ppid "${dpid:-0}" >"$probe" 2>"$OUT/$tool-$c-probe.err" &
	PROBE_PID=$!
	wait "$PROBE_PID" || log "$tool $c: crashprobe failed (see $probe, $OUT/$tool-$c-probe.err)"
	PROBE_PID=
	while read -r line; do
		result "$tool" "${key}_ms" "$line"
	done < <(grep '^round=' "$probe" | tr ' ' '\n' | awk -F= '$1 == "recovery_ms" && $2 != "n/a" { print $2 }')
	if grep -q '^rounds=' "$probe"; then
		result "$tool" "${key}_failed" "$(kv "$probe" failed_other)"
		result "$tool" "${key}_failed_inflight" "$(kv "$probe" failed_inflight)"
		result "$tool" "${key}_sent" "$(kv "$probe" sent)"
		log "$tool $c: median $(kv "$probe" recovery_ms_median) ms [$(kv "$probe" recovery_ms_min)-$(kv "$probe" recovery_ms_max)]," \
			"failed $(kv "$probe" failed_other) (+$(kv "$probe" failed_inflight) in flight at a kill) of $(kv "$probe" sent)"
	fi
	if [ "$tool" = corral ]; then
		cli corral events --json --nostream --lines 2000 "$APP_NAME" >"$OUT/corral-$c-events.jsonl" || true
		"$NODE" "$REPO/bench/crash-phases.js" "$probe" "$OUT/corral-$c-events.jsonl" >"$OUT/corral-$c-phases.txt" || true
		awk -v k="$key" '!/^phase/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[2] != "n/a") print "corral", k "_" kv[1], kv[2] } }' \
			"$OUT/corral-$c-phases.txt" >>"$OUT/results"
	fi
	stop_tool "$tool"
}

# restart_sum TOOL prints the sum of restart_time over the tool's processes (jlist), or nothing.
restart_sum() {
	CLI_TIMEOUT=10 cli "$1" jlist | "$NODE" -e '
		let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
			try {
				let n = 0;
				for (const p of JSON.parse(s.slice(s.indexOf("[")))) n += p.pm2_env.restart_time;
				console.log(n);
			} catch {}
		});'
}

# restart_cpu TOOL records the daemon's CPU per crash-restart of 4 crash-looping /bin/false apps.
restart_cpu() {
	local tool=$1 i extra=() dpid c0 c1 r0 r1
	[ "$tool" = corral ] && extra=(--min-uptime 0)
	for i in 1 2 3 4; do
		cli "$tool" start /bin/false --name "crash-$i" --interpreter none --restart-delay 0 --max-restarts 1000000 \
			"${extra[@]}" >>"$OUT/$tool-restart-cpu.log" 2>&1 || { log "$tool: crash app did not start"; stop_tool "$tool"; return 0; }
	done
	sleep 1
	dpid=$(daemon_pid "$tool") || dpid=
	if [ -n "$dpid" ] && c0=$(cpu_ticks "$dpid") && r0=$(restart_sum "$tool") && [ -n "$r0" ]; then
		sleep "$RESTART_CPU_SECS"
		if c1=$(cpu_ticks "$dpid") && r1=$(restart_sum "$tool") && [ -n "$r1" ] && [ "$r1" -gt "$r0" ]; then
			result "$tool" restart_cpu_us "$(awk -v c=$((c1 - c0)) -v r=$((r1 - r0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", c * 1e6 / hz / r }')"
			result "$tool" restarts_per_s "$(awk -v r=$((r1 - r0)) -v s="$RESTART_CPU_SECS" 'BEGIN { printf "%.0f", r / s }')"
		fi
	fi
	stop_tool "$tool"
}

# median_ms CMD... runs CMD N times (N=$RUNS) and prints the median wall time in ms.
median_ms() {
	local i t0 t1
	for i in $(seq "$RUNS"); do
		t0=$(now_ns)
		"$@" >/dev/null 2>&1 || true
		t1=$(now_ns)
		awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e6 }'
	done | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

log "building bench/cmd/crashprobe and bench/cmd/goworker"
(cd "$REPO" && go build -o "$PROBE" ./bench/cmd/crashprobe && go build -o "$GOWORKER" ./bench/cmd/goworker) >"$OUT/build.log" 2>&1 ||
	die "go build failed (see $OUT/build.log)"
PLAIN=node
prepare_tools corral "$PLAIN"
log "node $("$NODE" --version); tools: $TOOLS; cases: $CASES; $INSTANCES instances, $ROUNDS kills each, $RATE req/s; results in $OUT"
: >"$OUT/results"

# Start-up costs that bound the replacement's own start.
log "node start-up (node -e, listen on a port, exit) and corral's activation shim"
for i in $(seq "$NODE_RUNS"); do
	RUNS=1 median_ms "$NODE" -e 'require("net").createServer().listen(0, "127.0.0.1", () => process.exit(0))' |
		while read -r v; do result node node_start_ms "$v"; done
done
if [[ " $TOOLS " == *" corral "* ]]; then
	base=$(RUNS=$SHIM_RUNS median_ms /bin/true)
	for i in $(seq "$SHIM_RUNS"); do
		a=$(RUNS=1 LISTEN_FDS=0 median_ms "$CORRAL_BIN" __activate /bin/true)
		result corral shim_ms "$(awk -v a="$a" -v b="$base" 'BEGIN { printf "%.3f", a - b }')"
	done
fi

for tool in $TOOLS; do
	[ "$tool" = node ] && continue
	for i in $(seq "$RESTART_CPU_RUNS"); do
		log "$tool: daemon CPU per crash-restart, run $i"
		restart_cpu "$tool"
	done
done

i=0
for c in $CASES; do
	for tool in $TOOLS; do
		supports "$tool" "$c" || continue
		run_case "$tool" "$c" $((PORT_BASE + i))
		i=$((i + 1))
	done
done

# ---- summary
# stats TOOL KEY prints "median [min-max] n=N" of the samples, or nothing.
stats() {
	awk -v t="$1" -v k="$2" '$1 == t && $2 == k { print $3 }' "$OUT/results" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) exit; m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f [%.2f-%.2f] n=%d\n", m, v[1], v[NR], NR }'
}
med() { stats "$1" "$2" | awk '{ print $1 }'; }
sum() { awk -v t="$1" -v k="$2" '$1 == t && $2 == k { s += $3; n++ } END { if (n) print s }' "$OUT/results"; }
{
	echo "crash recovery: $INSTANCES instances, $ROUNDS kill -9 per case, $RATE req/s background (Connection: close), $(nproc) cores,"
	echo "node $("$NODE" --version); back to full capacity = SIGKILL -> first 200 answered by the replacement (ms)"
	printf '%-8s %-14s %-32s %8s %10s\n' tool case "recovery_ms median [min-max]" failed inflight
	for c in $CASES; do
		key=${c//-/_}
		for tool in $TOOLS; do
			s=$(stats "$tool" "${key}_ms")
			[ -n "$s" ] || continue
			printf '%-8s %-14s %-32s %8s %10s\n' "$tool" "$c" "$s" "$(sum "$tool" "${key}_failed")" "$(sum "$tool" "${key}_failed_inflight")"
		done
	done
	echo
	echo "ratios (medians):"
	for c in $CASES; do
		key=${c//-/_}
		for other in pm2 node; do
			a=$(med corral "${key}_ms")
			b=$(med "$other" "${key}_ms")
			[ -n "$a" ] && [ -n "$b" ] && echo "  $c corral/$other: $(ratio "$a" "$b")"
		done
	done
	a=$(med corral go_listen_ms)
	b=$(med pm2 go_fork_ms)
	[ -n "$a" ] && [ -n "$b" ] && echo "  corral go-listen / pm2 go-fork: $(ratio "$a" "$b")"
	echo
	echo "start-up costs: node -e listen+exit $(stats node node_start_ms); corral activation shim (listen mode) $(stats corral shim_ms)"
	a=$(med node node_start_ms)
	for c in node-cluster node-listen; do
		b=$(med corral "${c//-/_}_ms")
		[ -n "$a" ] && [ -n "$b" ] && echo "  node's start-up / corral $c recovery: $(ratio "$a" "$b")"
	done
	a=$(med corral shim_ms)
	b=$(med corral go_listen_ms)
	[ -n "$a" ] && [ -n "$b" ] && echo "  activation shim / corral go-listen recovery: $(ratio "$a" "$b")"
	if grep -q '^corral .*_detect_ms' "$OUT/results"; then
		echo "corral phases (medians, ms): case detect restart spawn serve"
		for c in $CASES; do
			key=${c//-/_}
			[ -n "$(med corral "${key}_detect_ms")" ] || continue
			printf '  %-14s %8s %8s %8s %8s\n' "$c" "$(med corral "${key}_detect_ms")" "$(med corral "${key}_restart_ms")" \
				"$(med corral "${key}_spawn_ms")" "$(med corral "${key}_serve_ms")"
		done
	fi
	echo
	echo "daemon CPU per crash-restart (us; restarts/s): corral $(stats corral restart_cpu_us) ($(med corral restarts_per_s)/s);" \
		"pm2 $(stats pm2 restart_cpu_us) ($(med pm2 restarts_per_s)/s); corral/pm2 $(ratio "$(med corral restart_cpu_us)" "$(med pm2 restart_cpu_us)")"
	echo
	echo "target (issue 13): a --listen or Go cluster app back to full capacity <= 35 ms after kill -9 (median), 0 failed:"
	for c in go-listen go-cluster; do
		key=${c//-/_}
		m=$(med corral "${key}_ms")
		[ -n "$m" ] || continue
		f=$(sum corral "${key}_failed")
		met=no
		[ "$(awk -v m="$m" 'BEGIN { print (m <= 35) }')" = 1 ] && [ "${f:-1}" = 0 ] && met=yes
		echo "  corral $c: median $m ms, failed ${f:-n/a}: met $met"
	done
	echo "  (Oxmgr's published figure: crash -> replacement serving TCP 35 ms, PM2 177 ms — theirs, not measured here)"
} | tee "$OUT/summary.txt"
