#!/usr/bin/env bash
# The whole issue-13 table in one command: runs the memory, CLI, hand-off, log and crash benchmarks one after the
# other on this machine (corral, PM2 7 from npm with a private PM2_HOME, Node's own cluster primary), then
# prints one table: median [min-max] per tool, corral's ratio to PM2 and to Node, the issue's target, whether
# it is met, and Oxmgr's published figure for the rows it publishes (theirs, from their CI machine, not
# measured here).
#
#   bash bench/run.sh                    # about 25 minutes with the defaults
#   SUITES="lighter crash" bash bench/run.sh
#
# Env: SUITES (default "mem lighter handoff logs crash"), OUT (bench/results/run-<time>); every other knob is the
# suites' own (PROCS, RUNS, DURATION, ...), passed through. Each suite writes its raw figures to
# $OUT/<suite>/results (lines "TOOL KEY VALUE"); this script only reads those files, so a suite that fails
# leaves its rows as "-" and the others still print. The table goes to $OUT/summary.txt.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SUITES=${SUITES:-"mem lighter handoff logs crash"}
OUT=${OUT:-$REPO/bench/results/run-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

# script SUITE prints the script and the environment it runs with.
script() {
	case $1 in
	mem) echo "mem.sh" ;;
	lighter) echo "lighter.sh" ;;
	handoff) echo "handoff.sh" ;;
	logs) echo "logs.sh" ;;
	crash) echo "crash.sh" ;;
	*) die "unknown suite $1 (want: mem lighter handoff logs crash)" ;;
	esac
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
COMMIT=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
(cd "$REPO" && git diff --quiet HEAD -- cmd internal cluster go.mod 2>/dev/null) || COMMIT="$COMMIT+changes"
failed=
for s in $SUITES; do
	sh=$(script "$s")
	log "suite $s: bash bench/$sh (output in $OUT/$s)"
	if ! OUT="$OUT/$s" bash "$REPO/bench/$sh" >"$OUT/$s.log" 2>&1; then
		log "suite $s failed (exit $?; see $OUT/$s.log); its rows print as -"
		failed="$failed $s"
	fi
done

# stats SUITE TOOL KEY prints "median min max n" of the suite's recorded values ("n/a n/a n/a 0" when none).
stats() {
	local f=$OUT/$1/results
	[ -e "$f" ] || {
		echo "n/a n/a n/a 0"
		return
	}
	awk -v t="$2" -v k="$3" '$1 == t && $2 == k { print $3 }' "$f" | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a n/a n/a 0"; else print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2), a[1], a[NR], NR }'
}

# cell SUITE TOOL KEY prints "median [min-max]" or "-".
cell() {
	local m lo hi n
	read -r m lo hi n <<<"$(stats "$@")"
	if [ "$m" = n/a ]; then echo -; elif [ "$n" = 1 ]; then echo "$m"; else echo "$m [$lo-$hi]"; fi
}

# row SUITE KEY LABEL TARGET OXMGR: one line of the table. TARGET is "<=N" (corral's median in the row's
# unit), ">=N", "pm2<=R" / "node<=R" (corral/PM2 or corral/Node ratio at most R), "node>=R" (at least R),
# or "-". OXMGR is their published figure or "-".
row() {
	local suite=$1 key=$2 label=$3 target=$4 ox=$5 cm pm nm rp rn met=-
	cm=$(stats "$suite" corral "$key" | cut -d' ' -f1)
	pm=$(stats "$suite" pm2 "$key" | cut -d' ' -f1)
	nm=$(stats "$suite" node "$key" | cut -d' ' -f1)
	rp=$(ratio "$cm" "$pm")
	rn=$(ratio "$cm" "$nm")
	case $target in
	"<="*) met=$(awk -v v="$cm" -v t="${target#<=}" 'BEGIN { print (v == "n/a" ? "n/a" : (v + 0 <= t + 0 ? "yes" : "NO")) }') ;;
	">="*) met=$(awk -v v="$cm" -v t="${target#>=}" 'BEGIN { print (v == "n/a" ? "n/a" : (v + 0 >= t + 0 ? "yes" : "NO")) }') ;;
	pm2"<="*) met=$(awk -v v="$rp" -v t="${target#pm2<=}" 'BEGIN { print (v == "n/a" ? "n/a" : (v + 0 <= t + 0 ? "yes" : "NO")) }') ;;
	node"<="*) met=$(awk -v v="$rn" -v t="${target#node<=}" 'BEGIN { print (v == "n/a" ? "n/a" : (v + 0 <= t + 0 ? "yes" : "NO")) }') ;;
	node">="*) met=$(awk -v v="$rn" -v t="${target#node>=}" 'BEGIN { print (v == "n/a" ? "n/a" : (v + 0 >= t + 0 ? "yes" : "NO")) }') ;;
	esac
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$(cell "$suite" corral "$key")" \
		"$(cell "$suite" pm2 "$key")" "$(cell "$suite" node "$key")" "$rp" "$rn" "$target" "$met" "$ox"
}

# The rows: SUITE KEY "LABEL" TARGET "OXMGR". Oxmgr's figures are those issue 13 quotes from their
# BENCHMARK.md (November 2026, GitHub-hosted runner): not measured here.
ROWS=$(
	cat <<'ROWS'
mem idle_rss|daemon RSS idle (3 s after start), KiB|<=6347|6.9 MB
mem idle_gc_rss|daemon RSS idle after a forced GC, KiB|<=6347|-
mem idle_gc_anon|  of it anonymous, KiB|-|-
mem idle_gc_file|  of it file-backed (the binary), KiB|-|-
mem idle_keeper|keeper RSS idle, KiB|-|-
mem loaded_rss|daemon RSS, PROCS procs, KiB|<=9765|10.4 MB
mem loaded_anon|  of it anonymous, KiB|-|-
mem loaded_file|  of it file-backed, KiB|-|-
mem loaded_threads|  threads|-|-
mem per_proc|  per process, KiB|-|-
mem cli_rss|daemon RSS after CLI work, KiB|<=9765|-
mem crash_rss|daemon RSS after the crash-restarts, KiB|-|-
mem crash_growth|  growth over the last 3/4 of them, KiB|<=1024|-
mem crash_restarts|  crash-restarts counted|-|-
lighter ls|`ls`, PROCS procs, ms|<=4|2.3-5.7 ms
lighter ls_cli_cpu|  CPU of the CLI process, ms per run|-|-
lighter ls_daemon_cpu|  CPU of the daemon, ms per run|-|-
lighter jlist|`jlist`, PROCS procs, ms|<=4|-
lighter jlist_cli_cpu|  CPU of the CLI process, ms per run|-|-
lighter jlist_daemon_cpu|  CPU of the daemon, ms per run|-|-
lighter start|start PROCS until online, ms|pm2<=0.15|816 ms
lighter start_daemon_cpu|  CPU of the daemon over the start, ms|-|-
lighter cold|cold start, daemon + first app, ms|<=100|-
crash go_listen_ms|crash -> replacement serving, --listen Go app, ms|<=35|35 ms (TCP)
crash go_listen_failed|  failed requests not in flight at the kill|<=0|-
crash go_cluster_ms|crash -> replacement serving, Go cluster app, ms|<=35|-
crash go_cluster_failed|  failed requests not in flight at the kill|<=0|-
crash go_fork_ms|crash -> replacement serving, Go fork app (SO_REUSEPORT), ms|-|-
crash node_cluster_ms|crash -> replacement serving, Node cluster app, ms|-|-
crash node_cluster_failed|  failed requests not in flight at the kill|<=0|-
crash node_start_ms|  of it Node's own start-up (node -e time-to-listen), ms|-|-
crash restart_cpu_us|daemon CPU per crash-restart, us|-|-
handoff app_cpu_us_per_conn|primary CPU per Connection: close hand-off, Node app workers, us|node<=0.33|-
handoff tiny_handoffs_per_cpu_s|hand-offs per CPU-second of the primary, minimal workers|node>=3|-
handoff app_errors|  errors (socket + non-2xx), Node app workers|<=0|-
logs go_fork_lps|log lines/s to the file, Go writer, fork|>=1000000|-
logs go_cluster_lps|log lines/s to the file, Go writer, cluster|>=1000000|-
logs go_fork_lost|  lines lost, fork|<=0|-
logs go_cluster_lost|  lines lost, cluster|<=0|-
logs node-batch_fork_lps|log lines/s, Node batched writer, fork|-|-
logs go_fork_rss_max_kib|  daemon max RSS during the flood, KiB|-|-
logs soak_rss_growth_kib|  daemon RSS growth over the endless flood, KiB|-|-
ROWS
)
{
	echo
	echo "bench/run.sh: $(nproc) cores, kernel $(uname -r), $(go version | awk '{ print $3 }'), corral $COMMIT,"
	echo "load average at start $LOAD_START; suites: $SUITES${failed:+; FAILED:$failed}"
	echo
	echo "| measurement | corral | PM2 | Node | corral/PM2 | corral/Node | target | met | Oxmgr (published) |"
	echo "|---|---:|---:|---:|---:|---:|---|---|---:|"
	while IFS='|' read -r sk label target ox; do
		[ -n "$sk" ] || continue
		suite=${sk%% *}
		key=${sk#* }
		case " $SUITES " in *" $suite "*) ;; *) continue ;; esac
		row "$suite" "$key" "${label//PROCS/${PROCS:-100}}" "$target" "$ox"
	done <<<"$ROWS"
	echo
	echo "Each suite's own summary (with its method) is in $OUT/<suite>/summary.txt."
} | tee "$OUT/summary.txt"
[ -z "$failed" ]
