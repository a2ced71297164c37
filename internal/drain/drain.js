'use strict';
// corral's connection drain for Node HTTP servers, loaded into an app by corral with
// `--require` (NODE_OPTIONS). It does nothing until the process is asked to stop; then every
// http/https/http2 server stops accepting, each further request on an open connection is
// answered with `Connection: close` (HTTP/2: GOAWAY), requests in flight finish, and an idle
// keep-alive connection is closed only after a grace in which its client may still send one
// more request. Then the stop request is delivered to the app as if nothing had happened: its
// SIGINT/SIGTERM listeners run (or the signal's default action kills the process), its 'message'
// listeners get 'shutdown', Node's cluster code gets the primary's disconnect.
//
// What the app can see: net.Server.prototype.listen is wrapped (to know the servers), a server
// that listens gets a 'connection' (https: 'secureConnection'; http2: 'session') listener, and
// process.emit is wrapped (to hold back the stop request during the drain); once a server
// listens, the process has a SIGINT and a SIGTERM listener. No per-request work is done until a
// drain begins: the 'request' listener that marks responses `Connection: close` is added then.
// The environment variables corral used to load this file are removed at once.
//
// Design and tests: internal/drain (Go) and docs/architecture.md "How a drain flows".
(function corralDrain() {
  const env = process.env;
  let conf;
  try {
    conf = JSON.parse(env.CORRAL_DRAIN || 'null');
  } catch (e) {
    conf = null;
  }
  delete env.CORRAL_DRAIN;
  if (!conf || typeof conf !== 'object') return;
  // Children of the app must not load the drain: give NODE_OPTIONS back as the user set it.
  if (typeof conf.o === 'string') env.NODE_OPTIONS = conf.o;
  else delete env.NODE_OPTIONS;
  const timeoutMs = conf.t > 0 ? conf.t : 1200;
  const idleMs = conf.i >= 0 ? conf.i : Math.min(1000, timeoutMs / 2);
  const tickMs = 25;

  const net = require('net');
  const netListen = net.Server.prototype.listen;
  const netClose = net.Server.prototype.close;
  const origEmit = process.emit;
  const servers = new Set(); // every http/https/http2 server that listened and is not gone
  const idleSince = Symbol('corralDrainIdleSince');
  const joined = Symbol('corralDrainJoined');
  let armed = false;
  let state = 0; // 0 serving, 1 draining, 2 drained
  let deferred = []; // stop requests held back while draining: [event, args]

  function kindOf(server) {
    if (typeof server.updateSettings === 'function') return 'h2';
    if (typeof server.closeIdleConnections === 'function') return 'h1';
    return null;
  }

  // track adds x to set, pruning members that are gone once the set has doubled since the last
  // sweep: O(1) amortised, and no listener on each connection.
  function track(rec, x) {
    rec.conns.add(x);
    if (rec.conns.size >= rec.sweepAt) {
      for (const c of rec.conns) if (c.destroyed) rec.conns.delete(c);
      rec.sweepAt = Math.max(64, rec.conns.size * 2);
    }
  }

  function register(server) {
    if (server.__corralDrain) return;
    const kind = kindOf(server);
    if (!kind) return;
    const rec = { server, kind, conns: new Set(), sweepAt: 64 };
    Object.defineProperty(server, '__corralDrain', { value: rec, enumerable: false });
    if (kind === 'h2') {
      server.on('session', (s) => track(rec, s));
    } else {
      const tls = typeof server.addContext === 'function';
      server.on(tls ? 'secureConnection' : 'connection', (s) => track(rec, s));
    }
    for (const r of servers) {
      if (!r.server.listening && r.conns.size === 0) servers.delete(r);
    }
    servers.add(rec);
    arm();
  }

  net.Server.prototype.listen = function listen() {
    try {
      if (state === 0) register(this);
    } catch (e) {
      // never let the drain break a listen
    }
    return netListen.apply(this, arguments);
  };

  function noop() {}

  // process.emit is wrapped at once, before the app runs: Node binds a signal's handler to
  // process.emit when the first listener for that signal is added, and the app may add one before
  // its server listens. The wrapper does nothing until a server has listened (armed).
  process.emit = function emit(ev, a) {
    if (armed && state !== 2) {
      if (ev === 'SIGINT' || ev === 'SIGTERM') {
        if (state === 1) {
          // A second signal while draining: stop waiting, deliver everything now.
          finish(true);
          return origEmit.apply(this, arguments);
        }
        return hold(ev, arguments);
      }
      if (ev === 'message' && a === 'shutdown') return hold(ev, arguments);
      if (ev === 'internalMessage' && a && a.cmd === 'NODE_CLUSTER' && a.act === 'disconnect') {
        return hold(ev, arguments);
      }
    }
    return origEmit.apply(this, arguments);
  };

  // arm makes the stop requests start a drain once the first HTTP server listens: a process
  // without one keeps its signals' default actions.
  function arm() {
    if (armed) return;
    armed = true;
    process.on('SIGINT', noop);
    process.on('SIGTERM', noop);
  }

  function hold(ev, args) {
    deferred.push(Array.prototype.slice.call(args));
    if (state === 0) start();
    return true;
  }

  let timer = null;
  let startedAt = 0;
  let drained = 0;
  let cut = 0;
  const live = new Map(); // connections being drained -> 'h1' or 'h2' (a session)

  function markClose(req, res) {
    if (res && !res.headersSent && 'shouldKeepAlive' in res) res.shouldKeepAlive = false;
  }

  function start() {
    state = 1;
    startedAt = Date.now();
    for (const rec of servers) {
      const s = rec.server;
      if (s._handle) {
        netClose.call(s); // stop accepting; in a cluster worker this tells the primary too
        // An app that closes the server after the drain gets the callback it expects, not
        // ERR_SERVER_NOT_RUNNING (Node's answer for a server already closed).
        Object.defineProperty(s, 'close', {
          value: function close(cb) {
            if (this._handle) return Object.getPrototypeOf(this).close.apply(this, arguments);
            if (typeof cb === 'function') process.nextTick(cb);
            return this;
          },
          configurable: true, writable: true, enumerable: false,
        });
      }
      s.prependListener('request', markClose);
      for (const c of rec.conns) join(rec, c);
    }
    timer = setInterval(tick, tickMs);
    tick();
  }

  function join(rec, c) {
    if (live.has(c) || c.destroyed || c[joined]) return;
    c[joined] = true;
    if (rec.kind === 'h2') {
      // Two GOAWAYs, as HTTP/2 servers shut down gracefully: first one that names the highest
      // possible stream, so that streams the client is opening right now are still served; after
      // the grace, close(): the final GOAWAY (the last stream really accepted), and the session
      // ends once its streams are done.
      try {
        c.goaway(0, 2147483647);
      } catch (e) {
        c.close();
      }
      c[idleSince] = Date.now();
    }
    live.set(c, rec.kind);
  }

  function tick() {
    const now = Date.now();
    // Connections accepted just before the listener closed join the drain.
    for (const rec of servers) {
      for (const c of rec.conns) join(rec, c);
    }
    for (const [c, kind] of live) {
      if (c.destroyed) {
        live.delete(c);
        drained++;
        continue;
      }
      if (kind === 'h2') {
        if (c[idleSince] && now - c[idleSince] >= idleMs) {
          c[idleSince] = 0;
          c.close(); // ends the session once its streams are done
        }
        continue;
      }
      const res = c._httpMessage;
      if (res) {
        c[idleSince] = 0;
        if (!res.headersSent) res.shouldKeepAlive = false;
      } else if (!c[idleSince]) {
        c[idleSince] = now;
      } else if (now - c[idleSince] >= idleMs) {
        c.destroy();
        live.delete(c);
        drained++;
      }
    }
    if (live.size === 0) return finish(false);
    if (now - startedAt >= timeoutMs) {
      for (const c of live.keys()) {
        cut++;
        c.destroy();
      }
      live.clear();
      finish(false);
    }
  }

  function finish(forced) {
    if (state === 2) return;
    state = 2;
    if (timer) clearInterval(timer);
    for (const rec of servers) rec.server.removeListener('request', markClose);
    if (forced) {
      cut += live.size;
      live.clear();
    }
    report();
    const held = deferred;
    deferred = [];
    for (const args of held) deliver(args);
  }

  function report() {
    if (typeof process.send !== 'function' || !process.connected) return;
    try {
      process.send({ corral_drain: { drained, cut, ms: Date.now() - startedAt } });
    } catch (e) {
      // the channel is gone: nobody to tell
    }
  }

  function deliver(args) {
    const ev = args[0];
    if (ev === 'SIGINT' || ev === 'SIGTERM') {
      const others = process.listeners(ev).filter((l) => l !== noop);
      if (others.length > 0) {
        origEmit.apply(process, args);
        return;
      }
      // No listener of the app's: the signal's default action, as without the drain.
      process.removeListener(ev, noop);
      process.kill(process.pid, ev);
      return;
    }
    origEmit.apply(process, args);
  }
})();
