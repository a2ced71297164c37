// An unmodified node:http app (ES module) for Bun and Deno in cluster mode: it answers with its pid,
// after DELAY_MS milliseconds (default 0), so that a test can have requests in flight.
import http from 'node:http';
let delay = 0;
try {
  delay = +(process.env.DELAY_MS || 0);
} catch {} // Deno without --allow-env=DELAY_MS
http.createServer((req, res) => setTimeout(() => res.end(`${process.pid}\n`), delay)).listen(+process.env.PORT, '127.0.0.1');
