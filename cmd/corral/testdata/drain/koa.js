// Koa 2 app for the drain tests. GET /stream streams for STREAM_MS (default 3000).
const Koa = require('koa');
const { PassThrough } = require('stream');
const app = new Koa();
app.use(async (ctx) => {
  ctx.set('X-Worker-Pid', String(process.pid));
  if (ctx.path === '/stream') {
    const s = new PassThrough();
    ctx.type = 'text/plain';
    ctx.body = s;
    const end = Date.now() + Number(process.env.STREAM_MS || 3000);
    const t = setInterval(() => {
      if (Date.now() >= end) { clearInterval(t); s.end('done\n'); return; }
      s.write('tick\n');
    }, 100);
    return;
  }
  ctx.body = 'ok';
});
app.listen(process.env.PORT || 8080);
