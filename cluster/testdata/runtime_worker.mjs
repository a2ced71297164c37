// A cluster worker for Bun and Deno (an ES module with node: imports only): node:http and node:net
// servers, IPC both ways. GET /crash?id=N makes worker N exit with code 3.
import cluster from 'node:cluster';
import http from 'node:http';
import net from 'node:net';
const id = cluster.worker.id;
const runtime = typeof Bun !== 'undefined' ? 'bun' : typeof Deno !== 'undefined' ? 'deno' : 'node';
const version = runtime === 'bun' ? Bun.version : runtime === 'deno' ? Deno.version.deno : process.version;
http.createServer((req, res) => {
  if (req.url === `/crash?id=${id}`) process.exit(3);
  res.end(`${id} ${process.pid}`);
}).listen(+process.env.HTTP_PORT, '127.0.0.1');
net.createServer((c) => { c.end(`net ${id}`); }).listen(+process.env.NET_PORT, '127.0.0.1');
process.on('message', (m) => {
  process.send({ echo: m, id });
  if (m === 'please-disconnect') cluster.worker.disconnect();
});
process.send({ hello: id, runtime, version });
