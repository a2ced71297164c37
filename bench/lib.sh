# Shared helpers for the bench scripts (sourced, not run). Every server they start goes into its own
# session, so that cleanup can end it and all its children by process group. Loopback only.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLK_TCK=$(getconf CLK_TCK)
STARTED_PGIDS=()
BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/corral-bench.XXXXXX")

log() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# ensure_apt CMD PKG installs Debian package PKG when command CMD is missing (apt-get update first, once).
BENCH_APT_UPDATED=0
ensure_apt() {
	command -v "$1" >/dev/null 2>&1 && return 0
	log "installing $2 (apt-get)"
	if [ "$BENCH_APT_UPDATED" = 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null >/dev/null || return 1
		BENCH_APT_UPDATED=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" </dev/null >/dev/null || return 1
	command -v "$1" >/dev/null 2>&1
}

# spawn LOG CMD... starts CMD in a new session with stdout+stderr to LOG and sets SPAWNED to its pid
# (= its pgid), which cleanup_all stops. Call it directly, not in $(...): a subshell would lose the record.
spawn() {
	local logf=$1
	shift
	setsid "$@" >"$logf" 2>&1 </dev/null &
	SPAWNED=$!
	STARTED_PGIDS+=("$SPAWNED")
}

# stop_group PID sends SIGTERM to PID, waits up to 5 s for it, then SIGKILLs its whole process group.
stop_group() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# cleanup_all stops every group spawn started and removes the scratch directory (unless KEEP_TMP=1).
cleanup_all() {
	local pid
	for pid in "${STARTED_PGIDS[@]}"; do
		stop_group "$pid"
	done
	STARTED_PGIDS=()
	if [ "${KEEP_TMP:-0}" = 1 ]; then
		log "scratch files kept in $BENCH_TMP"
	else
		rm -rf "$BENCH_TMP"
	fi
}

# wait_line FILE REGEX SECONDS waits until FILE has a line matching the extended REGEX.
wait_line() {
	local file=$1 re=$2 secs=$3 i
	for i in $(seq $((secs * 20))); do
		grep -Eq "$re" "$file" 2>/dev/null && return 0
		sleep 0.05
	done
	printf 'timed out after %ss waiting for /%s/ in %s:\n' "$secs" "$re" "$file" >&2
	tail -n 20 "$file" >&2 || true
	return 1
}

# wait_http PORT SECONDS waits until http://127.0.0.1:PORT/ answers 200, for at most SECONDS of wall time.
wait_http() {
	local port=$1 secs=$2 deadline
	deadline=$((SECONDS + secs))
	while [ "$SECONDS" -lt "$deadline" ]; do
		curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "no 200 from 127.0.0.1:$port within ${secs}s" >&2
	return 1
}

# cpu_ticks PID prints utime+stime of PID in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() {
	# The command name (field 2) may hold spaces; cut everything up to the last ')'.
	local stat
	stat=$(cat "/proc/$1/stat") || return 1
	stat=${stat##*) }
	# After "pid (comm) ", field 3 (state) is the first: utime and stime are the 12th and 13th.
	awk '{ print $12 + $13 }' <<<"$stat"
}

# rss_kib PID prints VmRSS of PID in KiB.
rss_kib() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# now_ns prints the time in nanoseconds.
now_ns() { date +%s%N; }

# ratio A B prints A/B with two decimals, or n/a.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'
}
