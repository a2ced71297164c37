#!/usr/bin/env bash
# Log throughput (issue 13): one app floods its stdout with numbered 100-byte lines; how fast do they reach
# its log file, are they all there, and what does the daemon pay? corral against PM2 side by side in one
# run, each with a private home in a scratch directory (CORRAL_HOME, PM2_HOME); corral is built from
# ./cmd/corral, pm2 comes from npm (PM2_VERSION, 7). With BASE_REF (a git commit), `corral-base`, corral
# built from that commit, is measured too (before/after in one run).
#
# Writers (WRITERS): `go` is bench/cmd/logflood (`write`: 64 KiB buffered stdout, several M lines/s on its
# own), `node-batch` bench/logflood.js gathering lines into 64 KiB process.stdout.write calls (a buffered
# logger), `node-log` the same script with one console.log per line (what most apps under PM2 do; one
# write(2) per line). Each writer's own rate into /dev/null is measured first (tool `writer`,
# <writer>_devnull_lps). Every flood is LINES lines (NODE_LOG_LINES for node-log), its app started with
# the tool's `start` (fork mode, and cluster mode with -i 1: MODES; PM2 runs only Node scripts in cluster
# mode), --no-autorestart, its own -o/-e files, and kept online after its last line (-hold).
#
# Per flood (key prefix <writer>_<mode>_):
#   lps          lines / (time the last line is in the log file - time before the first line was written),
#                both wall clock (logflood wait polls the file's end every ms);
#   cpu_ns_line  the daemon's CPU (utime+stime, /proc/PID/stat) over the flood, per line;
#   rss_max_kib  the daemon's peak RSS during the flood (VmHWM after `echo 5 > /proc/PID/clear_refs`);
#   lost, torn   lines missing from the file (or duplicated, or out of order) and lines not whole
#                (logflood check: every sequence number once, in order, each line whole after any prefix).
#
# Options (OPTIONS, go writer, fork mode, OPT_LINES lines, key prefix opt_<option>_, same figures): default,
# time (--time: a
# date prefix), json (--log-type json), combined (-l: a third file with stdout and stderr, the writer sending
# every 4th line to stderr; all three files checked), follow (a `logs --raw` client streaming during the
# flood), rotate (--log-max-size 50M: the rotated files and the current one checked; corral only: PM2
# needs its pm2-logrotate module).
#
# Soak (SOAK_SECS, 15; 0 = none): the go writer floods without end (corral rotating at 50 MB, 3 files kept;
# PM2 without rotation) for SOAK_SECS; the daemon's RSS is read every second: soak_rss_start_kib (after 2 s),
# soak_rss_end_kib, soak_rss_growth_kib (end - start) and soak_lps (the last sequence number in the log
# at the end, plus one, over SOAK_SECS).
#
# Idle (IDLE_PROCS, 50; 0 = none): that many apps each write one 64 KiB burst of lines, then sit idle;
# idle_kib_per_proc is (daemon RSS with them - RSS before) / IDLE_PROCS, SETTLE (3) s after each.
#
# Env: TOOLS ("corral pm2"), BASE_REF (none), WRITERS ("go node-batch node-log"), MODES ("fork cluster"),
# LINES (2000000), NODE_LOG_LINES (100000), RUNS (3), OPTIONS ("default time json combined follow
# rotate"), OPT_RUNS (2), OPT_LINES (500000), SOAK_SECS (15), IDLE_PROCS (50), SETTLE (3), FLOOD_TIMEOUT
# (60 s per flood; a line not there by then counts as lost),
# PM2_VERSION (7), NODE (node on PATH), OUT (bench/results/logs-<time>), KEEP_TMP=1. About 6 minutes on
# a loaded 2-core machine (PM2 is most of it), 8 with BASE_REF.
# Disk: a flood leaves LINES x 100 bytes until it is checked, then its files are removed.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOOLS=${TOOLS:-"corral pm2"}
BASE_REF=${BASE_REF:-}
WRITERS=${WRITERS:-"go node-batch node-log"}
MODES=${MODES:-"fork cluster"}
LINES=${LINES:-2000000}
NODE_LOG_LINES=${NODE_LOG_LINES:-100000}
RUNS=${RUNS:-3}
OPTIONS=${OPTIONS:-"default time json combined follow rotate"}
OPT_RUNS=${OPT_RUNS:-2}
OPT_LINES=${OPT_LINES:-500000}
SOAK_SECS=${SOAK_SECS:-15}
IDLE_PROCS=${IDLE_PROCS:-50}
SETTLE=${SETTLE:-3}
FLOOD_TIMEOUT=${FLOOD_TIMEOUT:-60}
PM2_VERSION=${PM2_VERSION:-7}
NODE=${NODE:-$(command -v node || true)}
OUT=${OUT:-$REPO/bench/results/logs-$(date +%Y%m%d-%H%M%S)}
for v in LINES NODE_LOG_LINES OPT_LINES RUNS OPT_RUNS FLOOD_TIMEOUT; do
	[[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] || die "$v=${!v}: want a whole number above 0"
done
for v in SOAK_SECS IDLE_PROCS SETTLE; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v}: want a whole number"
done
[ "$LINES" -lt 9000000000 ] && [ "$OPT_LINES" -lt 9000000000 ] || die "LINES, OPT_LINES: at most 8999999999"
[ -n "$BASE_REF" ] && TOOLS="$TOOLS corral-base"

use_node
tool_homes
FLOOD=$BENCH_TMP/logflood # in the scratch directory, so that owned (lib.sh) knows the apps
FLOODJS=$BENCH_TMP/logflood.js
LOGDIR=$BENCH_TMP/logs
mkdir -p "$LOGDIR"
(cd "$REPO" && go build -o "$FLOOD" ./bench/cmd/logflood) || die "bench/cmd/logflood does not build"
cp "$REPO/bench/logflood.js" "$FLOODJS"
CORRAL_NEW=$CORRAL_BIN
CORRAL_HOME_NEW=$CORRAL_HOME

# use_tool TOOL points CORRAL_BIN and CORRAL_HOME (lib.sh's cli, daemon_pid) at the tool's binary and home.
use_tool() {
	case $1 in
	corral-base) CORRAL_BIN=$BENCH_TMP/corral-base CORRAL_HOME=$BENCH_TMP/corral-base-home ;;
	*) CORRAL_BIN=$CORRAL_NEW CORRAL_HOME=$CORRAL_HOME_NEW ;;
	esac
	export CORRAL_HOME
}

stop_tool() {
	local tool=$1 dpid i
	use_tool "$tool"
	dpid=$(daemon_pid "$tool") || dpid=
	stop_owned "$tool" "$dpid $(case $tool in corral*) keeper_pid ;; esac) $(pgrep -f "$FLOOD" || true)" leftover_pids
	for i in $(seq 50); do
		[ -n "$dpid" ] && kill -0 "$dpid" 2>/dev/null || break
		sleep 0.1
	done
	return 0
}
leftover_pids() {
	daemon_pid "$1" || true
	case $1 in corral*) keeper_pid ;; esac
	pgrep -f "$FLOOD" || true
}

CURRENT_TOOL=
FOLLOW_PID=
cleanup() {
	[ -n "$FOLLOW_PID" ] && kill "$FOLLOW_PID" 2>/dev/null
	[ -n "$CURRENT_TOOL" ] && stop_tool "$CURRENT_TOOL"
	[ -d "$BENCH_TMP/base-src" ] && (cd "$REPO" && git worktree remove --force "$BENCH_TMP/base-src" 2>/dev/null)
	cleanup_all
}
trap cleanup EXIT
trap 'exit 130' INT TERM

result() { echo "$1 $2 $3" >>"$OUT/results"; }
stats() {
	awk -v t="$1" -v k="$2" '$1 == t && $2 == k { print $3 }' "$OUT/results" | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a n/a n/a"; else print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2), a[1], a[NR] }'
}

# writer_cmd WRITER N STAMP DONE [EXTRA...] prints the app's script and arguments, one per line.
writer_cmd() {
	local w=$1 n=$2 stamp=$3 done=$4
	shift 4
	case $w in
	go) printf '%s\n' "$FLOOD" write -n "$n" -stamp "$stamp" -done "$done" -hold "$@" ;;
	node-batch) printf '%s\n' "$FLOODJS" "$n" batch "$stamp" "$done" hold ;;
	node-log) printf '%s\n' "$FLOODJS" "$n" log "$stamp" "$done" hold ;;
	esac
}
lines_for() { [ "$1" = node-log ] && echo "$NODE_LOG_LINES" || echo "$LINES"; }

# devnull WRITER measures the writer alone into /dev/null.
devnull() {
	local w=$1 n args
	n=$(lines_for "$w")
	mapfile -t args < <(writer_cmd "$w" "$n" "$BENCH_TMP/dn.stamp" "$BENCH_TMP/dn.done")
	args=("${args[@]:0:${#args[@]}-1}") # no hold
	[ "$w" = go ] || args=("$NODE" "${args[@]}")
	timeout 120 "${args[@]}" >/dev/null 2>&1 || return 1
	result writer "${w}_devnull_lps" "$(cut -d' ' -f2 "$BENCH_TMP/dn.done")"
}

# flood TOOL WRITER MODE OPTION KEYPREFIX runs one flood and records its figures under KEYPREFIX.
flood() {
	local tool=$1 w=$2 mode=$3 opt=$4 key=$5 n dir app=flood dpid t0 t1 ms args flags=() files wait_glob
	local check_args=() start_pid last
	n=$(lines_for "$w")
	[ "${key#opt_}" != "$key" ] && n=$OPT_LINES
	dir=$LOGDIR/$key
	rm -rf "$dir"
	mkdir -p "$dir"
	case $opt in
	combined) mapfile -t args < <(writer_cmd "$w" "$n" "$dir/stamp" "$dir/done" -err-every 4) ;;
	*) mapfile -t args < <(writer_cmd "$w" "$n" "$dir/stamp" "$dir/done") ;;
	esac
	flags=(--name "$app" --no-autorestart -o "$dir/out.log" -e "$dir/err.log")
	[ "$w" = go ] && flags+=(--interpreter none)
	if [ "$mode" = cluster ]; then
		[ "$w" = go ] && flags+=(--exec-mode cluster)
		flags+=(-i 1) # Node scripts with instances run in cluster mode (PM2 and corral)
	fi
	case $opt in
	time) flags+=(--time) ;;
	json) flags+=(--log-type json) ;;
	combined) flags+=(-l "$dir/all.log") ;;
	rotate) flags+=(--log-max-size 50M) ;;
	esac
	dpid=$(daemon_pid "$tool")
	[ -n "$dpid" ] || {
		log "$tool: no daemon"
		return 1
	}
	echo 5 >"/proc/$dpid/clear_refs" 2>/dev/null || true
	t0=$(cpu_ticks "$dpid")
	if [ "$opt" = follow ]; then
		# Every app (flood does not exist yet); under timeout, which passes our SIGTERM on.
		case $tool in
		pm2) timeout -k 5 $((FLOOD_TIMEOUT + 30)) "$PM2_BIN" logs --raw --lines 0 >/dev/null 2>&1 & ;;
		*) timeout -k 5 $((FLOOD_TIMEOUT + 30)) "$CORRAL_BIN" logs --raw --lines 0 >/dev/null 2>&1 & ;;
		esac
		FOLLOW_PID=$!
	fi
	# In the background: `start` may wait for the app to be online (a Go program in cluster mode that
	# does not speak the protocol never is, until the listen timeout) while the flood is on.
	cli "$tool" start "${args[0]}" "${flags[@]}" -- "${args[@]:1}" >>"$OUT/$tool-start.log" 2>&1 &
	start_pid=$!
	wait_glob="$dir/out*.log"
	last=$((n - 1))
	[ "$opt" = combined ] && [ $((last % 4)) = 3 ] && last=$((last - 1)) # the last line went to stderr
	if ms=$("$FLOOD" wait -file "$wait_glob" -last "$last" -since "$dir/stamp" -timeout "${FLOOD_TIMEOUT}s" 2>>"$OUT/$tool-wait.log"); then
		ms=${ms#ms=}
		t1=$(cpu_ticks "$dpid")
		result "$tool" "${key}_lps" "$(awk -v n="$n" -v ms="$ms" 'BEGIN { printf "%.0f", n / (ms / 1000) }')"
		result "$tool" "${key}_cpu_ns_line" "$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.0f", t / hz * 1e9 / n }')"
		result "$tool" "${key}_rss_max_kib" "$(awk '/^VmHWM:/ { print $2 }' "/proc/$dpid/status")"
	else
		log "$tool $key: the last line did not arrive within ${FLOOD_TIMEOUT}s"
	fi
	wait "$start_pid" || log "$tool: start failed (see $OUT/$tool-start.log, $OUT/$tool-cli.log)"
	if [ -n "$FOLLOW_PID" ]; then
		kill "$FOLLOW_PID" 2>/dev/null || true
		wait "$FOLLOW_PID" 2>/dev/null || true
		FOLLOW_PID=
	fi
	cli "$tool" delete "$app" >/dev/null 2>&1 || true
	# Rotated files first, then the current one.
	files=$(
		ls -tr "$dir"/out__*.log 2>/dev/null || true # oldest first
		ls "$dir"/out*.log | grep -v '/out__' || true
	)
	local lost=0 torn=0 line
	check_args=(-n "$n")
	[ "$opt" = combined ] && check_args+=(-err-every 4)
	# shellcheck disable=SC2086 # file names without spaces
	line=$("$FLOOD" check "${check_args[@]}" -stream out $files 2>/dev/null || true)
	echo "$tool $key out: $line" >>"$OUT/checks.txt"
	lost=$(awk -v l="$line" 'BEGIN { split(l, f, /[ =]/); for (i = 1; i < length(f); i += 2) v[f[i]] = f[i + 1]; print v["missing"] + v["dup"] + v["reordered"] + v["extra"] }')
	torn=$(awk -v l="$line" 'BEGIN { split(l, f, /[ =]/); for (i = 1; i < length(f); i += 2) v[f[i]] = f[i + 1]; print v["torn"] + 0 }')
	[ -n "$line" ] || lost=$n
	if [ "$opt" = combined ]; then
		for s in err:err all:all; do
			line=$("$FLOOD" check "${check_args[@]}" -stream "${s%%:*}" "$dir/${s##*:}"*.log 2>/dev/null || true)
			echo "$tool $key ${s%%:*}: $line" >>"$OUT/checks.txt"
			lost=$((lost + $(awk -v l="$line" 'BEGIN { split(l, f, /[ =]/); for (i = 1; i < length(f); i += 2) v[f[i]] = f[i + 1]; print v["missing"] + v["dup"] + v["reordered"] + v["extra"] }')))
			torn=$((torn + $(awk -v l="$line" 'BEGIN { split(l, f, /[ =]/); for (i = 1; i < length(f); i += 2) v[f[i]] = f[i + 1]; print v["torn"] + 0 }')))
		done
	fi
	result "$tool" "${key}_lost" "$lost"
	result "$tool" "${key}_torn" "$torn"
	log "$tool $key: $(awk -v t="$tool" -v k="${key}_lps" '$1 == t && $2 == k { v = $3 } END { print v }' "$OUT/results") lines/s, lost $lost, torn $torn"
	rm -rf "$dir"
}

# soak TOOL floods for SOAK_SECS and samples the daemon's RSS every second.
soak() {
	local tool=$1 dir=$LOGDIR/soak dpid args flags i rss first="" last="" seq
	rm -rf "$dir"
	mkdir -p "$dir"
	dpid=$(daemon_pid "$tool")
	mapfile -t args < <(writer_cmd go 8999999999 "$dir/stamp" "$dir/done")
	flags=(--name soak --no-autorestart --interpreter none -o "$dir/out.log" -e "$dir/err.log")
	case $tool in corral*) flags+=(--log-max-size 50M --log-max-files 3) ;; esac
	cli "$tool" start "${args[0]}" "${flags[@]}" -- "${args[@]:1}" >>"$OUT/$tool-start.log" 2>&1 || return 1
	for i in $(seq "$SOAK_SECS"); do
		sleep 1
		rss=$(rss_kib "$dpid") || break
		echo "$i $rss" >>"$OUT/$tool-soak-rss.txt"
		[ "$i" = 2 ] && first=$rss
		last=$rss
	done
	# The last sequence number in the log: lines written in SOAK_SECS (rotated files are pruned).
	seq=$(tail -c 4096 "$dir/out.log" 2>/dev/null | grep -aoE '#o [0-9]{10} ' | tail -1 | cut -c4-13)
	cli "$tool" delete soak >/dev/null 2>&1 || true
	[ -n "$first" ] || return 0
	result "$tool" soak_rss_start_kib "$first"
	result "$tool" soak_rss_end_kib "$last"
	result "$tool" soak_rss_growth_kib $((last - first))
	[ -n "$seq" ] && result "$tool" soak_lps "$(awk -v s="$seq" -v t="$SOAK_SECS" 'BEGIN { printf "%.0f", (s + 1) / t }')"
	rm -rf "$dir"
}

# idle TOOL starts IDLE_PROCS apps that write one 64 KiB burst each and then sit idle.
idle() {
	local tool=$1 dpid before after i eco=$BENCH_TMP/idle.json
	dpid=$(daemon_pid "$tool")
	before=$(rss_kib "$dpid")
	"$NODE" -e '
		const [n, flood, dir] = [Number(process.argv[1]), process.argv[2], process.argv[3]];
		const apps = [];
		for (let i = 0; i < n; i++)
			apps.push({ name: "i" + String(i).padStart(3, "0"), script: flood, args: ["write", "-n", "655", "-hold"],
				interpreter: "none", exec_mode: "fork", autorestart: false,
				out_file: dir + "/i" + i + "-out.log", error_file: dir + "/i" + i + "-err.log" });
		console.log(JSON.stringify({ apps }, null, 1));' "$IDLE_PROCS" "$FLOOD" "$LOGDIR" >"$eco"
	cli "$tool" start "$eco" >>"$OUT/$tool-start.log" 2>&1 || return 1
	for i in $(seq 100); do
		[ "$(cat "$LOGDIR"/i*-out.log 2>/dev/null | wc -l)" -ge $((IDLE_PROCS * 655)) ] && break
		sleep 0.2
	done
	sleep "$SETTLE"
	after=$(rss_kib "$dpid")
	result "$tool" idle_kib_per_proc "$(awk -v a="$after" -v b="$before" -v n="$IDLE_PROCS" 'BEGIN { printf "%.1f", (a - b) / n }')"
	cli "$tool" delete all >/dev/null 2>&1 || true
	rm -f "$LOGDIR"/i*.log
}

# ---- prepare
prepare_tools "corral" "corral-base"
if [[ " $TOOLS " == *" corral-base "* ]]; then
	log "building corral at $BASE_REF"
	(cd "$REPO" && git worktree add -q --detach "$BENCH_TMP/base-src" "$BASE_REF" &&
		cd "$BENCH_TMP/base-src" && go build -o "$BENCH_TMP/corral-base" ./cmd/corral) >"$OUT/corral-base-build.log" 2>&1 ||
		die "corral at $BASE_REF does not build (see $OUT/corral-base-build.log)"
fi
PM2_VER=$([ -x "$PM2_BIN" ] && "$NODE" -p "require('$BENCH_TMP/pm2/node_modules/pm2/package.json').version" || echo -)
COMMIT=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
(cd "$REPO" && git diff --quiet HEAD -- cmd internal cluster go.mod 2>/dev/null) || COMMIT="$COMMIT+changes"
MACHINE="$(nproc) cores, kernel $(uname -r), $(go version | awk '{ print $3 }'), node $("$NODE" --version), pm2 $PM2_VER, corral $COMMIT${BASE_REF:+ (base $BASE_REF)}, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
log "$MACHINE; tools: $TOOLS; results in $OUT"
: >"$OUT/results"

for w in $WRITERS; do
	for r in $(seq "$RUNS"); do
		devnull "$w" || log "writer $w failed into /dev/null"
	done
done

for tool in $TOOLS; do
	CURRENT_TOOL=$tool
	stop_tool "$tool"
	use_tool "$tool"
	CLI_TIMEOUT=30 cli "$tool" ping >/dev/null || die "$tool ping failed (see $OUT/$tool-cli.log)"
	for r in $(seq "$RUNS"); do
		for w in $WRITERS; do
			for mode in $MODES; do
				[ "$tool" = pm2 ] && [ "$w" = go ] && [ "$mode" = cluster ] && continue
				flood "$tool" "$w" "$mode" default "${w}_${mode}" || true
			done
		done
	done
	for r in $(seq "$OPT_RUNS"); do
		for opt in $OPTIONS; do
			[ "$tool" = pm2 ] && [ "$opt" = rotate ] && continue
			flood "$tool" go fork "$opt" "opt_${opt}" || true
		done
	done
	[ "$SOAK_SECS" -gt 0 ] && { soak "$tool" || log "$tool: soak failed"; }
	if [ "$IDLE_PROCS" -gt 0 ]; then
		# From a fresh daemon: the floods' peaks must not hide in the figure.
		stop_tool "$tool"
		use_tool "$tool"
		CLI_TIMEOUT=30 cli "$tool" ping >/dev/null || die "$tool ping failed"
		sleep "$SETTLE"
		idle "$tool" || log "$tool: idle failed"
	fi
	stop_tool "$tool"
	CURRENT_TOOL=
done

# ---- summary
fmt() { awk -v m="$1" -v a="$2" -v b="$3" 'BEGIN { if (m == "n/a") print "n/a"; else printf "%s [%s-%s]", m, a, b }'; }
# row KEY TARGET: one line per key with median [min-max] per tool, corral/pm2 and the target.
# TARGET: ">=N" (corral's median at least N), "==0", "" (none).
row() {
	local key=$1 target=$2 tool line cm="n/a" pm="n/a" met="" s
	line=$(printf '%-28s' "$key")
	for tool in $TOOLS; do
		read -r m a b <<<"$(stats "$tool" "$key")"
		line+=$(printf ' | %-30s' "$tool $(fmt "$m" "$a" "$b")")
		[ "$tool" = corral ] && cm=$m
		[ "$tool" = pm2 ] && pm=$m
	done
	case $target in
	">="*) met=$(awk -v v="$cm" -v t="${target#>=}" 'BEGIN { if (v == "n/a") print "n/a"; else print (v + 0 >= t + 0 ? "yes" : "NO") }') ;;
	"==0") met=$(awk -v v="$cm" 'BEGIN { if (v == "n/a") print "n/a"; else print (v + 0 == 0 ? "yes" : "NO") }') ;;
	esac
	s=" | corral/pm2 $(ratio "$cm" "$pm")"
	[ -n "$target" ] && s+=" | target $target: $met"
	echo "$line$s"
}
{
	echo "Log throughput, $LINES lines of 100 bytes per flood (node-log: $NODE_LOG_LINES, options: $OPT_LINES), median [min-max] of $RUNS runs ($OPT_RUNS for options); $MACHINE"
	for w in $WRITERS; do
		read -r m a b <<<"$(stats writer "${w}_devnull_lps")"
		echo "writer $w alone into /dev/null: $(fmt "$m" "$a" "$b") lines/s"
	done
	for w in $WRITERS; do
		for mode in $MODES; do
			k=${w}_${mode}
			t=""
			[ "$w" = go ] && t=">=1000000"
			row "${k}_lps" "$t"
			row "${k}_lost" "==0"
			row "${k}_torn" "==0"
			row "${k}_cpu_ns_line" ""
			row "${k}_rss_max_kib" ""
		done
	done
	for opt in $OPTIONS; do
		row "opt_${opt}_lps" ">=1000000"
		row "opt_${opt}_lost" "==0"
		row "opt_${opt}_torn" "==0"
		row "opt_${opt}_cpu_ns_line" ""
		row "opt_${opt}_rss_max_kib" ""
	done
	if [ "$SOAK_SECS" -gt 0 ]; then
		for k in soak_lps soak_rss_start_kib soak_rss_end_kib soak_rss_growth_kib; do row "$k" ""; done
	fi
	[ "$IDLE_PROCS" -gt 0 ] && row idle_kib_per_proc ""
	echo "lost = missing + duplicated + out of order + foreign-numbered lines; torn = lines not whole (checks in checks.txt)"
} | tee "$OUT/summary.txt"
