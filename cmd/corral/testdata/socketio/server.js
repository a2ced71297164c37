// A Socket.IO 4 server (npm socket.io) for `corral start ... -i 4`: every event is answered with the
// worker's pid, and so is a plain GET outside /socket.io/. Found through NODE_PATH (the test installs
// socket.io).
const http = require('http');
const { Server } = require('socket.io');
const srv = http.createServer((req, res) => res.end(String(process.pid)));
const io = new Server(srv);
io.on('connection', (socket) => {
  socket.on('whoami', (cb) => cb(process.pid));
});
srv.listen(+process.env.PORT, '127.0.0.1');
