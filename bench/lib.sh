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

# ---- Shared by the tool benchmarks (chaos.sh, supervisor.sh, soak.sh, pm2.sh): pm2 against corral, each
# with a private home in the scratch directory. They set NODE, OUT, TOOLS and PM2_VERSION before use.

# use_node checks NODE and puts its directory first in PATH (the tools' daemons run node from PATH).
use_node() {
	[ -n "$NODE" ] && [ -x "$NODE" ] || die "node not found (set NODE)"
	export PATH=$(dirname "$NODE"):$PATH
}

# tool_homes installs curl if missing, creates OUT and sets the private homes (PM2_HOME, CORRAL_HOME,
# exported) and the binaries (PM2_BIN, CORRAL_BIN) in the scratch directory.
tool_homes() {
	ensure_apt curl curl || die "curl is missing and could not be installed"
	mkdir -p "$OUT"
	export PM2_HOME=$BENCH_TMP/pm2-home
	export CORRAL_HOME=$BENCH_TMP/corral-home
	PM2_BIN=$BENCH_TMP/pm2/node_modules/.bin/pm2
	CORRAL_BIN=$BENCH_TMP/corral
}

# cli TOOL ARGS... runs corral's or pm2's CLI with its private home, bounded in time (CLI_TIMEOUT
# seconds, 30); its stderr goes to $OUT/TOOL-cli.log.
cli() {
	local tool=$1
	shift
	case $tool in
	pm2) timeout -k 5 "${CLI_TIMEOUT:-30}" "$PM2_BIN" "$@" 2>>"$OUT/$tool-cli.log" ;;
	corral*) timeout -k 5 "${CLI_TIMEOUT:-30}" "$CORRAL_BIN" "$@" 2>>"$OUT/$tool-cli.log" ;;
	esac
}

# daemon_pid TOOL prints the daemon's pid from its pid file (pm2, corral*), or PRIMARY_PID for node*;
# keeper_pid the corral keeper's.
daemon_pid() {
	case $1 in
	pm2) cat "$PM2_HOME/pm2.pid" 2>/dev/null ;;
	corral*) cat "$CORRAL_HOME/corral.pid" 2>/dev/null ;;
	node*) [ -n "${PRIMARY_PID:-}" ] && echo "$PRIMARY_PID" ;;
	esac
}
keeper_pid() { cat "$CORRAL_HOME/keeper.pid" 2>/dev/null || true; }

# owned PID checks that PID is a live process of this run (its command line names the scratch
# directory or the repo's apps), so that a stale pid file never makes us signal a stranger.
owned() {
	local cmd
	[ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
	cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1
	case $cmd in *"$BENCH_TMP"* | *"$REPO/examples/"* | *"$REPO/bench/"*) return 0 ;; esac
	# PM2's God daemon and cluster workers rename themselves; check the environment's home instead.
	tr '\0' '\n' 2>/dev/null <"/proc/$1/environ" | grep -qxF -e "PM2_HOME=$PM2_HOME" -e "CORRAL_HOME=$CORRAL_HOME"
}

# wait_serving PORT SECONDS waits until http://127.0.0.1:PORT/ answers 200, by a deadline (wait_http
# counts tries, and each try may take a second on a port that accepts nothing).
wait_serving() {
	local port=$1 end
	end=$(($(now_ns) + $2 * 1000000000))
	while :; do
		curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null && return 0
		[ "$(now_ns)" -lt "$end" ] || break
		sleep 0.05
	done
	echo "no 200 from 127.0.0.1:$port within ${2}s" >&2
	return 1
}

# prepare_tools "CORRAL_TOOLS" ["PLAIN_TOOLS"] readies every tool of TOOLS: pm2 is installed from npm
# (PM2_VERSION) into the scratch directory, the tools in CORRAL_TOOLS get ./cmd/corral built once, static
# (CGO_ENABLED=0) as the README builds it (with
# BUILD_NOTE=1, logged), those in PLAIN_TOOLS need nothing. TOOLS becomes the tools that are ready; a
# tool that failed is left out with a note, an unknown one is an error, and so is none left.
prepare_tools() {
	local corral_tools=" $1 " plain_tools=" ${2:-} " tool what tools=()
	for tool in $TOOLS; do
		if [ "$tool" = pm2 ]; then
			log "installing pm2@$PM2_VERSION into $BENCH_TMP/pm2"
			if npm install --prefix "$BENCH_TMP/pm2" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
				"pm2@$PM2_VERSION" </dev/null >"$OUT/pm2-install.log" 2>&1; then
				tools+=(pm2)
			else
				log "pm2 install failed (see $OUT/pm2-install.log); left out"
			fi
		elif [[ $corral_tools == *" $tool "* ]]; then
			[ "${BUILD_NOTE:-0}" = 1 ] && log "building ./cmd/corral"
			if [ -x "$CORRAL_BIN" ] || (cd "$REPO" && CGO_ENABLED=0 go build -o "$CORRAL_BIN" ./cmd/corral) >"$OUT/corral-build.log" 2>&1; then
				tools+=("$tool")
			else
				# With one corral tool, the note needs no name.
				what=left
				[ "$(wc -w <<<"$corral_tools")" -gt 1 ] && what="$tool left"
				log "./cmd/corral does not build (see $OUT/corral-build.log); $what out"
			fi
		elif [[ $plain_tools == *" $tool "* ]]; then
			tools+=("$tool")
		else
			die "unknown tool $tool (TOOLS=$TOOLS)"
		fi
	done
	[ ${#tools[@]} -gt 0 ] || die "no tool to measure"
	TOOLS=${tools[*]}
}

# kill_loadgens SIGKILLs every loadgen in LOADGEN_PIDS; one under `timeout` is in timeout's own process
# group: kill the group, then the pid.
kill_loadgens() {
	local pid
	for pid in "${LOADGEN_PIDS[@]}"; do
		kill -KILL -- "-$pid" 2>/dev/null || true
		kill -KILL "$pid" 2>/dev/null || true
	done
}

# start_loadgens PORT PREFIX starts one loadgen per MODE (keepalive, close) at RATE req/s for DURATION
# (bounded by `timeout` at dur_s + 60 s) against 127.0.0.1:PORT, output in PREFIX-MODE.txt and its
# timeline in PREFIX-MODE-timeline.txt; their pids are added to LOADGEN_PIDS and set in LG_PIDS.
start_loadgens() {
	local port=$1 prefix=$2 mode flags
	LG_PIDS=()
	for mode in $MODES; do
		flags=()
		[ "$mode" = close ] && flags=(-close)
		timeout $((dur_s + 60)) "$LOADGEN" -url "http://127.0.0.1:$port/" -rate "$RATE" -duration "$DURATION" \
			-timeout "$TIMEOUT" -method "$METHOD" -timeline "$prefix-$mode-timeline.txt" "${flags[@]}" \
			>"$prefix-$mode.txt" 2>&1 &
		LOADGEN_PIDS+=($!)
		LG_PIDS+=($!)
	done
}

# jlist_rows TOOL prints, for every instance of app JLIST_APP in the tool's `jlist`, "pid status
# restart_time"; with JLIST_APP empty, "name pid status restart_time" for every process. Whitespace in a
# status becomes _. Bounded by CLI_TIMEOUT (10 s); fails when jlist gives no list (the CLI failed or
# timed out).
jlist_rows() {
	CLI_TIMEOUT=${CLI_TIMEOUT:-10} cli "$1" jlist | "$NODE" -e '
		let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
			let list;
			try {
				list = JSON.parse(s.slice(s.indexOf("[")));
			} catch {
				process.exit(1); // no list (the CLI failed or timed out)
			}
			const app = process.argv[1];
			for (const p of list) {
				const row = [p.pid, p.pm2_env && String(p.pm2_env.status).replace(/\s+/g, "_"), p.pm2_env && p.pm2_env.restart_time];
				if (!app) console.log(p.name, ...row);
				else if (p.name === app) console.log(...row);
			}
		});' "${JLIST_APP:-}"
}

# stop_owned TOOL "PIDS" [MORE] runs the tool's own `kill` (apps, daemon, keeper) when one of PIDS is a
# live process of this run (`kill` would otherwise start a daemon to stop it), then, 0.2 s later,
# SIGKILLs whatever of this run is left among PIDS and the pids the command MORE TOOL prints then.
stop_owned() {
	local tool=$1 pids=$2 pid
	for pid in $pids; do
		if owned "$pid"; then
			CLI_TIMEOUT=30 cli "$tool" kill >/dev/null || log "$tool kill failed or timed out (see $OUT/$tool-cli.log)"
			break
		fi
	done
	sleep 0.2
	for pid in $pids $([ -z "${3:-}" ] || "$3" "$tool"); do
		owned "$pid" && kill -KILL "$pid" 2>/dev/null && log "$tool: pid $pid was left over; SIGKILLed"
	done
	return 0
}

# ---- Shared by lighter.sh and mem.sh, whose apps are copies of sleep at $SLEEP (set by the script).

# stop_sleep_tool TOOL stops apps, daemon and (corral) keeper with the tool's `kill`, then SIGKILLs
# whatever of this run is left among them; waits until the daemon is gone.
stop_sleep_tool() {
	local tool=$1 dpid i
	dpid=$(daemon_pid "$tool") || dpid=
	stop_owned "$tool" "$dpid $(case $tool in corral*) keeper_pid ;; esac) $(pgrep -f "^$SLEEP " || true)" sleep_supervisor_pids
	for i in $(seq 50); do
		[ -n "$dpid" ] && kill -0 "$dpid" 2>/dev/null || break
		sleep 0.1
	done
	return 0
}

# sleep_supervisor_pids TOOL prints the pids of TOOL's daemon, (corral) keeper and sleep apps.
sleep_supervisor_pids() {
	daemon_pid "$1" || true
	case $1 in corral*) keeper_pid ;; esac
	pgrep -f "^$SLEEP " || true
}
