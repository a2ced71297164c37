// An unmodified node:http app (ES module) for Bun and Deno in cluster mode: it answers with its pid.
import http from 'node:http';
http.createServer((req, res) => res.end(`${process.pid}\n`)).listen(+process.env.PORT, '127.0.0.1');
