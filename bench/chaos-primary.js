// Node's own cluster primary that replaces a worker as soon as it exits, the way Node users write it
// (cluster.on('exit', () => cluster.fork())), for bench/chaos.sh: bench/node-primary.js with re-forking.
//
//   node bench/chaos-primary.js N SCRIPT [ARGS...]
//
// With WORKER_EXEC set, the workers are that executable instead of node (see bench/node-primary.js).
// Prints "chaos-primary <pid> ready <N>" once the first N workers listen, then one line
// "chaos-primary refork <count> worker <id> pid <pid> (code <code>, signal <signal>)" per worker it
// replaces. On SIGINT or SIGTERM it stops replacing, kills the workers and exits 0.
require('./node-primary.js').run({ name: 'chaos-primary', refork: true });
