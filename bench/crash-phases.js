// Splits corral's crash recoveries into phases, for bench/crash.sh:
//
//   node bench/crash-phases.js PROBE_OUT EVENTS_JSONL
//
// PROBE_OUT is bench/cmd/crashprobe's output (one "round=... victim=PID replacement=PID
// kill_unix_ns=NS recovery_ms=MS" line per kill), EVENTS_JSONL `corral events --json --nostream`.
// For each round it finds the victim's exit event (its pid) and, after it, the next status changes of
// the same pm_id, and prints one line per round
//
//   detect_ms=... restart_ms=... spawn_ms=... serve_ms=...
//
//   detect_ms   SIGKILL -> the daemon's exit event (the exit seen and handled: reaped, tree cleared)
//   restart_ms  exit event -> status launching (the restart policy; restart_delay would add here)
//   spawn_ms    launching -> status online (fork/exec; listen and fork mode are online once started,
//               cluster workers once they report online)
//   serve_ms    online -> the replacement's first answer to a client (its own start-up: runtime, app,
//               listen; for listen mode also the activation shim)
//
// then one "phase KEY MEDIAN" line per phase (medians over the rounds). Times are wall-clock
// (kill_unix_ns from crashprobe, event times from the daemon, both CLOCK_REALTIME on one host).
'use strict';
const fs = require('fs');

const [probeFile, eventsFile] = process.argv.slice(2);
const rounds = [];
for (const line of fs.readFileSync(probeFile, 'utf8').split('\n')) {
  if (!line.startsWith('round=')) continue;
  const kv = Object.fromEntries(line.split(' ').map((f) => f.split('=')));
  if (kv.recovery_ms === 'n/a') continue;
  rounds.push({ victim: Number(kv.victim), killNs: BigInt(kv.kill_unix_ns), recoveryMs: Number(kv.recovery_ms) });
}
const events = [];
for (const line of fs.readFileSync(eventsFile, 'utf8').split('\n')) {
  if (!line.trim()) continue;
  try {
    events.push(JSON.parse(line));
  } catch {
    // not an event (a CLI message)
  }
}
// RFC 3339 with nanoseconds -> ns since the epoch, as a BigInt.
function ns(t) {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(t);
  if (!m) return null;
  const frac = (m[2] || '').padEnd(9, '0').slice(0, 9);
  return BigInt(Date.parse(m[1] + m[3])) * 1000000n + BigInt(frac);
}
const msOf = (a, b) => (a == null || b == null ? null : Number(b - a) / 1e6);
const keys = ['detect_ms', 'restart_ms', 'spawn_ms', 'serve_ms'];
const all = Object.fromEntries(keys.map((k) => [k, []]));
for (const r of rounds) {
  const i = events.findIndex((e) => e.type === 'exit' && e.pid === r.victim);
  if (i < 0) continue;
  const exit = events[i];
  let launching = null;
  let online = null;
  for (const e of events.slice(i + 1)) {
    if (e.pm_id !== exit.pm_id || e.type !== 'status') continue;
    if (e.to === 'launching' && launching == null) launching = ns(e.time);
    if (e.to === 'online' && launching != null) {
      online = ns(e.time);
      break;
    }
  }
  const exitNs = ns(exit.time);
  const servedNs = r.killNs + BigInt(Math.round(r.recoveryMs * 1e6));
  const ph = {
    detect_ms: msOf(r.killNs, exitNs),
    restart_ms: msOf(exitNs, launching),
    spawn_ms: msOf(launching, online),
    serve_ms: msOf(online, servedNs),
  };
  console.log(keys.map((k) => `${k}=${ph[k] == null ? 'n/a' : ph[k].toFixed(2)}`).join(' '));
  for (const k of keys) if (ph[k] != null) all[k].push(ph[k]);
}
for (const k of keys) {
  const v = all[k].sort((a, b) => a - b);
  if (v.length === 0) continue;
  const n = v.length;
  const med = n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  console.log(`phase ${k} ${med.toFixed(2)}`);
}
