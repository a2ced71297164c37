// HTTP hello world for wait_ready: sends the IPC message 'ready' once listening (after READY_DELAY_MS,
// default 0). Env: PORT (default 8080), HOST. Prints "ready.js <pid> listening on <port>" and
// "ready.js <pid> ready".
const http = require('http');

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'X-Worker-Pid': String(process.pid) });
  res.end('hello world');
});
server.listen(process.env.PORT || 8080, process.env.HOST, () => {
  console.log(`ready.js ${process.pid} listening on ${server.address().port}`);
  setTimeout(() => {
    if (process.send) process.send('ready');
    console.log(`ready.js ${process.pid} ready`);
  }, Number(process.env.READY_DELAY_MS || 0));
});
