// Node's own cluster primary that replaces a worker as soon as it exits, the way Node users write it
// (cluster.on('exit', () => cluster.fork())), for bench/chaos.sh.
//
//   node bench/chaos-primary.js N SCRIPT [ARGS...]
//
// With WORKER_EXEC set, the workers are that executable instead of node (see bench/node-primary.js).
// Prints "chaos-primary <pid> ready <N>" once the first N workers listen, then one line
// "chaos-primary refork <count> worker <id> pid <pid> (code <code>, signal <signal>)" per worker it
// replaces. On SIGINT or SIGTERM it stops replacing, kills the workers and exits 0.
const cluster = require('cluster');

const n = Number(process.argv[2]);
const script = process.argv[3];
if (!Number.isInteger(n) || n < 1 || !script) {
  console.error('usage: node chaos-primary.js N SCRIPT [ARGS...]');
  process.exit(2);
}
if (process.env.WORKER_EXEC) {
  // child_process.fork, which cluster uses, starts process.execPath.
  process.execPath = process.env.WORKER_EXEC;
}
cluster.setupPrimary({ exec: script, args: process.argv.slice(4) });

let listening = 0;
let reforks = 0;
let stopping = false;
cluster.on('listening', () => {
  listening++;
  if (listening === n) console.log(`chaos-primary ${process.pid} ready ${n}`);
});
cluster.on('exit', (w, code, signal) => {
  if (stopping) {
    if (Object.keys(cluster.workers).length === 0) process.exit(0);
    return;
  }
  reforks++;
  console.log(`chaos-primary refork ${reforks} worker ${w.id} pid ${w.process.pid} (code ${code}, signal ${signal})`);
  cluster.fork();
});
for (let i = 0; i < n; i++) cluster.fork();

function stop() {
  if (stopping) return;
  stopping = true;
  const workers = Object.values(cluster.workers);
  if (workers.length === 0) process.exit(0);
  for (const w of workers) w.process.kill('SIGTERM');
  setTimeout(() => process.exit(0), 5000).unref();
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
