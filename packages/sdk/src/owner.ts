// Owning a host app's records by who called: seed 001's pattern (records stored with their owner and listed
// through an owner index), with an owner that outlives a key roll. See docs/owning-resources.md.

/**
 * The owner id to store on a record the caller creates, and to list "my records" by, from the identity the
 * middleware attached (`req.keyward`, `c.get('keyward')`, `request.keyward`).
 *
 * - `by: 'key'` (the default): the key's lineage id — the id of the first key of its roll lineage. Rolling a
 *   key issues a new key with a new id and a new hash, but the same lineage id, so the new key still owns what
 *   the old one made. Revoking or deleting the lineage's live key ends it: its records stay, owned by nobody
 *   who can call. A Keyward too old to send `lineage_id` gives the key's own id (then a roll changes the owner).
 * - `by: 'user'`: the user the key belongs to, so every key of that user (and their next one) owns the same
 *   records. Throws a `TypeError` for a key without a user (an admin or service key).
 *
 * Why not `hashApiKey(key)`, as seed 001 stores? That works, and it is what an app that only ever sees the key
 * (no middleware, no identity) can do: store `hashApiKey(key)`, never the key, and compare a stored hash with
 * `verifyApiKeyHash`. But the hash is derived from the secret, so it changes on every roll (the records are
 * orphaned) and it is credential material in your database and logs. The lineage id is neither: an opaque id,
 * stable across rolls, never derived from the secret.
 *
 * @example
 * import { ownerOf } from '@keyward/sdk';
 *
 * app.post('/v1/sessions', keyward({ scopes: ['sessions:write'] }), (req, res) => {
 *   if (!req.keyward) throw new Error('unreachable: a guard with scopes requires a key');
 *   res.status(201).json(sessions.create({ model: req.body.model, owner: ownerOf(req.keyward) }));
 * });
 * app.get('/v1/sessions', keyward({ scopes: ['sessions:read'] }), (req, res) => {
 *   res.json({ data: req.keyward ? sessions.listByOwner(ownerOf(req.keyward)) : [] });
 * });
 * // Shared by all of a user's keys instead (throws for a key without a user):
 * ownerOf({ keyId: 'k2', lineageId: 'k1', userId: 'u1' }, { by: 'user' }); // 'u1'
 * ownerOf({ keyId: 'k2', lineageId: 'k1', userId: 'u1' });                 // 'k1'
 */
export function ownerOf(
  identity: { keyId: string; lineageId?: string | null; userId?: string | null },
  options?: { by?: 'key' | 'user' },
): string {
  const by = options?.by ?? 'key';
  if (by === 'key') {
    // An empty id would make every such caller one owner: refused rather than returned.
    const owner = identity.lineageId || identity.keyId;
    if (typeof owner !== 'string' || owner === '') throw new TypeError('ownerOf: the identity has no key id');
    return owner;
  }
  if (by === 'user') {
    if (typeof identity.userId !== 'string' || identity.userId === '') {
      throw new TypeError(`ownerOf(identity, { by: 'user' }): key ${identity.keyId} belongs to no user (an admin or service key)`);
    }
    return identity.userId;
  }
  throw new TypeError(`ownerOf: \`by\` must be 'key' or 'user', not ${JSON.stringify(by)}`);
}
