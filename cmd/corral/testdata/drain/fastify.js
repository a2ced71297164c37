// Fastify 5 app for the drain tests. GET /stream streams for STREAM_MS (default 3000).
const fastify = require('fastify')();
const { Readable } = require('stream');
fastify.addHook('onRequest', async (req, reply) => { reply.header('X-Worker-Pid', String(process.pid)); });
fastify.get('/stream', (req, reply) => {
  const end = Date.now() + Number(process.env.STREAM_MS || 3000);
  const s = new Readable({ read() {} });
  const t = setInterval(() => {
    if (Date.now() >= end) { clearInterval(t); s.push('done\n'); s.push(null); return; }
    s.push('tick\n');
  }, 100);
  reply.type('text/plain').send(s);
});
fastify.all('/', async () => 'ok');
fastify.listen({ port: Number(process.env.PORT || 8080), host: '0.0.0.0' });
