// Preloaded by corral into Bun cluster workers (bun --preload). Bun's node:http servers in a cluster
// worker bind the port themselves (SO_REUSEPORT) instead of taking connections from the primary, and a
// disconnect does not close them: the worker keeps accepting until the kill signal ends it, with its
// requests in flight. This closes them when the primary disconnects the worker, and turns the kill signal
// (SIGINT or SIGTERM), when the app has no handler of its own, into the same graceful close: the process
// exits once its servers have finished their requests. See docs/protocol.md §9.
import cluster from 'node:cluster';
import http from 'node:http';
import process from 'node:process';

if (cluster.isWorker) {
  const open = new Set();
  const listen = http.Server.prototype.listen;
  http.Server.prototype.listen = function (...args) {
    open.add(this);
    this.once('close', () => open.delete(this));
    return listen.apply(this, args);
  };
  let closing = false;
  const closeAll = (then) => {
    if (!closing) {
      closing = true;
      for (const s of open) s.close();
    }
    if (then) {
      const check = () => (open.size === 0 ? then() : setTimeout(check, 10));
      check();
    }
  };
  process.on('disconnect', () => closeAll());
  for (const sig of ['SIGINT', 'SIGTERM']) {
    const onSignal = () => {
      if (process.listenerCount(sig) > 1) {
        closeAll(); // the app handles the signal itself; its servers stop taking connections
        return;
      }
      closeAll(() => process.exit(0));
    };
    process.on(sig, onSignal);
  }
}
