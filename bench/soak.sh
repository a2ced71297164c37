#!/usr/bin/env bash
# Leak soak of the daemon, bounded: its open fds (/proc/PID/fd), RSS (VmRSS), threads and, for corral,
# goroutines (`corral ping --json`, runtime.NumGoroutine() in the daemon) and the keeper's fds and RSS,
# sampled
#
#   before      a 2-instance cluster app (examples/node/app.js) running and reloaded once (warm-up);
#   crashes     after SOAK_RESTARTS (2000) crash-restarts: CRASH_APPS (4) fork apps running /bin/false
#               (exits 1 at once; --restart-delay RESTART_DELAY (0), --max-restarts 1000000, --min-uptime 0),
#               counted as the sum of their restart_time in jlist, then deleted;
#   reloads     after SOAK_RELOADS (50) `reload` of the cluster app, one after the other;
#
# each sample taken SETTLE (3) seconds after the phase. The ratio after/before should be flat within
# noise (RSS of a Go or Node heap may stay above its start after a burst without being a leak; fds,
# goroutines and zombies should come back exactly). The daemon pid is sampled too: a daemon that died
# and was restarted (by corral's keeper) resets every figure, and is reported.
#
# Tools (TOOLS): corral (./cmd/corral built here, private CORRAL_HOME), pm2 (npm into the scratch dir,
# private PM2_HOME; no goroutines). Env: TOOLS ("corral pm2"), SOAK_RESTARTS (2000), CRASH_APPS (4),
# RESTART_DELAY (0 ms), SOAK_RELOADS (50), RELOAD_INSTANCES (2), SOAK_TIMEOUT (crash phase bound,
# 300 s), SETTLE (3 s), PM2_VERSION (latest), PORT_BASE (19800), NODE, OUT (default
# bench/results/soak-<time>), KEEP_TMP=1. A few minutes by default; SOAK_RESTARTS=300 SOAK_RELOADS=10
# for a quick run.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOOLS=${TOOLS:-"corral pm2"}
SOAK_RESTARTS=${SOAK_RESTARTS:-2000}
CRASH_APPS=${CRASH_APPS:-4}
RESTART_DELAY=${RESTART_DELAY:-0}
SOAK_RELOADS=${SOAK_RELOADS:-50}
RELOAD_INSTANCES=${RELOAD_INSTANCES:-2}
SOAK_TIMEOUT=${SOAK_TIMEOUT:-300}
SETTLE=${SETTLE:-3}
PM2_VERSION=${PM2_VERSION:-latest}
PORT_BASE=${PORT_BASE:-19800}
NODE=${NODE:-$(command -v node || true)}
OUT=${OUT:-$REPO/bench/results/soak-$(date +%Y%m%d-%H%M%S)}
APP=$REPO/examples/node/app.js
CRASHER=${CRASHER:-/bin/false}
WEB=web

use_node
for v in SOAK_RESTARTS CRASH_APPS RESTART_DELAY SOAK_RELOADS RELOAD_INSTANCES SOAK_TIMEOUT SETTLE; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v}: want a whole number"
done
[ "$CRASH_APPS" -gt 0 ] || die "CRASH_APPS must be at least 1"
[ -x "$CRASHER" ] || die "CRASHER=$CRASHER is not executable"
tool_homes

# stop_tool TOOL: the tool's own `kill` (apps, daemon, keeper), then SIGKILL of whatever of this run is
# left among the daemon, the keeper and their children.
stop_tool() {
	local tool=$1 pid pids
	pids="$(daemon_pid "$tool" || true) $(if [ "$tool" = corral ]; then keeper_pid; fi)"
	for pid in $pids; do pids="$pids $(ps -o pid= --ppid "$pid" 2>/dev/null | tr '\n' ' ')"; done
	stop_owned "$tool" "$pids"
}

CURRENT_TOOL=
cleanup() {
	[ -n "$CURRENT_TOOL" ] && stop_tool "$CURRENT_TOOL"
	cleanup_all
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# result TOOL KEY VALUE records one measurement.
result() {
	echo "$1 $2 $3" >>"$OUT/results"
	printf '    %-7s %-28s %s\n' "$1" "$2" "$3" >&2
}

# wait_web TOOL PORT SECONDS waits until the cluster app has RELOAD_INSTANCES online and serves.
wait_web() {
	local tool=$1 port=$2 end n=0
	end=$(($(now_ns) + $3 * 1000000000))
	while [ "$(now_ns)" -lt "$end" ]; do
		n=$(jlist_rows "$tool" | awk -v w="$WEB" '$1 == w && $3 == "online" && $2 > 0' | wc -l) || n=0
		[ "$n" -ge "$RELOAD_INSTANCES" ] && curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null && return 0
		sleep 0.2
	done
	log "$tool: $WEB not serving with $RELOAD_INSTANCES instances after ${3}s ($n online)"
	return 1
}

# fds PID, threads PID, zombies PID...: open fds, threads, zombie children of the PIDs.
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
threads() { awk '/^Threads:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
zombies() {
	local n=0 p
	for p in "$@"; do
		[ -n "$p" ] && n=$((n + $(ps -o stat= --ppid "$p" 2>/dev/null | grep -c '^Z' || true)))
	done
	echo "$n"
}

# sample TOOL PHASE records the daemon's (and the keeper's) figures under PHASE.
sample() {
	local tool=$1 phase=$2 dpid kpid g
	sleep "$SETTLE"
	dpid=$(daemon_pid "$tool") || dpid=
	result "$tool" "$phase:daemon_pid" "${dpid:-none}"
	[ -n "$dpid" ] && kill -0 "$dpid" 2>/dev/null || return 0
	result "$tool" "$phase:daemon_fds" "$(fds "$dpid")"
	ls -l "/proc/$dpid/fd" >"$OUT/$tool-$phase-daemon-fds.txt" 2>&1 || true
	result "$tool" "$phase:daemon_rss_kib" "$(rss_kib "$dpid")"
	result "$tool" "$phase:daemon_threads" "$(threads "$dpid")"
	if [ "$tool" = corral ]; then
		g=$(CLI_TIMEOUT=10 cli corral ping --json | grep -o '"goroutines":[0-9]*' | cut -d: -f2) || g=
		result "$tool" "$phase:goroutines" "${g:-n/a}"
		kpid=$(keeper_pid)
		if [ -n "$kpid" ] && kill -0 "$kpid" 2>/dev/null; then
			result "$tool" "$phase:keeper_fds" "$(fds "$kpid")"
			result "$tool" "$phase:keeper_rss_kib" "$(rss_kib "$kpid")"
		fi
	fi
	result "$tool" "$phase:zombies" "$(zombies "$dpid" "${kpid:-}")"
}

# crash_phase TOOL starts CRASH_APPS crash-looping apps, waits for SOAK_RESTARTS restarts (or
# SOAK_TIMEOUT), deletes them.
crash_phase() {
	local tool=$1 i t0 n=0 prev=-1 since secs started=0 left name extra=()
	# PM2's CLI has no --min-uptime (ecosystem files only): its crash-looping apps count as unstable
	# restarts, which --max-restarts 1000000 allows.
	[ "$tool" = corral ] && extra=(--min-uptime 0)
	t0=$(now_ns)
	since=$t0
	for i in $(seq 0 $((CRASH_APPS - 1))); do
		if cli "$tool" start "$CRASHER" --name "crash-$i" --interpreter none --restart-delay "$RESTART_DELAY" \
			--max-restarts 1000000 "${extra[@]}" >>"$OUT/$tool-crash-start.log" 2>&1; then
			started=$((started + 1))
		else
			log "$tool: start crash-$i failed (see $OUT/$tool-crash-start.log)"
		fi
	done
	while [ "$started" -gt 0 ]; do
		n=$(jlist_rows "$tool" | awk '$1 ~ /^crash-/ { s += $4 } END { print s + 0 }') || n=0
		[ "${n:-0}" -ge "$SOAK_RESTARTS" ] && break
		[ $((($(now_ns) - t0) / 1000000000)) -lt "$SOAK_TIMEOUT" ] || {
			log "$tool: only $n crash-restarts after ${SOAK_TIMEOUT}s"
			break
		}
		# No progress for 20 s (the apps went errored, or the daemon is stuck): give up.
		if [ "${n:-0}" != "$prev" ]; then
			prev=${n:-0}
			since=$(now_ns)
		elif [ $((($(now_ns) - since) / 1000000000)) -ge 20 ]; then
			log "$tool: crash-restarts stuck at $n for 20s"
			break
		fi
		sleep 0.5
	done
	secs=$(awk -v d=$(($(now_ns) - t0)) 'BEGIN { printf "%.1f", d / 1e9 }')
	for i in $(seq 0 $((CRASH_APPS - 1))); do
		cli "$tool" delete "crash-$i" >/dev/null || log "$tool: delete crash-$i failed"
	done
	# A crash-looping app caught between two restarts may survive its delete (seen with PM2): retry.
	for i in 1 2 3; do
		left=$(jlist_rows "$tool" | awk '$1 ~ /^crash-/ { print $1 }' | sort -u) || left=
		[ -n "$left" ] || break
		log "$tool: still listed after delete: $(echo $left); deleting again"
		for name in $left; do cli "$tool" delete "$name" >/dev/null || true; done
		sleep 0.5
	done
	result "$tool" crash_restarts "${n:-0}"
	result "$tool" crash_secs "$secs"
	result "$tool" crash_restarts_per_s "$(awk -v n="${n:-0}" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0) ? n / s : 0 }')"
	result "$tool" crash_apps_left "$(jlist_rows "$tool" | grep -c '^crash-' || true)"
}

# reload_phase TOOL PORT reloads the cluster app SOAK_RELOADS times.
reload_phase() {
	local tool=$1 port=$2 i ok=0 t0 secs
	t0=$(now_ns)
	for i in $(seq "$SOAK_RELOADS"); do
		CLI_TIMEOUT=60 cli "$tool" reload "$WEB" >>"$OUT/$tool-reload.log" 2>&1 && ok=$((ok + 1))
	done
	secs=$(awk -v d=$(($(now_ns) - t0)) 'BEGIN { printf "%.1f", d / 1e9 }')
	result "$tool" reloads "$ok/$SOAK_RELOADS"
	result "$tool" reload_secs_each "$(awk -v s="$secs" -v n="$SOAK_RELOADS" 'BEGIN { printf "%.2f", (n > 0) ? s / n : 0 }')"
	if wait_web "$tool" "$port" 20; then result "$tool" serving_after yes; else result "$tool" serving_after NO; fi
}

prepare_tools corral
log "node $("$NODE" --version); tools: $TOOLS; $SOAK_RESTARTS crash-restarts ($CRASH_APPS apps of $CRASHER), $SOAK_RELOADS reloads; results in $OUT"

: >"$OUT/results"
i=0
for tool in $TOOLS; do
	port=$((PORT_BASE + i))
	i=$((i + 1))
	CURRENT_TOOL=$tool
	log "$tool: $WEB ($RELOAD_INSTANCES instances) on 127.0.0.1:$port"
	if PORT=$port cli "$tool" start "$APP" -i "$RELOAD_INSTANCES" --name "$WEB" >"$OUT/$tool-start.log" 2>&1 &&
		wait_web "$tool" "$port" 30; then
		CLI_TIMEOUT=60 cli "$tool" reload "$WEB" >>"$OUT/$tool-reload.log" 2>&1 || true # warm-up
		wait_web "$tool" "$port" 20 || true
		sample "$tool" before
		log "$tool: crash phase ($SOAK_RESTARTS restarts)"
		crash_phase "$tool"
		sample "$tool" crashes
		log "$tool: reload phase ($SOAK_RELOADS reloads)"
		reload_phase "$tool" "$port"
		sample "$tool" reloads
	else
		log "$tool: $WEB did not start; skipped (logs in $OUT)"
	fi
	stop_tool "$tool"
	CURRENT_TOOL=
done

value() { awk -v t="$1" -v k="$2" '$1 == t && $2 == k { print $3 }' "$OUT/results"; }
{
	echo
	echo "soak: $SOAK_RESTARTS crash-restarts ($CRASH_APPS apps of $CRASHER, restart delay ${RESTART_DELAY} ms), then $SOAK_RELOADS reloads"
	echo "      of a $RELOAD_INSTANCES-instance cluster app; samples ${SETTLE}s after each phase; $(nproc) cores, node $("$NODE" --version)"
	printf '%-7s %-15s %9s %9s %9s %8s\n' tool figure before crashes reloads ratio
	for tool in $TOOLS; do
		for f in daemon_pid daemon_fds daemon_rss_kib daemon_threads goroutines keeper_fds keeper_rss_kib zombies; do
			[ -n "$(value "$tool" "before:$f")" ] || continue
			b=$(value "$tool" "before:$f")
			a=$(value "$tool" "reloads:$f")
			if [ "$f" = daemon_pid ]; then
				if [ "$a" = "$b" ] && [ "$(value "$tool" crashes:daemon_pid)" = "$b" ]; then r=same; else r=CHANGED; fi
			elif [ "$a" = "$b" ]; then
				r=1.00
			else
				r=$(ratio "$a" "$b")
			fi
			printf '%-7s %-15s %9s %9s %9s %8s\n' "$tool" "$f" "$b" "$(value "$tool" "crashes:$f")" "$a" "$r"
		done
	done
	echo
	for tool in $TOOLS; do
		printf '%-7s crash-restarts %s in %ss (%s/s, crash apps still listed after the deletes: %s); reloads %s ok, %ss each; serving after: %s\n' "$tool" \
			"$(value "$tool" crash_restarts)" "$(value "$tool" crash_secs)" "$(value "$tool" crash_restarts_per_s)" \
			"$(value "$tool" crash_apps_left)" "$(value "$tool" reloads)" "$(value "$tool" reload_secs_each)" "$(value "$tool" serving_after)"
	done
	echo "(ratio = after the reloads / before; fds, goroutines and zombies should come back to their start, RSS within noise)"
} | tee "$OUT/summary.txt"
