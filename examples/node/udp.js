// UDP echo server: answers every datagram with the same bytes. Env: PORT (default 8080), HOST
// (default 0.0.0.0), UDP_TYPE (udp4 or udp6; default udp4). Prints "udp.js <pid> listening on <port>".
const dgram = require('dgram');

const socket = dgram.createSocket(process.env.UDP_TYPE || 'udp4');
socket.on('message', (msg, rinfo) => socket.send(msg, rinfo.port, rinfo.address));
socket.bind(Number(process.env.PORT || 8080), process.env.HOST, () => {
  console.log(`udp.js ${process.pid} listening on ${socket.address().port}`);
});
