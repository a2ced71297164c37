// Hello world HTTP server: the seed's app, unmodified apart from two headers naming the process that
// answered (X-Worker-Pid, X-Worker-Id: the cluster worker id, 0 outside a cluster) and a start-up line
// "app.js <pid> listening on <port>". Env: PORT (default 8080; 0 picks a free port), HOST (default: all).
const http = require('http');
const cluster = require('cluster');

const id = String(cluster.worker ? cluster.worker.id : 0);
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'X-Worker-Pid': String(process.pid), 'X-Worker-Id': id });
  res.end('hello world');
});
server.listen(process.env.PORT || 8080, process.env.HOST, () => {
  console.log(`app.js ${process.pid} listening on ${server.address().port}`);
});
