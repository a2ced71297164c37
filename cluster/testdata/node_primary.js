// Node's own cluster primary running Go workers: the Go test binary is set as process.execPath, so
// cluster.fork() starts `<go binary> worker`.
const cluster = require('cluster');
process.execPath = process.env.GO_WORKER_BIN;
cluster.setupPrimary({ exec: 'worker', args: [] });
let listening = 0;
cluster.on('listening', (w, a) => { if (++listening === 2) console.log(`READY ${a.port}`); });
cluster.on('message', (w, m) => console.log(`MESSAGE ${w.id} ${JSON.stringify(m)}`));
cluster.on('exit', (w, code, sig) => console.log(`EXIT ${w.id} ${code} ${sig} ${w.exitedAfterDisconnect}`));
for (let i = 0; i < 2; i++) cluster.fork({ CLUSTER_TEST_HELPER: 'http', ADDR: `127.0.0.1:${process.env.PORT}` });
process.stdin.on('data', () => cluster.disconnect(() => console.log('DISCONNECTED')));
