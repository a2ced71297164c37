// HTTP/2 (h2c, prior knowledge) app for the drain tests, compatibility API. GET /stream streams
// for STREAM_MS (default 3000).
const http2 = require('http2');
const server = http2.createServer((req, res) => {
  res.setHeader('X-Worker-Pid', String(process.pid));
  if (req.url === '/stream') {
    const end = Date.now() + Number(process.env.STREAM_MS || 3000);
    const t = setInterval(() => {
      if (Date.now() >= end) { clearInterval(t); res.end('done\n'); return; }
      res.write('tick\n');
    }, 100);
    return;
  }
  req.resume();
  req.on('end', () => res.end('ok'));
});
server.listen(process.env.PORT || 8080);
