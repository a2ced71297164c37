#!/usr/bin/env bash
# Daemon weight and CLI latency (issue 13), corral against PM2 side by side in one run. Each tool gets a
# private home in a scratch directory (CORRAL_HOME, PM2_HOME); corral is built from ./cmd/corral, pm2 comes
# from npm (PM2_VERSION, 7) into the scratch directory. The apps are `sleep 100000` (a copy of sleep in the
# scratch directory, interpreter none, fork mode), PROCS (100) of them as PROCS apps of one JSON ecosystem
# file. Measured, RUNS (3) rounds per tool, each from a fresh daemon:
#
#   idle       the daemon's VmRSS after `ping` started it and SETTLE (3) s passed, no app: its pid from
#              $CORRAL_HOME/corral.pid / $PM2_HOME/pm2.pid; also its Threads (/proc/PID/status), the
#              Anonymous part of its RSS and the rest (file-backed: Rss - Anonymous, /proc/PID/smaps_rollup)
#              and, for corral, the keeper's VmRSS ($CORRAL_HOME/keeper.pid); and the Pss of the daemon plus
#              (corral) the keeper, which share the binary's pages;
#   start      `start ecosystem.json` of the PROCS apps until all are online: the command's wall time when the
#              first `jlist` after it lists them all online (corral's start returns once they are), else the
#              time when a later `jlist` (polled) first does; also the daemon's CPU time over that span
#              (start_daemon_cpu: its threads' /proc/PID/task/TID/schedstat; the apps' own exec is not in it);
#   loaded     the same figures as idle, SETTLE s after the start;
#   ls, jlist  wall time of `ls` and `jlist` with the PROCS apps (warm daemon): hyperfine -N, 3 warm-ups and
#              LS_RUNS (30) runs per round (a timing loop without hyperfine); the median is over every run of
#              every round. Also, per round, the CPU time per run of the daemon (/proc/PID/stat) and of
#              the CLI process (hyperfine's user+system), which load distorts less than wall time;
#
# Then COLD_RUNS (5) cold starts: from no daemon, `start` of one sleep app (the CLI starts the daemon) until
# it is online, timed as `start` above. Every figure is printed as median [min-max] over its runs, with the
# corral/PM2 ratio and the issue's target. The largest mappings of each daemon's RSS with the PROCS apps
# (from /proc/PID/smaps, first round) are listed after the table.
#
# Env: TOOLS ("corral pm2"), PROCS (100), RUNS (3), LS_RUNS (30), COLD_RUNS (5), SETTLE (3), PM2_VERSION (7),
# NODE (node on PATH), OUT (default bench/results/lighter-<time>), KEEP_TMP=1. About 3 minutes.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOOLS=${TOOLS:-"corral pm2"}
PROCS=${PROCS:-100}
RUNS=${RUNS:-3}
LS_RUNS=${LS_RUNS:-30}
COLD_RUNS=${COLD_RUNS:-5}
SETTLE=${SETTLE:-3}
PM2_VERSION=${PM2_VERSION:-7}
NODE=${NODE:-$(command -v node || true)}
OUT=${OUT:-$REPO/bench/results/lighter-$(date +%Y%m%d-%H%M%S)}
for v in PROCS RUNS LS_RUNS COLD_RUNS SETTLE; do
	[[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] || die "$v=${!v}: want a whole number above 0"
done

use_node
tool_homes
ensure_apt hyperfine hyperfine || log "hyperfine unavailable; timing ls and jlist with a loop"
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

# result TOOL KEY VALUE records one measurement (one line per run).
result() {
	echo "$1 $2 $3" >>"$OUT/results"
	printf '    %-7s %-14s %s\n' "$1" "$2" "$3" >&2
}

# online_count TOOL prints how many processes `jlist` lists online with a pid (empty when jlist fails).
online_count() { CLI_TIMEOUT=30 jlist_rows "$1" | awk '$3 == "online" && $2 > 0 { n++ } END { print n + 0 }'; }

# timed_start TOOL N ARGS... runs `TOOL start ARGS...` and prints the milliseconds until N processes are
# online: the command's own time if the first jlist after it lists them, else when a later jlist does.
timed_start() {
	local tool=$1 n=$2 t0 t1 end count
	shift 2
	t0=$(now_ns)
	CLI_TIMEOUT=120 cli "$tool" start "$@" >>"$OUT/$tool-start.log" || {
		log "$tool start failed (see $OUT/$tool-start.log, $OUT/$tool-cli.log)"
		return 1
	}
	t1=$(now_ns)
	end=$((t1 + 60 * 1000000000))
	while :; do
		count=$(online_count "$tool") || count=0
		[ "${count:-0}" -ge "$n" ] && break
		[ "$(now_ns)" -lt "$end" ] || {
			log "$tool: ${count:-0} of $n online 60 s after start"
			return 1
		}
		t1=
		sleep 0.02
	done
	[ -n "$t1" ] || t1=$(now_ns)
	echo $(((t1 - t0) / 1000000))
}

# sample TOOL PHASE records the daemon's RSS, threads, anonymous/file-backed split and (corral) keeper RSS.
sample() {
	local tool=$1 phase=$2 pid rss anon kpid pss
	pid=$(daemon_pid "$tool") || pid=
	owned "$pid" || {
		log "$tool: no daemon to sample ($phase)"
		return 1
	}
	rss=$(rss_kib "$pid")
	anon=$(awk '/^Anonymous:/ { print $2 }' "/proc/$pid/smaps_rollup")
	result "$tool" "${phase}_rss" "$rss"
	result "$tool" "${phase}_anon" "$anon"
	result "$tool" "${phase}_file" $((rss - anon))
	result "$tool" "${phase}_threads" "$(awk '/^Threads:/ { print $2 }' "/proc/$pid/status")"
	pss=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup")
	case $tool in corral*)
		kpid=$(keeper_pid)
		if owned "$kpid"; then
			result "$tool" "${phase}_keeper" "$(rss_kib "$kpid")"
			pss=$((pss + $(awk '/^Pss:/ { print $2 }' "/proc/$kpid/smaps_rollup")))
		fi
		;;
	esac
	result "$tool" "${phase}_pss" "$pss"
	# The largest mappings by RSS, once per tool and phase.
	[ -e "$OUT/$tool-$phase-smaps.txt" ] && return 0
	cp "/proc/$pid/smaps" "$OUT/$tool-$phase-smaps.txt"
	awk '/^[0-9a-f]+-[0-9a-f]+ / { name = (NF >= 6) ? $6 : "[anon]" } /^Rss:/ { s[name] += $2 }
		END { for (n in s) if (s[n] > 0) printf "%d %s\n", s[n], n }' "$OUT/$tool-$phase-smaps.txt" |
		sort -rn | head -n 6 >"$OUT/$tool-$phase-top.txt"
}

# latency TOOL CMD records the wall time of LS_RUNS runs of `TOOL CMD`, in ms, one result per run, and
# two figures a loaded machine distorts less, per run of the round (warm-ups included): the daemon's CPU
# time (CMD_daemon_cpu, utime+stime from /proc/PID/stat over the round) and, with hyperfine, the CLI
# process's own (CMD_cli_cpu, hyperfine's mean user+system).
latency() {
	local tool=$1 cmd=$2 bin i t0 t1 json dpid c0 c1
	json=$OUT/$tool-$cmd-$r.json
	bin=$([ "$tool" = pm2 ] && echo "$PM2_BIN" || echo "$CORRAL_BIN")
	dpid=$(daemon_pid "$tool") || dpid=
	c0=$(cpu_ticks "$dpid" 2>/dev/null) || c0=
	if command -v hyperfine >/dev/null 2>&1 &&
		hyperfine -N --style none --warmup 3 --runs "$LS_RUNS" --export-json "$json" "$bin $cmd" >/dev/null 2>>"$OUT/$tool-cli.log"; then
		"$NODE" -e 'for (const t of require(process.argv[1]).results[0].times) console.log((t * 1000).toFixed(2))' "$json" |
			while read -r t; do echo "$tool $cmd $t" >>"$OUT/results"; done
		result "$tool" "${cmd}_cli_cpu" "$("$NODE" -p 'const r = require(process.argv[1]).results[0]; ((r.user + r.system) * 1000).toFixed(2)' "$json")"
	else
		for i in $(seq $((LS_RUNS + 3))); do
			t0=$(now_ns)
			cli "$tool" "$cmd" >/dev/null || true
			t1=$(now_ns)
			[ "$i" -gt 3 ] && echo "$tool $cmd $(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.2f", d / 1e6 }')" >>"$OUT/results"
		done
	fi
	c1=$(cpu_ticks "$dpid" 2>/dev/null) || c1=
	[ -n "$c0" ] && [ -n "$c1" ] &&
		result "$tool" "${cmd}_daemon_cpu" "$(awk -v d=$((c1 - c0)) -v n=$((LS_RUNS + 3)) -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", d * 1000 / hz / n }')"
	log "$tool $cmd: median $(stats "$tool" "$cmd" | cut -d' ' -f1) ms so far"
}

# task_cpu_ns PID prints the CPU time of PID's live threads in nanoseconds (the first field of each
# /proc/PID/task/TID/schedstat: finer than the clock ticks of /proc/PID/stat, which a start of 100
# apps spans only a few of; a thread that exits meanwhile is not counted).
task_cpu_ns() {
	local t s=0 ns
	owned "$1" || return 1
	for t in /proc/"$1"/task/*/schedstat; do
		read -r ns _ <"$t" 2>/dev/null && s=$((s + ns))
	done
	echo "$s"
}

# stats TOOL KEY prints "median min max" of the recorded values (n/a n/a n/a when none).
stats() {
	awk -v t="$1" -v k="$2" '$1 == t && $2 == k { print $3 }' "$OUT/results" | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a n/a n/a"; else print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2), a[1], a[NR] }'
}

# The ecosystem file: PROCS apps s000..., each one sleep process.
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
		dpid=$(daemon_pid "$tool") || dpid=
		c0=$(task_cpu_ns "$dpid") || c0=
		ms=$(timed_start "$tool" "$PROCS" "$ECO") && result "$tool" start "$ms"
		c1=$(task_cpu_ns "$dpid") || c1=
		[ -n "$c0" ] && [ -n "$c1" ] && result "$tool" start_daemon_cpu "$(awk -v d=$((c1 - c0)) 'BEGIN { printf "%.1f", d / 1e6 }')"
		sleep "$SETTLE"
		sample "$tool" loaded || true
		[ "$(online_count "$tool")" -ge "$PROCS" ] || log "$tool: not all $PROCS online before timing ls"
		latency "$tool" ls
		latency "$tool" jlist
		stop_sleep_tool "$tool"
	done
	for r in $(seq "$COLD_RUNS"); do
		ms=$(timed_start "$tool" 1 "$SLEEP" --name cold --interpreter none -- 100000) && result "$tool" cold "$ms"
		stop_sleep_tool "$tool"
	done
	CURRENT_TOOL=
done

# row LABEL KEY UNIT TARGET: median [min-max] per tool, the corral/pm2 ratio of medians and the target.
# TARGET is "<=N" (corral's median against N, in the row's unit), "x<=R" (the ratio against R), or "".
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
	"x<="*) met=$(awk -v v="$rt" -v t="${target#x<=}" 'BEGIN { if (v == "n/a") print "n/a"; else print (v + 0 <= t + 0 ? "yes" : "NO") }') ;;
	esac
	printf '| %s | %s | %s | %s | %s | %s |\n' "$label" "$c" "$p" "$rt" "${target:--}" "${met:--}"
}

{
	echo
	echo "lighter: $PROCS sleep apps (one JSON ecosystem file, fork, interpreter none); $RUNS rounds, ls/jlist $LS_RUNS runs per"
	echo "round, $COLD_RUNS cold starts; median [min-max]; $MACHINE"
	echo
	echo "| measurement | corral | pm2 | corral/pm2 | target | met |"
	echo "|---|---:|---:|---:|---:|---|"
	row "daemon RSS idle, KiB" idle_rss "<=6347"
	row "  of it anonymous, KiB" idle_anon ""
	row "  of it file-backed, KiB" idle_file ""
	row "  threads" idle_threads ""
	row "keeper RSS idle, KiB" idle_keeper ""
	row "PSS, daemon + keeper, idle, KiB" idle_pss ""
	row "daemon RSS with $PROCS procs, KiB" loaded_rss "<=9765"
	row "  of it anonymous, KiB" loaded_anon ""
	row "  of it file-backed, KiB" loaded_file ""
	row "  threads" loaded_threads ""
	row "keeper RSS with $PROCS procs, KiB" loaded_keeper ""
	row "PSS, daemon + keeper, $PROCS procs, KiB" loaded_pss ""
	row "\`ls\`, $PROCS procs, ms" ls "<=4"
	row "\`jlist\`, $PROCS procs, ms" jlist "<=4"
	row "  \`ls\` CPU: CLI process, ms per run" ls_cli_cpu ""
	row "  \`ls\` CPU: daemon, ms per run" ls_daemon_cpu ""
	row "  \`jlist\` CPU: CLI process, ms per run" jlist_cli_cpu ""
	row "  \`jlist\` CPU: daemon, ms per run" jlist_daemon_cpu ""
	row "start $PROCS until online, ms" start "x<=0.15"
	row "  start: the daemon's CPU, ms" start_daemon_cpu ""
	row "cold start, daemon + first app, ms" cold "<=100"
	echo
	echo "(targets from issue 13: RSS 6.5 MB idle and 10 MB with 100 processes, taken as 10^6 bytes: 6,347 and 9,765"
	echo " KiB; the keeper is not in the daemon's figure. file-backed = Rss - Anonymous in smaps_rollup. PSS = Pss of"
	echo " smaps_rollup, the daemon's plus (corral) the keeper's: the two share the binary's pages, so their RSS double-counts.)"
	echo
	echo "largest mappings by RSS with $PROCS procs (KiB, first round):"
	for tool in $TOOLS; do
		[ -e "$OUT/$tool-loaded-top.txt" ] || continue
		echo "  $tool: $(awk '{ n = $2; sub(".*/", "", n); printf "%s%s %s", (NR > 1 ? ", " : ""), n, $1 }' "$OUT/$tool-loaded-top.txt")"
	done
} | tee "$OUT/summary.txt"
