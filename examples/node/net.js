// TCP echo server: writes back every byte it reads. Env: PORT (default 8080), HOST. Prints
// "net.js <pid> listening on <port>".
const net = require('net');

const server = net.createServer((socket) => {
  socket.on('error', () => {});
  socket.pipe(socket);
});
server.listen(process.env.PORT || 8080, process.env.HOST, () => {
  console.log(`net.js ${process.pid} listening on ${server.address().port}`);
});
