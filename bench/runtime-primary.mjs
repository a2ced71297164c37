// Bun's or Deno's own cluster primary, for benchmarks: runs SCRIPT in N workers of the same runtime.
//
//   bun bench/runtime-primary.mjs N SCRIPT
//   deno run -A bench/runtime-primary.mjs N SCRIPT
//
// Prints "runtime-primary <pid> ready <N>" once every worker listens; on SIGINT or SIGTERM it kills
// the workers and exits 0.
import cluster from 'node:cluster';
import process from 'node:process';

const n = Number(process.argv[2]);
const script = process.argv[3];
if (!Number.isInteger(n) || n < 1 || !script) {
  console.error('usage: runtime-primary.mjs N SCRIPT');
  process.exit(2);
}
// Deno starts a worker as `deno <execArgv> <script>`: it needs `run` and permissions.
const deno = typeof Deno !== 'undefined';
cluster.setupPrimary({ exec: script, execArgv: deno ? ['run', '-A'] : [] });
let listening = 0;
cluster.on('listening', () => {
  if (++listening === n) console.log(`runtime-primary ${process.pid} ready ${n}`);
});
for (let i = 0; i < n; i++) cluster.fork();
let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
  setTimeout(() => process.exit(0), 1000);
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
