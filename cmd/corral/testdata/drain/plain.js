// Plain http.createServer app for the drain tests (drain_test.go): GET /stream streams for
// STREAM_MS (default 3000), anything else answers "ok". X-Worker-Pid names the process. With
// SIGINT_HANDLER=1 it has the classic handler: log, server.close(), exit 0 when closed.
const http = require('http');
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.setHeader('X-Worker-Pid', String(process.pid));
    if (req.url === '/stream') {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      const end = Date.now() + Number(process.env.STREAM_MS || 3000);
      const t = setInterval(() => {
        if (Date.now() >= end) {
          clearInterval(t);
          res.end('done\n');
          return;
        }
        res.write('tick\n');
      }, 100);
      return;
    }
    res.end('ok');
  });
});
// Under `corral start --listen` the socket is fd 3 (LISTEN_FDS).
if (process.env.LISTEN_FDS) server.listen({ fd: 3 });
else server.listen(process.env.PORT || 8080);
if (process.env.SIGINT_HANDLER === '1') {
  process.on('SIGINT', () => {
    console.log(`sigint handler ran in ${process.pid}`);
    server.close(() => process.exit(0));
  });
}
