// The HTTP floor: a bare Fastify POST route that parses the same JSON body as POST /v1/keys/verify and
// answers a small JSON. No logger, no schema, no auth: what any Fastify JSON endpoint costs on this machine.
// Started by bench/http.ts as its own process (like the Keyward server), plain `node`, prints its URL.
import Fastify from 'fastify';

const app = Fastify({ logger: false });

app.post('/v1/keys/verify', async (request) => {
  const key = request.body?.key;
  return { valid: typeof key === 'string', code: typeof key === 'string' ? 'VALID' : 'INVALID_FORMAT' };
});

const url = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`floor listening on ${url}\n`);

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => {
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
