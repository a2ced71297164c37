#!/usr/bin/env bash
# Worker chaos under load, side by side in one run: a cluster app of INSTANCES (4) instances takes a
# steady RATE (500) req/s from bench/cmd/loadgen in keep-alive mode and, at the same time, another RATE
# req/s in Connection: close mode (one TCP connection per request), while one instance, picked at
# random from the tool's own process list, is SIGKILLed every KILL_EVERY (2) seconds for DURATION
# (60s). The tool has to bring the instances back by itself. Tools (TOOLS):
#
#   corral     corral start examples/node/app.js -i 4 (private CORRAL_HOME; ./cmd/corral built here)
#   node       Node's own primary, bench/chaos-primary.js, which re-forks a worker when one exits
#   pm2        pm2 start examples/node/app.js -i 4 (pm2 from npm into the scratch dir; private PM2_HOME)
#   corral-go  corral with Go workers (bench/cmd/goworker, cluster.ServeHTTP), --exec-mode cluster
#   node-go    Node's primary with the same Go workers (not in the default TOOLS; PM2 cannot run them)
#
# Reported per tool and traffic mode: requests sent, failed (non-200, timeouts, connection refused /
# reset / closed before an answer, other errors, dropped), the failure rate, and the longest outage:
# the longest interval in the send window during which no request completed with a 200 (see
# bench/cmd/loadgen); plus the kills made (of those tried: a try misses when the listed pid is already
# gone), the restarts the tool reports over the window (restart_time in jlist; re-forks for node),
# distinct worker pids that answered, whether the port still answers after the run, and loadgen's
# achieved rate and own CPU, to tell a saturated machine from a slow server. The victim is picked from
# `jlist` (its online instances; PICK=children picks from the daemon's child processes instead, which
# spares the daemon a jlist every KILL_EVERY) or, for node, from the primary's children.
#
# Before the chaos window, each tool also gets REROUTE_ROUNDS (3) rounds of: SIGSTOP one idle instance,
# open REROUTE_CONNS (16) connections at once (one request each), SIGKILL the stopped instance 0.6 s
# later. Requests still unanswered 0.4 s after the burst were given to the stopped instance; the row
# counts how many of them still got a 200 (re-routed to a live instance) rather than an error or a
# timeout (REROUTE_TIMEOUT, 3s).
#
# Env: TOOLS (default "corral node pm2 corral-go"), RATE (per traffic mode, 500), DURATION (60s),
# KILL_EVERY (seconds, 2), INSTANCES (4), TIMEOUT (per request, 2s), MODES ("keepalive close"; they run
# at the same time), METHOD (POST: Go's client would silently retry a failed GET on a reused keep-alive
# connection), REROUTE_ROUNDS (3; 0 to skip), REROUTE_CONNS (16), REROUTE_TIMEOUT (3s), SEED (for the
# random picks), PICK (jlist), PM2_VERSION (latest), PORT_BASE (19500), NODE, OUT (default
# bench/results/chaos-<time>), KEEP_TMP=1. Takes about TOOLS x (DURATION + 15 s) plus the pm2 install,
# about 5 minutes by default; a tool whose daemon hangs adds up to a minute (every CLI call is bounded).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOOLS=${TOOLS:-"corral node pm2 corral-go"}
RATE=${RATE:-500}
DURATION=${DURATION:-60s}
KILL_EVERY=${KILL_EVERY:-2}
INSTANCES=${INSTANCES:-4}
TIMEOUT=${TIMEOUT:-2s}
MODES=${MODES:-"keepalive close"}
METHOD=${METHOD:-POST}
REROUTE_ROUNDS=${REROUTE_ROUNDS:-3}
REROUTE_CONNS=${REROUTE_CONNS:-16}
REROUTE_TIMEOUT=${REROUTE_TIMEOUT:-3s}
PICK=${PICK:-jlist}
PM2_VERSION=${PM2_VERSION:-latest}
PORT_BASE=${PORT_BASE:-19500}
NODE=${NODE:-$(command -v node || true)}
OUT=${OUT:-$REPO/bench/results/chaos-$(date +%Y%m%d-%H%M%S)}
[ -n "${SEED:-}" ] && RANDOM=$SEED
APP=$REPO/examples/node/app.js
LOADGEN=$BENCH_TMP/loadgen
GOWORKER=$BENCH_TMP/goworker
APP_NAME=chaos
JLIST_APP=$APP_NAME # jlist_rows (lib.sh) lists this app

use_node
dur_s=${DURATION%s}
[[ $dur_s =~ ^[0-9]+$ ]] && [ "$dur_s" -gt 0 ] || die "DURATION=$DURATION: want whole seconds like 60s"
[[ $KILL_EVERY =~ ^[0-9]+([.][0-9]+)?$ ]] && [ "$(awk -v e="$KILL_EVERY" 'BEGIN { print (e >= 0.1) }')" = 1 ] ||
	die "KILL_EVERY=$KILL_EVERY: want seconds (at least 0.1) like 2 or 0.5"
case $PICK in jlist | children) ;; *) die "PICK=$PICK: want jlist or children" ;; esac
tool_homes
LOADGEN_PIDS=()
STOPPED_PID=
PRIMARY_PID=

# children PID prints the live (non-zombie) children of PID.
children() { ps -o pid=,stat= --ppid "$1" 2>/dev/null | awk '$2 !~ /^Z/ { print $1 }'; }

# instance_pids TOOL prints the pids of the app's online instances, from the tool's own list (jlist),
# or with PICK=children, or for node, the live children of the daemon or primary.
instance_pids() {
	case $1 in
	node*) children "$PRIMARY_PID" ;;
	*)
		if [ "$PICK" = children ]; then
			children "$(daemon_pid "$1")"
		else
			jlist_rows "$1" | awk '$2 == "online" && $1 > 0 { print $1 }'
		fi
		;;
	esac
}

# restarts TOOL prints the restarts the tool reports so far (sum of restart_time; re-forks for node), or
# n/a when jlist fails.
restarts() {
	local rows
	case $1 in
	node*) grep -c 'chaos-primary refork' "$OUT/$1-primary.log" || true ;;
	*)
		if rows=$(jlist_rows "$1") && [ -n "$rows" ]; then
			awk '{ s += $3 } END { print s + 0 }' <<<"$rows"
		else
			echo n/a
		fi
		;;
	esac
}

# wait_online TOOL SECONDS waits until INSTANCES instances are online (deadline-bounded, whatever the
# CLI does).
wait_online() {
	local tool=$1 secs=$2 end count=0
	end=$(($(now_ns) + secs * 1000000000))
	while :; do
		count=$(instance_pids "$tool" | wc -l) || count=0
		[ "$count" -ge "$INSTANCES" ] && return 0
		[ "$(now_ns)" -lt "$end" ] || break
		sleep 0.2
	done
	log "$tool: $count of $INSTANCES instances online after ${secs}s"
	return 1
}

# stop_tool TOOL stops the app and the daemon or primary; the instances it had are killed if left over.
stop_tool() {
	local tool=$1 dpid pids pid
	dpid=$(daemon_pid "$tool") || true
	# No live daemon: nothing to stop (and `jlist` or `kill` would start one).
	[ -n "$dpid" ] && kill -0 "$dpid" 2>/dev/null || return 0
	pids=$(
		[ -n "$dpid" ] && children "$dpid"
		case $tool in node*) ;; *) [ -n "$dpid" ] && jlist_rows "$tool" | awk '$1 > 0 { print $1 }' ;; esac
	) || true
	case $tool in
	node*)
		[ -n "$PRIMARY_PID" ] && stop_group "$PRIMARY_PID"
		PRIMARY_PID=
		;;
	*) CLI_TIMEOUT=20 cli "$tool" kill >/dev/null || log "$tool kill failed or timed out (see $OUT/$tool-cli.log)" ;;
	esac
	for pid in $dpid $pids; do
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
	done
	return 0
}

cleanup() {
	local tool
	kill_loadgens
	[ -n "$STOPPED_PID" ] && kill -CONT "$STOPPED_PID" 2>/dev/null
	for tool in $TOOLS; do
		case $tool in node*) ;; *) stop_tool "$tool" ;; esac
	done
	cleanup_all
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# result TOOL KEY VALUE records one measurement.
result() {
	echo "$1 $2 $3" >>"$OUT/results"
	printf '    %-10s %-28s %s\n' "$1" "$2" "$3" >&2
}

# kv FILE KEY prints KEY's value from the key=value summary line (the last line) of FILE.
kv() { tail -n 1 "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }

# start_app TOOL PORT starts the 4-instance app and waits until it serves.
start_app() {
	local tool=$1 port=$2
	case $tool in
	corral) PORT=$port cli corral start "$APP" -i "$INSTANCES" --name "$APP_NAME" >"$OUT/$tool-start.log" 2>&1 ;;
	corral-go) PORT=$port cli corral start "$GOWORKER" -i "$INSTANCES" --exec-mode cluster --name "$APP_NAME" >"$OUT/$tool-start.log" 2>&1 ;;
	pm2) PORT=$port cli pm2 start "$APP" -i "$INSTANCES" --name "$APP_NAME" >"$OUT/$tool-start.log" 2>&1 ;;
	node) PORT=$port spawn "$OUT/$tool-primary.log" "$NODE" "$REPO/bench/chaos-primary.js" "$INSTANCES" "$APP" && PRIMARY_PID=$SPAWNED ;;
	node-go) PORT=$port WORKER_EXEC=$GOWORKER spawn "$OUT/$tool-primary.log" "$NODE" "$REPO/bench/chaos-primary.js" "$INSTANCES" goworker && PRIMARY_PID=$SPAWNED ;;
	*) die "unknown tool $tool (TOOLS=$TOOLS)" ;;
	esac || return 1
	case $tool in node*) wait_line "$OUT/$tool-primary.log" " ready $INSTANCES\$" 30 || return 1 ;; esac
	wait_online "$tool" 30 && wait_serving "$port" 10
}

# pick LIST prints one word of LIST at random.
pick() {
	local a
	read -r -a a <<<"$1"
	[ ${#a[@]} -gt 0 ] && echo "${a[RANDOM % ${#a[@]}]}"
}

# is_instance TOOL PID checks that PID is a live child of the tool's daemon or primary (not a reused pid).
is_instance() {
	local dpid
	dpid=$(daemon_pid "$1") || return 1
	[ -n "$dpid" ] && [ "$(ps -o ppid= -p "$2" 2>/dev/null | tr -d ' ')" = "$dpid" ]
}

# reroute TOOL PORT runs the re-route rounds (see the header).
reroute() {
	local tool=$1 port=$2 round pid out pending=0 pending_ok=0 n
	for round in $(seq "$REROUTE_ROUNDS"); do
		wait_online "$tool" 30 && wait_serving "$port" 10 || {
			log "$tool: not serving before re-route round $round"
			return 1
		}
		sleep 0.5
		pid=$(pick "$(instance_pids "$tool" | tr '\n' ' ')") && is_instance "$tool" "$pid" || {
			log "$tool: no instance to stop"
			return 1
		}
		out=$OUT/$tool-reroute-$round.txt
		STOPPED_PID=$pid
		kill -STOP "$pid" 2>/dev/null || {
			STOPPED_PID=
			continue
		}
		"$LOADGEN" -burst "$REROUTE_CONNS" -mark 400ms -close -method "$METHOD" -timeout "$REROUTE_TIMEOUT" \
			-url "http://127.0.0.1:$port/" >"$out" 2>&1 &
		LOADGEN_PIDS+=($!)
		sleep 0.6
		kill -KILL "$pid" 2>/dev/null || true
		STOPPED_PID=
		wait "${LOADGEN_PIDS[-1]}" || true
		n=$(kv "$out" pending_at_mark)
		pending=$((pending + ${n:-0}))
		n=$(kv "$out" pending_ok)
		pending_ok=$((pending_ok + ${n:-0}))
		log "$tool: re-route round $round: stopped+killed $pid; $(kv "$out" pending_at_mark) requests waited on it, $(kv "$out" pending_ok) answered later"
	done
	result "$tool" reroute "$pending_ok/$pending"
}

# chaos TOOL PORT runs the chaos window: loadgens in every MODE, a SIGKILL every KILL_EVERY seconds.
chaos() {
	local tool=$1 port=$2 mode r0 r1 t0 k target now pid pids kills=0 misses=0
	r0=$(restarts "$tool")
	: >"$OUT/$tool-kills.log"
	start_loadgens "$port" "$OUT/$tool"
	t0=$(now_ns)
	for k in $(seq 1 100000); do
		target=$(awk -v t="$t0" -v k="$k" -v e="$KILL_EVERY" 'BEGIN { printf "%.0f", t + k * e * 1e9 }')
		[ "$target" -lt $((t0 + dur_s * 1000000000)) ] || break
		now=$(now_ns)
		[ "$target" -gt "$now" ] && sleep "$(awk -v d=$((target - now)) 'BEGIN { printf "%.3f", d / 1e9 }')"
		pids=$(instance_pids "$tool" | tr '\n' ' ') || pids=
		[ "$(now_ns)" -lt $((t0 + dur_s * 1000000000)) ] || break # the list came too late
		pid=$(pick "$pids") || pid=
		now=$(awk -v a="$(now_ns)" -v b="$t0" 'BEGIN { printf "%.2f", (a - b) / 1e9 }')
		if [ -n "$pid" ] && is_instance "$tool" "$pid" && kill -KILL "$pid" 2>/dev/null; then
			kills=$((kills + 1))
			echo "t=${now}s killed $pid (online: $pids)" >>"$OUT/$tool-kills.log"
		else
			misses=$((misses + 1))
			echo "t=${now}s no kill (online: ${pids:-none}; picked ${pid:-none})" >>"$OUT/$tool-kills.log"
		fi
	done
	for pid in "${LG_PIDS[@]}"; do wait "$pid" || true; done
	# The restarts of the last kill: give the tool a few seconds to report them.
	wait_online "$tool" 10 || true
	r1=$(restarts "$tool")
	result "$tool" kills "$kills/$((kills + misses))"
	if [ "$r0" = n/a ] || [ "$r1" = n/a ]; then result "$tool" restarts n/a; else result "$tool" restarts $((r1 - r0)); fi
	if wait_serving "$port" 10 2>/dev/null; then result "$tool" serving_after yes; else result "$tool" serving_after NO; fi
	for mode in $MODES; do
		result "$tool" "$mode" "$(tail -n 1 "$OUT/$tool-$mode.txt" | tr ' ' ',')"
	done
}

log "building bench/cmd/loadgen and bench/cmd/goworker"
(cd "$REPO" && go build -o "$LOADGEN" ./bench/cmd/loadgen && go build -o "$GOWORKER" ./bench/cmd/goworker) ||
	die "go build failed"
prepare_tools "corral corral-go" "node node-go"
log "node $("$NODE" --version); tools: $TOOLS; $RATE req/s per mode ($MODES), SIGKILL every ${KILL_EVERY}s for $DURATION; results in $OUT"

: >"$OUT/results"
i=0
for tool in $TOOLS; do
	port=$((PORT_BASE + i))
	i=$((i + 1))
	log "$tool: $INSTANCES instances on 127.0.0.1:$port"
	if ! start_app "$tool" "$port"; then
		log "$tool did not start; skipped (logs in $OUT)"
		stop_tool "$tool"
		continue
	fi
	if [ "$REROUTE_ROUNDS" -gt 0 ]; then
		log "$tool: $REROUTE_ROUNDS re-route rounds"
		reroute "$tool" "$port" || result "$tool" reroute n/a
	fi
	if wait_online "$tool" 30 && wait_serving "$port" 10; then
		log "$tool: chaos for $DURATION"
		sleep 1
		chaos "$tool" "$port"
	else
		log "$tool: not serving before the chaos window; skipped"
	fi
	stop_tool "$tool"
done

# value TOOL KEY prints one recorded value; lg TOOL MODE KEY one loadgen figure.
value() { awk -v t="$1" -v k="$2" '$1 == t && $2 == k { print $3 }' "$OUT/results"; }
lg() { value "$1" "$2" | tr ',' '\n' | awk -F= -v k="$3" '$1 == k { print $2 }'; }
# rate TOOL MODE prints failures/sent in percent.
rate() { awk -v f="$(lg "$1" "$2" failures)" -v s="$(lg "$1" "$2" sent)" 'BEGIN { if (s + 0 == 0) print "n/a"; else printf "%.3f", 100 * f / s }'; }

{
	echo
	echo "chaos: $INSTANCES instances, SIGKILL one every ${KILL_EVERY}s for $DURATION, $RATE req/s per mode ($MODES at once),"
	echo "       $METHOD, timeout $TIMEOUT, $(nproc) cores, node $("$NODE" --version); loadgen rps/cpu = its achieved rate, own CPU %"
	printf '%-10s %-9s %7s %7s %7s %11s %8s %6s %8s %5s %6s %12s\n' tool mode sent failed "fail%" "outage_ms" ">=100ms" kills restarts pids after "loadgen rps/cpu"
	for tool in $TOOLS; do
		for mode in $MODES; do
			[ -n "$(value "$tool" "$mode")" ] || continue
			printf '%-10s %-9s %7s %7s %7s %11s %8s %6s %8s %5s %6s %12s\n' "$tool" "$mode" "$(lg "$tool" "$mode" sent)" \
				"$(lg "$tool" "$mode" failures)" "$(rate "$tool" "$mode")" "$(lg "$tool" "$mode" longest_outage_ms)" \
				"$(lg "$tool" "$mode" outages)" "$(value "$tool" kills)" "$(value "$tool" restarts)" "$(lg "$tool" "$mode" pids)" \
				"$(value "$tool" serving_after)" "$(lg "$tool" "$mode" achieved_rps)/$(lg "$tool" "$mode" cpu_pct)"
		done
	done
	echo
	echo "failures by kind:"
	printf '%-10s %-9s %7s %8s %8s %6s %6s %6s %8s\n' tool mode non200 timeouts refused reset eof other dropped
	for tool in $TOOLS; do
		for mode in $MODES; do
			[ -n "$(value "$tool" "$mode")" ] || continue
			printf '%-10s %-9s %7s %8s %8s %6s %6s %6s %8s\n' "$tool" "$mode" "$(lg "$tool" "$mode" non200)" \
				"$(lg "$tool" "$mode" timeouts)" "$(lg "$tool" "$mode" err_refused)" "$(lg "$tool" "$mode" err_reset)" \
				"$(lg "$tool" "$mode" err_eof)" "$(lg "$tool" "$mode" err_other)" "$(lg "$tool" "$mode" dropped)"
		done
	done
	if [ "$REROUTE_ROUNDS" -gt 0 ]; then
		echo
		echo "re-route: requests on connections given to an instance that was SIGSTOPped, then SIGKILLed"
		echo "          ($REROUTE_ROUNDS rounds of $REROUTE_CONNS connections): answered 200 later / waiting on it at the kill"
		for tool in $TOOLS; do
			printf '  %-10s %s\n' "$tool" "$(value "$tool" reroute)"
		done
	fi
	echo
	echo "ratios (failure rate, longest outage; lower is better for corral; n/a: a figure is missing or the divisor is 0):"
	for mode in $MODES; do
		printf '  %-9s corral/node fail%% %5s outage %5s   corral/pm2 fail%% %5s outage %5s   corral-go/node-go fail%% %5s outage %5s\n' "$mode" \
			"$(ratio "$(rate corral "$mode")" "$(rate node "$mode")")" \
			"$(ratio "$(lg corral "$mode" longest_outage_ms)" "$(lg node "$mode" longest_outage_ms)")" \
			"$(ratio "$(rate corral "$mode")" "$(rate pm2 "$mode")")" \
			"$(ratio "$(lg corral "$mode" longest_outage_ms)" "$(lg pm2 "$mode" longest_outage_ms)")" \
			"$(ratio "$(rate corral-go "$mode")" "$(rate node-go "$mode")")" \
			"$(ratio "$(lg corral-go "$mode" longest_outage_ms)" "$(lg node-go "$mode" longest_outage_ms)")"
	done
	echo "(outage_ms = longest time without a 200; >=100ms = such gaps of 100 ms or more; kills = made/tried, a try"
	echo " misses when the picked pid is already gone; after = the port answers after the run; pids = workers that answered)"
} | tee "$OUT/summary.txt"
