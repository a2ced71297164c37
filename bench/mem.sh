#!/usr/bin/env bash
# Daemon memory (issue 13): what corral's daemon and keeper hold idle, with PROCS supervised processes,
# after CLI work and after CRASHES crash-restarts, side by side with PM2's daemon. Private homes in a
# scratch directory (CORRAL_HOME, PM2_HOME); corral is built from ./cmd/corral with CGO_ENABLED=0, as the
# README builds it; pm2 comes from npm (PM2_VERSION, 7). The apps are PROCS (100) copies of `sleep 100000`
# (interpreter none, fork mode) in one JSON ecosystem file. RUNS (2) rounds per tool, each from a fresh
# daemon, sampled at
#
#   idle       SETTLE (3) s after `ping` started the daemon, no app;
#   idle_gc    (corral, first round only, IDLE_LATE (125) s after idle; 0 skips it) the same daemon idle but
#              after the runtime's forced collection (every 2 minutes in Go): the pages its collector walks
#              (stack maps, type data) are back; that is corral's steady idle figure;
#   loaded     SETTLE s after `start` of the PROCS apps;
#   cli        after CLI work with the apps: 5 x (`ls`, `jlist`), `restart`, `stop` + `start` and
#              `describe` of one app;
#   crash_q, crash  (tools in CRASH_TOOLS, corral) after a quarter of, then all of CRASHES (2000)
#              crash-restarts: rounds of SIGKILL to every app process in turn, one every KILL_GAP (0.02) s,
#              each process killed at least ~2 s after its start (so no app reaches its unstable-restart
#              limit); the run checks that all PROCS are online at the end and counts the restarts
#              (sum of restart_time in jlist). crash_growth = crash - crash_q, the daemon's RSS growth over
#              the last three quarters.
#
# Each sample records, for the daemon (pid from corral.pid / pm2.pid): RSS (VmRSS), anonymous and
# file-backed parts (Rss - Anonymous of /proc/PID/smaps_rollup), PSS, threads; for corral also the keeper's
# RSS and the daemon+keeper PSS (they share the binary's page-cache pages, which RSS counts in both). The
# daemon trims the binary's read-only pages that only its start-up touched (internal/pagetrim) once it is
# ready, and again on a quiet tick after collections (internal/daemon/memsettle.go, which also returns
# free heap then): every figure here is taken after that, and those after `loaded` after real work; anon
# and file are given separately so that the trim is visible as what it is.
#
# Env: TOOLS ("corral pm2"), CRASH_TOOLS ("corral"), PROCS (100), RUNS (2), SETTLE (3), IDLE_LATE (125),
# CRASHES (2000), KILL_GAP (0.02), PM2_VERSION (7), NODE (node on PATH), OUT (default
# bench/results/mem-<time>), KEEP_TMP=1. About 5 minutes with the defaults (2 of them the idle_gc wait).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOOLS=${TOOLS:-"corral pm2"}
CRASH_TOOLS=${CRASH_TOOLS:-corral}
PROCS=${PROCS:-100}
RUNS=${RUNS:-2}
SETTLE=${SETTLE:-3}
IDLE_LATE=${IDLE_LATE:-125}
CRASHES=${CRASHES:-2000}
KILL_GAP=${KILL_GAP:-0.02}
PM2_VERSION=${PM2_VERSION:-7}
NODE=${NODE:-$(command -v node || true)}
OUT=${OUT:-$REPO/bench/results/mem-$(date +%Y%m%d-%H%M%S)}
for v in PROCS RUNS SETTLE; do
	[[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] || die "$v=${!v}: want a whole number above 0"
done
for v in IDLE_LATE CRASHES; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v}: want a whole number"
done
[[ $KILL_GAP =~ ^[0-9]*\.?[0-9]+$ ]] || die "KILL_GAP=$KILL_GAP: want a number of seconds"

use_node
tool_homes
SLEEP=$BENCH_TMP/sleep # a copy, so that owned (lib.sh) knows the apps by their command line
ECO=$BENCH_TMP/ecosystem.json
cp "$(command -v sleep)" "$SLEEP"


CURRENT_TOOL=
cleanup() {
	[ -n "$CURRENT_TOOL" ] && stop_sleep_tool "$CURRENT_TOOL"
	cleanup_all
}
trap cleanup EXIT
trap 'exit 130' INT TERM

result() {
	echo "$1 $2 $3" >>"$OUT/results"
	printf '    %-7s %-16s %s\n' "$1" "$2" "$3" >&2
}

# jlist_summary TOOL prints "online restarts": processes online with a pid, and the sum of restart_time.
jlist_summary() {
	CLI_TIMEOUT=30 cli "$1" jlist | "$NODE" -e '
		let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
			let on = 0, re = 0;
			try { for (const p of JSON.parse(s)) { const e = p.pm2_env || {};
				if (e.status === "online" && p.pid > 0) on++; re += e.restart_time || 0; } } catch {}
			console.log(on, re); });'
}

# wait_online TOOL N waits (60 s at most) until N processes are online.
wait_online() {
	local end=$(($(now_ns) + 60 * 1000000000)) on
	while :; do
		read -r on _ <<<"$(jlist_summary "$1")"
		[ "${on:-0}" -ge "$2" ] && return 0
		[ "$(now_ns)" -lt "$end" ] || {
			log "$1: ${on:-0} of $2 online after 60 s"
			return 1
		}
		sleep 0.1
	done
}

# sample TOOL PHASE records the daemon's RSS, anon/file split, PSS, threads and (corral) keeper figures.
sample() {
	local tool=$1 phase=$2 pid rss anon pss kpid
	pid=$(daemon_pid "$tool") || pid=
	owned "$pid" || {
		log "$tool: no daemon to sample ($phase)"
		return 1
	}
	rss=$(rss_kib "$pid")
	anon=$(awk '/^Anonymous:/ { print $2 }' "/proc/$pid/smaps_rollup")
	pss=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup")
	result "$tool" "${phase}_rss" "$rss"
	result "$tool" "${phase}_anon" "$anon"
	result "$tool" "${phase}_file" $((rss - anon))
	result "$tool" "${phase}_pss" "$pss"
	result "$tool" "${phase}_threads" "$(awk '/^Threads:/ { print $2 }' "/proc/$pid/status")"
	case $tool in corral*)
		kpid=$(keeper_pid)
		if owned "$kpid"; then
			result "$tool" "${phase}_keeper" "$(rss_kib "$kpid")"
			result "$tool" "${phase}_pss2" $((pss + $(awk '/^Pss:/ { print $2 }' "/proc/$kpid/smaps_rollup")))
		fi
		;;
	*) result "$tool" "${phase}_pss2" "$pss" ;;
	esac
	[ -e "$OUT/$tool-$phase-smaps.txt" ] || cp "/proc/$pid/smaps" "$OUT/$tool-$phase-smaps.txt"
	LAST_RSS=$rss
}

# crashes TOOL N SAMPLE_AT: SIGKILLs app processes round after round (every process of the round in
# turn, KILL_GAP apart; a new round lists the new pids) until N kills, sampling crash_q after SAMPLE_AT.
crashes() {
	local tool=$1 n=$2 at=$3 done=0 pids pid t0 t1 sampled=0
	while [ "$done" -lt "$n" ]; do
		t0=$(now_ns)
		pids=$(pgrep -f "^$SLEEP " || true)
		[ -n "$pids" ] || {
			log "$tool: no app process to kill after $done kills"
			return 1
		}
		for pid in $pids; do
			[ "$done" -lt "$n" ] || break
			kill -KILL "$pid" 2>/dev/null && done=$((done + 1))
			sleep "$KILL_GAP"
			if [ "$sampled" = 0 ] && [ "$done" -ge "$at" ]; then
				sleep "$SETTLE"
				sample "$tool" crash_q || true
				sampled=1
			fi
		done
		# Each process lives at least ~2 s before its next kill (an unstable restart counts below
		# min_uptime; too many in a row would stop the app).
		t1=$(now_ns)
		[ $(((t1 - t0) / 1000000)) -ge 2000 ] || sleep "$(awk -v d=$(((t1 - t0) / 1000000)) 'BEGIN { printf "%.3f", (2000 - d) / 1000 }')"
	done
	KILLS=$done
}

"$NODE" -e '
	const [n, sleep] = [Number(process.argv[1]), process.argv[2]];
	const apps = [];
	for (let i = 0; i < n; i++)
		apps.push({ name: "s" + String(i).padStart(3, "0"), script: sleep, args: ["100000"], interpreter: "none", exec_mode: "fork" });
	console.log(JSON.stringify({ apps }, null, 1));' "$PROCS" "$SLEEP" >"$ECO"

prepare_tools corral
PM2_VER=$([ -x "$PM2_BIN" ] && "$NODE" -p "require('$BENCH_TMP/pm2/node_modules/pm2/package.json').version" || echo -)
COMMIT=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
(cd "$REPO" && git diff --quiet HEAD -- cmd internal cluster go.mod 2>/dev/null) || COMMIT="$COMMIT+changes"
MACHINE="$(nproc) cores, kernel $(uname -r), $(go version | awk '{ print $3 }'), node $("$NODE" --version), pm2 $PM2_VER, corral $COMMIT, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
log "$MACHINE; tools: $TOOLS; results in $OUT"
: >"$OUT/results"

for tool in $TOOLS; do
	CURRENT_TOOL=$tool
	stop_sleep_tool "$tool"
	for r in $(seq "$RUNS"); do
		log "$tool: round $r of $RUNS"
		CLI_TIMEOUT=30 cli "$tool" ping >/dev/null || die "$tool ping failed (see $OUT/$tool-cli.log)"
		sleep "$SETTLE"
		sample "$tool" idle || true
		idle_rss=${LAST_RSS:-}
		if [ "$r" = 1 ] && [ "$IDLE_LATE" -gt 0 ] && [[ $tool == corral* ]]; then
			log "$tool: idle for $IDLE_LATE s more (a forced collection)"
			sleep "$IDLE_LATE"
			sample "$tool" idle_gc || true
		fi
		CLI_TIMEOUT=120 cli "$tool" start "$ECO" >>"$OUT/$tool-start.log" || log "$tool start failed (see $OUT/$tool-cli.log)"
		wait_online "$tool" "$PROCS" || true
		sleep "$SETTLE"
		LAST_RSS=
		sample "$tool" loaded || true
		[ -n "$idle_rss" ] && [ -n "$LAST_RSS" ] && result "$tool" per_proc $(((LAST_RSS - idle_rss) / PROCS))
		for i in 1 2 3 4 5; do
			cli "$tool" ls >/dev/null || true
			cli "$tool" jlist >/dev/null || true
		done
		cli "$tool" restart s001 >/dev/null || true
		cli "$tool" stop s002 >/dev/null || true
		cli "$tool" start s002 >/dev/null || true
		cli "$tool" describe s003 >/dev/null || true
		wait_online "$tool" "$PROCS" || true
		sleep "$SETTLE"
		sample "$tool" cli || true
		if [[ " $CRASH_TOOLS " == *" $tool "* ]] && [ "$CRASHES" -gt 0 ]; then
			read -r _ re0 <<<"$(jlist_summary "$tool")"
			log "$tool: $CRASHES crash-restarts"
			KILLS=0
			crashes "$tool" "$CRASHES" $((CRASHES / 4)) || true
			wait_online "$tool" "$PROCS" || true
			sleep "$SETTLE"
			LAST_RSS=
			sample "$tool" crash || true
			read -r on re1 <<<"$(jlist_summary "$tool")"
			result "$tool" crash_kills "$KILLS"
			result "$tool" crash_restarts $((${re1:-0} - ${re0:-0}))
			result "$tool" crash_online "${on:-0}"
			q=$(awk -v t="$tool" -v r=0 '$1 == t && $2 == "crash_q_rss" { v = $3 } END { print v }' "$OUT/results")
			[ -n "$q" ] && [ -n "$LAST_RSS" ] && result "$tool" crash_growth $((LAST_RSS - q))
		fi
		stop_sleep_tool "$tool"
	done
	CURRENT_TOOL=
done

stats() {
	awk -v t="$1" -v k="$2" '$1 == t && $2 == k { print $3 }' "$OUT/results" | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a n/a n/a"; else print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2), a[1], a[NR] }'
}

# row LABEL KEY TARGET: median [min-max] per tool, corral/pm2 and, for "<=N", corral's median against N.
row() {
	local label=$1 key=$2 target=$3 c p cm pm rt met=""
	read -r cm c1 c2 <<<"$(stats corral "$key")"
	read -r pm p1 p2 <<<"$(stats pm2 "$key")"
	c="$cm [$c1-$c2]"
	p="$pm [$p1-$p2]"
	[ "$cm" = n/a ] && c=-
	[ "$pm" = n/a ] && p=-
	rt=$(ratio "$cm" "$pm")
	case $target in
	"<="*) met=$(awk -v v="$cm" -v t="${target#<=}" 'BEGIN { if (v == "n/a") print "n/a"; else print (v + 0 <= t + 0 ? "yes" : "NO") }') ;;
	esac
	printf '| %s | %s | %s | %s | %s | %s |\n' "$label" "$c" "$p" "$rt" "${target:--}" "${met:--}"
}

{
	echo
	echo "mem: $PROCS sleep apps (fork, interpreter none); $RUNS rounds; $CRASHES crash-restarts ($CRASH_TOOLS);"
	echo "median [min-max], KiB unless said; $MACHINE"
	echo
	echo "| measurement | corral | pm2 | corral/pm2 | target | met |"
	echo "|---|---:|---:|---:|---:|---|"
	row "daemon RSS idle ($SETTLE s after start)" idle_rss "<=6347"
	row "  anonymous" idle_anon ""
	row "  file-backed" idle_file ""
	row "daemon RSS idle, after a forced GC ($IDLE_LATE s more)" idle_gc_rss "<=6347"
	row "  anonymous" idle_gc_anon ""
	row "  file-backed" idle_gc_file ""
	row "keeper RSS idle" idle_keeper ""
	row "PSS idle, daemon (+ keeper)" idle_pss2 ""
	row "daemon RSS with $PROCS procs" loaded_rss "<=9765"
	row "  anonymous" loaded_anon ""
	row "  file-backed" loaded_file ""
	row "  threads" loaded_threads ""
	row "  per process (loaded - idle) / $PROCS" per_proc ""
	row "keeper RSS with $PROCS procs" loaded_keeper ""
	row "PSS with $PROCS procs, daemon (+ keeper)" loaded_pss2 ""
	row "daemon RSS after CLI work" cli_rss "<=9765"
	row "  anonymous" cli_anon ""
	row "daemon RSS after 1/4 of the crash-restarts" crash_q_rss ""
	row "daemon RSS after all crash-restarts" crash_rss "<=9765"
	row "  anonymous" crash_anon ""
	row "  threads" crash_threads ""
	row "  growth over the last 3/4 of them" crash_growth "<=1024"
	row "  restarts counted (jlist)" crash_restarts ""
	row "  online at the end" crash_online ""
	echo
	echo "(targets from issue 13: 6.5 MB idle, 10 MB with 100 processes, as 10^6 bytes = 6,347 and 9,765 KiB; no"
	echo " growth after crash-restarts, read as at most 1 MiB over the last three quarters. PSS = Pss of smaps_rollup;"
	echo " the keeper's is added for corral. corral's daemon trims its binary's start-up-only pages once ready:"
	echo " idle_gc and the figures after work are its steady state. Smaps of each phase: $OUT/<tool>-<phase>-smaps.txt.)"
} | tee "$OUT/summary.txt"
