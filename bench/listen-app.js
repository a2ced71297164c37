// Hello world HTTP server on a socket it is given (systemd socket activation: fd 3, as `corral start
// --listen ADDR` passes it), with the same X-Worker-Pid header as examples/node/app.js. Used by
// bench/supervisor.sh for corral's listen mode. Without LISTEN_FDS it listens on $PORT (8080).
const http = require('http');

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'X-Worker-Pid': String(process.pid), 'X-Worker-Id': '0' });
  res.end('hello world');
});
const target = process.env.LISTEN_FDS ? { fd: 3 } : { port: Number(process.env.PORT || 8080) };
server.listen(target, () => console.log(`listen-app.js ${process.pid} listening`));
