// Node's own cluster primary, for benchmarks: runs SCRIPT in N workers.
//
//   node bench/node-primary.js N SCRIPT [ARGS...]
//
// With WORKER_EXEC set, the workers are that executable instead of node (a Go worker, say); it is started
// as `WORKER_EXEC SCRIPT ARGS...` with Node's cluster environment and IPC channel, and ignores SCRIPT.
// Prints "node-primary <pid> ready <N>" once every worker listens. On SIGINT or SIGTERM it kills the
// workers and exits 0. Workers are not restarted, unless run({ refork: true }) (bench/chaos-primary.js):
// then each worker that exits is replaced at once, with one line "<name> refork <count> worker <id> pid
// <pid> (code <code>, signal <signal>)" per replacement.
const cluster = require('cluster');

function run({ name = 'node-primary', refork = false } = {}) {
  const n = Number(process.argv[2]);
  const script = process.argv[3];
  if (!Number.isInteger(n) || n < 1 || !script) {
    console.error(`usage: node ${name}.js N SCRIPT [ARGS...]`);
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
    if (listening === n) console.log(`${name} ${process.pid} ready ${n}`);
  });
  cluster.on('exit', (w, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers).length === 0) process.exit(0);
      return;
    }
    if (!refork) {
      console.error(`${name}: worker ${w.id} exited (code ${code}, signal ${signal})`);
      return;
    }
    reforks++;
    console.log(`${name} refork ${reforks} worker ${w.id} pid ${w.process.pid} (code ${code}, signal ${signal})`);
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
}

module.exports = { run };
if (require.main === module) run();
