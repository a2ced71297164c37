// Socket.IO clients (npm socket.io-client) forced onto the long-polling transport: CLIENTS clients,
// from 16 loopback addresses,
// each connects (handshake), asks 'whoami' ROUNDS times, and disconnects. Prints one JSON line:
// {"ok":N,"failed":N,"errors":[...],"pids":{...}}. A client counts as ok only if every step succeeded.
const http = require('http');
const { io } = require('socket.io-client');
// Client i connects from 127.0.0.(10 + i % 16): several client IP addresses on one host.
const addr = (i) => `127.0.0.${10 + (i % 16)}`;
const url = process.argv[2];
const clients = +(process.env.CLIENTS || 20), rounds = +(process.env.ROUNDS || 5);
const out = { ok: 0, failed: 0, errors: [], pids: {} };
function one(i) {
  return new Promise((resolve) => {
    const agent = new http.Agent({ localAddress: addr(i) });
    const s = io(url, { transports: ['polling'], reconnection: false, timeout: 5000, forceNew: true, agent });
    let over = false;
    const fail = (why) => { if (over) return; over = true; out.failed++; if (out.errors.length < 5) out.errors.push(String(why)); s.close(); resolve(); };
    s.on('connect_error', (e) => fail('connect_error: ' + (e && e.message)));
    s.on('disconnect', (r) => { if (r !== 'io client disconnect') fail('disconnect: ' + r); });
    s.on('connect', async () => {
      const seen = new Set();
      for (let i = 0; i < rounds; i++) {
        try {
          const pid = await s.timeout(5000).emitWithAck('whoami');
          seen.add(pid);
        } catch (e) { return fail('whoami: ' + e.message); }
      }
      if (seen.size !== 1) return fail('answered by ' + [...seen]);
      out.pids[[...seen][0]] = (out.pids[[...seen][0]] || 0) + 1;
      if (over) return;
      over = true;
      out.ok++;
      s.off('disconnect');
      s.close();
      resolve();
    });
  });
}
(async () => {
  const all = [];
  for (let i = 0; i < clients; i++) all.push(one(i));
  await Promise.all(all);
  console.log(JSON.stringify(out));
  process.exit(0);
})();
