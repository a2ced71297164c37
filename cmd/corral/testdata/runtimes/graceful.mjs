// The same app, closing its server on SIGINT (corral's kill signal) so that requests in flight finish:
// what a Bun app needs, because Bun's node:http servers are outside the cluster protocol and a
// disconnect does not close them (docs/protocol.md §9).
import http from 'node:http';
const srv = http.createServer((req, res) => res.end(`${process.pid}\n`)).listen(+process.env.PORT, '127.0.0.1');
process.on('SIGINT', () => srv.close(() => process.exit(0)));
