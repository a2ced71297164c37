#!/usr/bin/env bash
# The supervisor's own failures under load, side by side in one run: what the apps' clients see when the
# daemon is SIGKILLed, and when it is replaced in place. A cluster app of INSTANCES (4) instances
# (examples/node/app.js) takes a steady RATE (300) req/s from bench/cmd/loadgen over keep-alive
# connections and, at the same time, another RATE req/s with Connection: close, for DURATION (30s), while:
#
#   kill9    the daemon is SIGKILLed KILLS (3) times, evenly spaced over the window: corral's daemon (pid
#            from $CORRAL_HOME/corral.pid; not the keeper, which restarts it), PM2's God daemon
#            ($PM2_HOME/pm2.pid). After each kill, `jlist` is polled until it answers (answer_ms) and
#            until it lists the INSTANCES instances online again (listed_ms; "never" if not before the
#            next kill, or LS_WAIT seconds for the last one);
#   update   the daemon is replaced UPDATES (3) times, evenly spaced: `corral update` (the binary on
#            disk, i.e. the same build), `pm2 update`; update_ms is the wall time of the command.
#
# Tools (TOOLS): corral (private CORRAL_HOME; ./cmd/corral built here), pm2 (npm into the scratch dir,
# private PM2_HOME), corral-listen (corral, listen mode: `--listen 127.0.0.1:PORT -i 4` on
# bench/listen-app.js; PM2 has no equivalent). Each scenario starts from a fresh app and ends with the
# tool's `kill`.
#
# Reported per tool, scenario and traffic mode: requests sent, failed, the failure rate, the longest
# outage (longest interval of the send window without a 200, from loadgen), gaps of 100 ms or more,
# events made (of those tried), how many of the instance pids from before the window are still alive
# and still listed after it (pids_kept), the restart counters summed over the instances before -> after
# (restart_time in jlist; a daemon kill or an update should add none), the worst listed_ms / update_ms
# (back_ms), and whether the port still answers after the run. The per-event details follow the table.
#
# Env: TOOLS ("corral pm2 corral-listen"), SCENARIOS ("kill9 update"), RATE (per mode, 300), DURATION
# (30s), KILLS (3), UPDATES (3), LS_WAIT (20 s), INSTANCES (4), TIMEOUT (per request, 2s), MODES
# ("keepalive close"; at the same time), METHOD (POST), UPDATE_TIMEOUT (120 s per update command),
# PM2_VERSION (latest), PORT_BASE (19700), NODE, OUT (default bench/results/supervisor-<time>),
# KEEP_TMP=1. Takes about TOOLS x SCENARIOS x (DURATION + 15 s) plus the pm2 install: about 5 minutes.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOOLS=${TOOLS:-"corral pm2 corral-listen"}
SCENARIOS=${SCENARIOS:-"kill9 update"}
RATE=${RATE:-300}
DURATION=${DURATION:-30s}
KILLS=${KILLS:-3}
UPDATES=${UPDATES:-3}
LS_WAIT=${LS_WAIT:-20}
INSTANCES=${INSTANCES:-4}
TIMEOUT=${TIMEOUT:-2s}
MODES=${MODES:-"keepalive close"}
METHOD=${METHOD:-POST}
UPDATE_TIMEOUT=${UPDATE_TIMEOUT:-120}
PM2_VERSION=${PM2_VERSION:-latest}
PORT_BASE=${PORT_BASE:-19700}
NODE=${NODE:-$(command -v node || true)}
OUT=${OUT:-$REPO/bench/results/supervisor-$(date +%Y%m%d-%H%M%S)}
APP=$REPO/examples/node/app.js
LISTEN_APP=$REPO/bench/listen-app.js
LOADGEN=$BENCH_TMP/loadgen
APP_NAME=sup
JLIST_APP=$APP_NAME # jlist_rows (lib.sh) lists this app

use_node
dur_s=${DURATION%s}
[[ $dur_s =~ ^[0-9]+$ ]] && [ "$dur_s" -gt 0 ] || die "DURATION=$DURATION: want whole seconds like 30s"
for v in KILLS UPDATES LS_WAIT; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v}: want a whole number"
done
tool_homes
SEEN_PIDS=$BENCH_TMP/seen-pids
LOADGEN_PIDS=()
: >"$SEEN_PIDS"

# online_pids ROWS prints the sorted pids of the online instances in jlist_rows output.
online_pids() { awk '$2 == "online" && $1 > 0 { print $1 }' <<<"$1" | sort -n; }
# restart_sum ROWS prints the sum of restart_time.
restart_sum() { awk '{ s += $3 } END { print s + 0 }' <<<"$1"; }

# wait_online TOOL SECONDS waits until INSTANCES instances are online (deadline-bounded).
wait_online() {
	local tool=$1 end rows count=0
	end=$(($(now_ns) + $2 * 1000000000))
	while :; do
		rows=$(CLI_TIMEOUT=5 jlist_rows "$tool") && count=$(online_pids "$rows" | grep -c . || true)
		[ "${count:-0}" -ge "$INSTANCES" ] && return 0
		[ "$(now_ns)" -lt "$end" ] || break
		sleep 0.2
	done
	log "$tool: ${count:-0} of $INSTANCES instances online after ${2}s"
	return 1
}

# note_pids PIDS... remembers app pids, so that cleanup can end any left over (a PM2 app orphaned by its
# daemon's death, say).
note_pids() { [ $# -eq 0 ] || printf '%s\n' "$@" >>"$SEEN_PIDS"; }

# stop_tool TOOL stops the apps, the daemon and (corral) the keeper with the tool's own `kill`, then
# SIGKILLs whatever of this run is left: daemon, keeper, every app pid seen.
stop_tool() {
	local tool=$1
	stop_owned "$tool" "$(daemon_pid "$tool" || true) $(case $tool in corral*) keeper_pid ;; esac) $(sort -u "$SEEN_PIDS" || true)" supervisor_pids
	: >"$SEEN_PIDS"
	return 0
}
# supervisor_pids TOOL prints the daemon's pid and (corral) the keeper's, as they are now.
supervisor_pids() {
	daemon_pid "$1" || true
	case $1 in corral*) keeper_pid ;; esac
}

CURRENT_TOOL=
cleanup() {
	kill_loadgens
	[ -n "$CURRENT_TOOL" ] && stop_tool "$CURRENT_TOOL"
	cleanup_all
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# result TOOL SCENARIO KEY VALUE records one measurement.
result() {
	echo "$1 $2 $3 $4" >>"$OUT/results"
	printf '    %-13s %-7s %-24s %s\n' "$1" "$2" "$3" "$4" >&2
}

# start_app TOOL PORT starts the INSTANCES-instance app and waits until it serves.
start_app() {
	local tool=$1 port=$2
	case $tool in
	corral) PORT=$port cli corral start "$APP" -i "$INSTANCES" --name "$APP_NAME" ;;
	corral-listen) cli corral start "$LISTEN_APP" -i "$INSTANCES" --listen "127.0.0.1:$port" --name "$APP_NAME" ;;
	pm2) PORT=$port cli pm2 start "$APP" -i "$INSTANCES" --name "$APP_NAME" ;;
	*) die "unknown tool $tool (TOOLS=$TOOLS)" ;;
	esac >"$OUT/$tool-start.log" 2>&1 || return 1
	wait_online "$tool" 30 && wait_serving "$port" 10
}

# ms_since NS prints the milliseconds since now_ns value NS.
ms_since() { echo $((($(now_ns) - $1) / 1000000)); }

# sleep_until NS sleeps until now_ns reaches NS.
sleep_until() {
	local now
	now=$(now_ns)
	[ "$1" -gt "$now" ] && sleep "$(awk -v d=$(($1 - now)) 'BEGIN { printf "%.3f", d / 1e9 }')"
	return 0
}

# kill9_event TOOL K N T0 SIGKILLs the daemon, then polls jlist until it lists the app again, at most
# until the next event (or LS_WAIT s after the last); prints "answer_ms listed_ms" ("-" and "never").
kill9_event() {
	local tool=$1 k=$2 n=$3 t0=$4 dpid kpid tk end rows answer=- listed=never count
	dpid=$(daemon_pid "$tool") || dpid=
	kpid=$(case $tool in corral*) keeper_pid ;; esac)
	if [ -z "$dpid" ] || [ "$dpid" = "$kpid" ] || ! owned "$dpid" || ! kill -KILL "$dpid" 2>/dev/null; then
		echo "k=$k no daemon to kill (pid file: ${dpid:-none})" >>"$OUT/$tool-kill9-events.log"
		return 1
	fi
	tk=$(now_ns)
	if [ "$k" -lt "$n" ]; then
		end=$((t0 + (k + 1) * dur_s * 1000000000 / (n + 1) - 300000000))
	else
		end=$((tk + LS_WAIT * 1000000000))
	fi
	while [ "$(now_ns)" -lt "$end" ]; do
		if rows=$(CLI_TIMEOUT=5 jlist_rows "$tool"); then
			[ "$answer" = - ] && answer=$(ms_since "$tk")
			count=$(online_pids "$rows" | grep -c . || true)
			if [ "${count:-0}" -ge "$INSTANCES" ]; then
				listed=$(ms_since "$tk")
				break
			fi
		fi
		sleep 0.05
	done
	echo "k=$k t=$(awk -v a="$tk" -v b="$t0" 'BEGIN { printf "%.2f", (a - b) / 1e9 }')s killed daemon $dpid; jlist answered after ${answer} ms, listed $INSTANCES online after ${listed} ms; now daemon $(daemon_pid "$tool" || echo none)" >>"$OUT/$tool-kill9-events.log"
	KILL9_ANSWER+=("$answer")
	KILL9_LISTED+=("$listed")
}

# update_event TOOL K runs the tool's update command; records its wall time and exit status.
update_event() {
	local tool=$1 k=$2 t rc=0 ms before
	before=$(daemon_pid "$tool") || before=
	t=$(now_ns)
	CLI_TIMEOUT=$UPDATE_TIMEOUT cli "$tool" update >"$OUT/$tool-update-$k.log" 2>&1 || rc=$?
	ms=$(ms_since "$t")
	echo "k=$k update exit $rc after $ms ms; daemon $before -> $(daemon_pid "$tool" || echo none)" >>"$OUT/$tool-update-events.log"
	UPDATE_MS+=("$ms")
	[ "$rc" = 0 ]
}

# worst LIST... prints the largest number, or "never" if any is "never", or n/a for none.
worst() {
	local v w=n/a
	for v in "$@"; do
		[ "$v" = never ] && {
			echo never
			return
		}
		[[ $v =~ ^[0-9]+$ ]] || continue
		if [ "$w" = n/a ] || [ "$v" -gt "$w" ]; then w=$v; fi
	done
	echo "$w"
}

# scenario TOOL SCEN PORT runs one window: loadgens in every MODE, the SCEN events spaced over it.
scenario() {
	local tool=$1 scen=$2 port=$3 mode rows0 rows1 pids0 pids1 n k t0 ok=0 pid alive=0 kept=0
	rows0=$(jlist_rows "$tool") || rows0=
	pids0=$(online_pids "$rows0")
	note_pids $pids0
	case $scen in kill9) n=$KILLS ;; update) n=$UPDATES ;; *) die "unknown scenario $scen" ;; esac
	KILL9_ANSWER=()
	KILL9_LISTED=()
	UPDATE_MS=()
	: >"$OUT/$tool-$scen-events.log"
	start_loadgens "$port" "$OUT/$tool-$scen"
	t0=$(now_ns)
	for k in $(seq 1 "$n"); do
		sleep_until $((t0 + k * dur_s * 1000000000 / (n + 1)))
		case $scen in
		kill9) kill9_event "$tool" "$k" "$n" "$t0" && ok=$((ok + 1)) ;;
		update) update_event "$tool" "$k" && ok=$((ok + 1)) ;;
		esac
	done
	for pid in "${LG_PIDS[@]}"; do wait "$pid" || true; done
	wait_online "$tool" 15 || true
	rows1=$(jlist_rows "$tool") || rows1=
	pids1=$(online_pids "$rows1")
	note_pids $pids1
	for pid in $pids0; do
		kill -0 "$pid" 2>/dev/null && alive=$((alive + 1))
		grep -qx "$pid" <<<"$pids1" && kept=$((kept + 1))
	done
	result "$tool" "$scen" events "$ok/$n"
	result "$tool" "$scen" pids_kept "$kept/$(grep -c . <<<"$pids0" || true)"
	result "$tool" "$scen" pids_alive "$alive"
	result "$tool" "$scen" pids_before "$(tr '\n' ',' <<<"$pids0" | sed 's/,$//')"
	result "$tool" "$scen" pids_after "$(tr '\n' ',' <<<"$pids1" | sed 's/,$//')"
	result "$tool" "$scen" restarts "$(restart_sum "$rows0")->$([ -n "$rows1" ] && restart_sum "$rows1" || echo n/a)"
	case $scen in
	kill9)
		result "$tool" "$scen" answer_ms "$(IFS=/; echo "${KILL9_ANSWER[*]:-n/a}")"
		result "$tool" "$scen" listed_ms "$(IFS=/; echo "${KILL9_LISTED[*]:-n/a}")"
		result "$tool" "$scen" back_ms "$(worst "${KILL9_LISTED[@]}")"
		;;
	update)
		result "$tool" "$scen" update_ms "$(IFS=/; echo "${UPDATE_MS[*]:-n/a}")"
		result "$tool" "$scen" back_ms "$(worst "${UPDATE_MS[@]}")"
		;;
	esac
	if wait_serving "$port" 10 2>/dev/null; then result "$tool" "$scen" serving_after yes; else result "$tool" "$scen" serving_after NO; fi
	for mode in $MODES; do
		result "$tool" "$scen" "$mode" "$(tail -n 1 "$OUT/$tool-$scen-$mode.txt" | tr ' ' ',')"
	done
}

log "building bench/cmd/loadgen"
(cd "$REPO" && go build -o "$LOADGEN" ./bench/cmd/loadgen) || die "go build failed"
prepare_tools "corral corral-listen"
log "node $("$NODE" --version); tools: $TOOLS; scenarios: $SCENARIOS; $RATE req/s per mode ($MODES) for $DURATION; results in $OUT"

: >"$OUT/results"
i=0
for tool in $TOOLS; do
	for scen in $SCENARIOS; do
		port=$((PORT_BASE + i))
		i=$((i + 1))
		CURRENT_TOOL=$tool
		log "$tool/$scen: $INSTANCES instances on 127.0.0.1:$port"
		if ! start_app "$tool" "$port"; then
			log "$tool did not start; skipped (logs in $OUT)"
		else
			sleep 1
			scenario "$tool" "$scen" "$port"
		fi
		stop_tool "$tool"
		CURRENT_TOOL=
	done
done

# value TOOL SCEN KEY prints one recorded value; lg TOOL SCEN MODE KEY one loadgen figure.
value() { awk -v t="$1" -v s="$2" -v k="$3" '$1 == t && $2 == s && $3 == k { print $4 }' "$OUT/results"; }
lg() { value "$1" "$2" "$3" | tr ',' '\n' | awk -F= -v k="$4" '$1 == k { print $2 }'; }
# nratio A B is ratio for numbers only ("never" gives n/a).
nratio() { if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]]; then ratio "$1" "$2"; else echo n/a; fi; }
# rate TOOL SCEN MODE prints failures/sent in percent.
rate() { awk -v f="$(lg "$1" "$2" "$3" failures)" -v s="$(lg "$1" "$2" "$3" sent)" 'BEGIN { if (s + 0 == 0) print "n/a"; else printf "%.3f", 100 * f / s }'; }

{
	echo
	echo "supervisor: $INSTANCES instances, $RATE req/s per mode ($MODES at once) for $DURATION, $METHOD, timeout $TIMEOUT,"
	echo "            kill9: $KILLS daemon SIGKILLs, update: $UPDATES updates, spaced over the window; $(nproc) cores, node $("$NODE" --version)"
	printf '%-13s %-7s %-9s %6s %6s %7s %9s %7s %6s %6s %9s %8s %5s\n' tool scenario mode sent failed "fail%" outage_ms ">=100ms" events kept restarts back_ms after
	for tool in $TOOLS; do
		for scen in $SCENARIOS; do
			for mode in $MODES; do
				[ -n "$(value "$tool" "$scen" "$mode")" ] || continue
				printf '%-13s %-7s %-9s %6s %6s %7s %9s %7s %6s %6s %9s %8s %5s\n' "$tool" "$scen" "$mode" \
					"$(lg "$tool" "$scen" "$mode" sent)" "$(lg "$tool" "$scen" "$mode" failures)" "$(rate "$tool" "$scen" "$mode")" \
					"$(lg "$tool" "$scen" "$mode" longest_outage_ms)" "$(lg "$tool" "$scen" "$mode" outages)" \
					"$(value "$tool" "$scen" events)" "$(value "$tool" "$scen" pids_kept)" "$(value "$tool" "$scen" restarts)" \
					"$(value "$tool" "$scen" back_ms)" "$(value "$tool" "$scen" serving_after)"
			done
		done
	done
	echo
	echo "per event (kill9: ms until jlist answers / until it lists the $INSTANCES instances online; update: ms per command):"
	for tool in $TOOLS; do
		for scen in $SCENARIOS; do
			case $scen in
			kill9) [ -n "$(value "$tool" kill9 answer_ms)" ] && printf '  %-13s kill9   answer %-22s listed %-22s pids alive after: %s\n' "$tool" \
				"$(value "$tool" kill9 answer_ms)" "$(value "$tool" kill9 listed_ms)" "$(value "$tool" kill9 pids_alive)" ;;
			update) [ -n "$(value "$tool" update update_ms)" ] && printf '  %-13s update  %-40s pids %s -> %s\n' "$tool" \
				"$(value "$tool" update update_ms)" "$(value "$tool" update pids_before)" "$(value "$tool" update pids_after)" ;;
			esac
		done
	done
	echo
	echo "failures by kind:"
	printf '%-13s %-7s %-9s %7s %8s %8s %6s %6s %6s %8s\n' tool scenario mode non200 timeouts refused reset eof other dropped
	for tool in $TOOLS; do
		for scen in $SCENARIOS; do
			for mode in $MODES; do
				[ -n "$(value "$tool" "$scen" "$mode")" ] || continue
				printf '%-13s %-7s %-9s %7s %8s %8s %6s %6s %6s %8s\n' "$tool" "$scen" "$mode" "$(lg "$tool" "$scen" "$mode" non200)" \
					"$(lg "$tool" "$scen" "$mode" timeouts)" "$(lg "$tool" "$scen" "$mode" err_refused)" "$(lg "$tool" "$scen" "$mode" err_reset)" \
					"$(lg "$tool" "$scen" "$mode" err_eof)" "$(lg "$tool" "$scen" "$mode" err_other)" "$(lg "$tool" "$scen" "$mode" dropped)"
			done
		done
	done
	echo
	echo "ratios (failure rate, longest outage, back_ms; lower is better for corral; n/a: a figure is missing, never or 0):"
	for scen in $SCENARIOS; do
		for mode in $MODES; do
			printf '  %-7s %-9s corral/pm2 fail%% %5s outage %5s back %5s   corral-listen/pm2 fail%% %5s outage %5s\n' "$scen" "$mode" \
				"$(ratio "$(rate corral "$scen" "$mode")" "$(rate pm2 "$scen" "$mode")")" \
				"$(ratio "$(lg corral "$scen" "$mode" longest_outage_ms)" "$(lg pm2 "$scen" "$mode" longest_outage_ms)")" \
				"$(nratio "$(value corral "$scen" back_ms)" "$(value pm2 "$scen" back_ms)")" \
				"$(ratio "$(rate corral-listen "$scen" "$mode")" "$(rate pm2 "$scen" "$mode")")" \
				"$(ratio "$(lg corral-listen "$scen" "$mode" longest_outage_ms)" "$(lg pm2 "$scen" "$mode" longest_outage_ms)")"
		done
	done
	echo "(outage_ms = longest time without a 200; kept = instance pids from before the window still listed after it;"
	echo " restarts = restart_time summed over the instances, before->after; back_ms = kill9: worst time until jlist lists"
	echo " the instances online again (never: not before the next kill / LS_WAIT), update: slowest update command)"
} | tee "$OUT/summary.txt"
