// An unmodified Express 4 app, as people write them: app.listen(PORT), a SIGINT handler that
// closes the server. bench/drain.sh reloads it under keep-alive load. X-Worker-Pid names the
// process that answered (for loadgen's pids count).
const express = require('express');
const app = express();
app.all('/', (req, res) => {
  res.set('X-Worker-Pid', String(process.pid));
  res.send('hello world');
});
const server = app.listen(process.env.PORT || 8080);
process.on('SIGINT', () => server.close());
