// Express 4 app for the drain tests, as the issue measured it: app.listen(PORT) and a SIGINT
// handler calling server.close(). GET /stream streams for STREAM_MS (default 3000).
const express = require('express');
const app = express();
app.use((req, res, next) => { res.set('X-Worker-Pid', String(process.pid)); next(); });
app.get('/stream', (req, res) => {
  res.type('text/plain');
  const end = Date.now() + Number(process.env.STREAM_MS || 3000);
  const t = setInterval(() => {
    if (Date.now() >= end) { clearInterval(t); res.end('done\n'); return; }
    res.write('tick\n');
  }, 100);
});
app.all('/', (req, res) => res.send('ok'));
const server = app.listen(process.env.PORT || 8080);
process.on('SIGINT', () => {
  console.log(`sigint handler ran in ${process.pid}`);
  server.close();
});
