// An HTTP app with health endpoints, for corral's readiness and liveness probes. "/" answers
// "hello from <pid>" (X-Worker-Pid names the process); "/health" answers 503 for READY_AFTER_MS
// after the start (default 0), then 200; "/live" answers 200. BROKEN=1 makes a broken build:
// "/health" always 503 and "/" 500. Env: PORT (default 8080), HOST (default: all).
const http = require('http');

const started = Date.now();
const readyAfter = Number(process.env.READY_AFTER_MS || 0);
const broken = process.env.BROKEN === '1';
const server = http.createServer((req, res) => {
  res.setHeader('X-Worker-Pid', String(process.pid));
  if (req.url === '/health') {
    const ok = !broken && Date.now() - started >= readyAfter;
    res.writeHead(ok ? 200 : 503);
    res.end(ok ? 'ok' : broken ? 'broken build' : 'warming up');
    return;
  }
  if (req.url === '/live') {
    res.end('alive');
    return;
  }
  res.writeHead(broken ? 500 : 200);
  res.end(broken ? 'broken build' : 'hello from ' + process.pid);
});
server.listen(process.env.PORT || 8080, process.env.HOST, () => {
  console.log(`health.js ${process.pid} listening on ${server.address().port}`);
});
