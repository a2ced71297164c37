// A Node cluster worker that answers every request with its Node version.
const http = require('http');
http.createServer((req, res) => res.end(process.version)).listen(+process.env.PORT, '127.0.0.1');
