// HTTP hello world that shuts down gracefully on the IPC message 'shutdown', SIGINT or SIGTERM: it
// stops accepting, lets in-flight requests finish (idle keep-alive connections are closed), then exits 0.
// Env: PORT (default 8080), HOST, SHUTDOWN_DELAY_MS (wait this long before closing; default 0).
// Prints "graceful.js <pid> listening on <port>", then "graceful.js <pid> shutting down (<why>)" and
// "graceful.js <pid> closed".
const http = require('http');
const cluster = require('cluster');

const id = String(cluster.worker ? cluster.worker.id : 0);
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'X-Worker-Pid': String(process.pid), 'X-Worker-Id': id });
  res.end('hello world');
});
server.listen(process.env.PORT || 8080, process.env.HOST, () => {
  console.log(`graceful.js ${process.pid} listening on ${server.address().port}`);
});

let stopping = false;
function shutdown(why) {
  if (stopping) return;
  stopping = true;
  console.log(`graceful.js ${process.pid} shutting down (${why})`);
  setTimeout(() => {
    server.close(() => {
      console.log(`graceful.js ${process.pid} closed`);
      process.exit(0);
    });
    if (server.closeIdleConnections) server.closeIdleConnections();
  }, Number(process.env.SHUTDOWN_DELAY_MS || 0));
}
process.on('message', (m) => { if (m === 'shutdown') shutdown('message'); });
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
