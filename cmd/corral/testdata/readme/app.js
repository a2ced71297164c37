// The app.js of the README's CLI lines, run by cmd/corral/readme_test.go: HTTP hello world on $PORT
// that sends 'ready' once listening (for --wait-ready) and logs the requests whose path starts with
// /log (so that `corral logs` has new lines to stream when the test asks for them). Prints
// "app.js <pid> listening on <port>" and "app.js <pid> served <path>".
const http = require('http');

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/log')) console.log(`app.js ${process.pid} served ${req.url}`);
  res.end('hello world');
});
server.listen(process.env.PORT || 8080, () => {
  console.log(`app.js ${process.pid} listening on ${server.address().port}`);
  if (process.send) process.send('ready');
});
