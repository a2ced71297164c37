// examples/node/app.js as an ES module, for Bun and Deno workers: "hello world" on 127.0.0.1:$PORT.
import http from 'node:http';
import process from 'node:process';
http.createServer((req, res) => res.end('hello world')).listen(+process.env.PORT, '127.0.0.1');
