// An unmodified Node cluster worker: http, net and dgram servers, and IPC both ways.
const cluster = require('cluster');
const http = require('http');
const net = require('net');
const dgram = require('dgram');
const id = cluster.worker.id;
http.createServer((req, res) => { res.end(`${id} ${process.pid}`); }).listen(+process.env.HTTP_PORT, '127.0.0.1');
net.createServer((c) => { c.end(`net ${id}`); }).listen(+process.env.NET_PORT, '127.0.0.1');
const udp = dgram.createSocket('udp4');
udp.on('message', (m, r) => udp.send(`udp ${id} ${m}`, r.port, r.address));
udp.bind(+process.env.UDP_PORT, '127.0.0.1');
process.on('message', (m) => {
  process.send({ echo: m, id });
  if (m === 'please-disconnect') {
    udp.close();
    cluster.worker.disconnect();
  }
});
process.send({ hello: id, version: process.version });
