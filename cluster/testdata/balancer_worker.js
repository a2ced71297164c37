// A Node cluster worker for the balancer counters: GET /hold is never answered (the connection stays
// open); the worker whose id is MAXCONN_WORKER sets server.maxConnections = 1.
const cluster = require('cluster');
const http = require('http');
const id = cluster.worker.id;
const srv = http.createServer((req, res) => {
  if (req.url === '/hold') return;
  res.end(String(id));
});
if (process.env.MAXCONN_WORKER === String(id)) srv.maxConnections = 1;
srv.listen(+process.env.PORT, '127.0.0.1');
