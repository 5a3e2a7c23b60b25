// Seed 001's sessions, the Keyward way: a host API on Express where each session belongs to the key that
// created it, stored with `ownerOf(req.keyward)` (the key's lineage id, stable across rolls) and listed
// through an owner index. The store is in memory; docs/owning-resources.md shows the same with SQL and Redis.
// Run: npm run build && KEYWARD_URL=http://127.0.0.1:8080 KEYWARD_VERIFY_KEY=kw_… npx tsx examples/owned-resources/app.ts
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { type KeywardIdentity, ownerOf } from '@keyward/sdk';
import { type KeywardExpressOptions, keywardExpress } from '@keyward/sdk/express';
import express, { type Express, type Request, type Response } from 'express';

export interface Session {
  id: string;
  model: string;
  /** `ownerOf(identity)`: an opaque id, never the key and never its hash. */
  owner: string;
  createdAt: string;
}

/**
 * Sessions by id, and an owner index (seed 001's Redis set `session:owner_hash:<hash>`, here
 * `session:owner:<owner>`): listing "my sessions" reads one index entry, not every session.
 */
export class SessionStore {
  readonly sessions = new Map<string, Session>();
  readonly byOwner = new Map<string, Set<string>>();

  create(owner: string, model: string): Session {
    const session: Session = { id: randomUUID(), model, owner, createdAt: new Date().toISOString() };
    this.sessions.set(session.id, session);
    const index = this.byOwner.get(owner) ?? new Set<string>();
    this.byOwner.set(owner, index.add(session.id));
    return session;
  }

  /** The session if `owner` owns it; `undefined` otherwise (another owner's session is as good as absent). */
  get(id: string, owner: string): Session | undefined {
    const session = this.sessions.get(id);
    return session?.owner === owner ? session : undefined;
  }

  /** The owner's sessions, newest first. */
  listByOwner(owner: string): Session[] {
    const ids = [...(this.byOwner.get(owner) ?? [])];
    return ids.flatMap((id) => this.sessions.get(id) ?? []).reverse();
  }
}

/** What a client sees of a session: the owner stays on the server. */
const view = ({ id, model, createdAt }: Session) => ({ id, model, created_at: createdAt });

/** The caller, on a route whose guard requires a key (scopes imply one): always there. */
function callerOf(req: Request): KeywardIdentity {
  if (!req.keyward) throw new Error('a route with scopes always has a verified caller');
  return req.keyward;
}

function notFound(res: Response, path: string): void {
  res
    .status(404)
    .type('application/problem+json')
    .send(JSON.stringify({ type: 'about:blank', title: 'Not found', status: 404, code: 'SESSION_NOT_FOUND', instance: path }));
}

export function buildApp(options: KeywardExpressOptions, store = new SessionStore()): { app: Express; close(): Promise<void> } {
  const keyward = keywardExpress(options);
  const app = express();
  app.use(express.json());
  app.use(keyward.authenticate());

  // Create: owned by the caller's key lineage (`ownerOf(identity, { by: 'user' })` to share with the user's other keys).
  app.post('/v1/sessions', keyward({ scopes: ['sessions:write'] }), (req, res) => {
    const model = typeof req.body?.model === 'string' ? req.body.model : 'default';
    res.status(201).json(view(store.create(ownerOf(callerOf(req)), model)));
  });

  // "My sessions": through the owner index.
  app.get('/v1/sessions', keyward({ scopes: ['sessions:read'] }), (req, res) => {
    res.json({ data: store.listByOwner(ownerOf(callerOf(req))).map(view) });
  });

  // One session: 404 for another owner's, so ids cannot be probed.
  app.get('/v1/sessions/:id', keyward({ scopes: ['sessions:read'] }), (req, res) => {
    const session = store.get(String(req.params.id), ownerOf(callerOf(req)));
    if (!session) return notFound(res, req.originalUrl);
    res.json(view(session));
  });

  return { app, close: () => keyward.close() };
}

export async function listen(
  options: KeywardExpressOptions,
  port = 0,
  store = new SessionStore(),
): Promise<{ url: string; store: SessionStore; close(): Promise<void> }> {
  const built = buildApp(options, store);
  const server = built.app.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    store,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
      await built.close();
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { url } = await listen(
    { baseUrl: process.env.KEYWARD_URL ?? 'http://127.0.0.1:8080', apiKey: process.env.KEYWARD_VERIFY_KEY ?? '' },
    Number(process.env.PORT ?? 3000),
  );
  process.stdout.write(`sessions API (Express) on ${url}\n`);
}
