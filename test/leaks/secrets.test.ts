import { generateKey } from '@keyward/sdk';
import { describe, expect, it } from 'vitest';
import { findSecretInFields, refuseSecretInFields } from '../../packages/server/src/secrets.js';

// Push protection's detector: which descriptive field of a key holds a valid Keyward key.

const key = generateKey();
const lookAlike = `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`;

describe('findSecretInFields', () => {
  it('names the field holding a key: name, description, or a path into metadata', () => {
    expect(findSecretInFields({ name: key })).toBe('name');
    expect(findSecretInFields({ name: 'ok', description: `staging key: ${key} (do not share)` })).toBe('description');
    expect(findSecretInFields({ metadata: { team: 'billing', env: { prod: { token: key } } } })).toBe('metadata.env.prod.token');
    expect(findSecretInFields({ metadata: { tokens: ['a', `Bearer ${key}`] } })).toBe('metadata.tokens.1');
    expect(findSecretInFields({ metadata: { a: 'x', b: [{ c: [[key]] }] } })).toBe('metadata.b.0.c.0.0');
  });

  it('answers the first field in order: name, then description, then metadata in document order', () => {
    expect(findSecretInFields({ name: key, description: key, metadata: { a: key } })).toBe('name');
    expect(findSecretInFields({ description: key, metadata: { a: key } })).toBe('description');
    expect(findSecretInFields({ metadata: { first: key, second: key } })).toBe('metadata.first');
  });

  it('never puts the key in the path: a key used as a property name names the object holding it', () => {
    expect(findSecretInFields({ metadata: { [key]: true } })).toBe('metadata');
    const path = findSecretInFields({ metadata: { nested: { [key]: 1 } } });
    expect(path).toBe('metadata.nested');
    expect(path).not.toContain(key);
  });

  it('finds nothing in look-alikes, other tokens, numbers or absent fields', () => {
    expect(findSecretInFields({})).toBeNull();
    expect(findSecretInFields({ name: null, description: null, metadata: {} })).toBeNull();
    expect(
      findSecretInFields({
        name: lookAlike,
        description:
          'ghp_1234567890abcdefghijklmnopqrstuvwxyz12 and a sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
        metadata: { n: 1, b: true, z: null, s: lookAlike, list: [lookAlike, 3], [lookAlike]: 'x' },
      }),
    ).toBeNull();
  });

  it('walks deep metadata without recursion', () => {
    let deep: unknown = key;
    for (let i = 0; i < 20_000; i++) deep = [deep];
    const path = findSecretInFields({ metadata: { deep } });
    expect(path?.startsWith('metadata.deep.0.0')).toBe(true);
    expect(path?.split('.')).toHaveLength(20_002);
  });

  it('answers SECRET_IN_FIELD naming the field below the body, never the key, or null', () => {
    const refused = refuseSecretInFields({ name: 'ok', metadata: { deploy: { token: key } } });
    expect(refused).toMatchObject({ ok: false, code: 'SECRET_IN_FIELD', errors: [{ field: 'body.metadata.deploy.token' }] });
    expect(refused?.detail).toMatch(/^body\.metadata\.deploy\.token: /);
    expect(JSON.stringify(refused)).not.toContain(key);
    expect(refuseSecretInFields({ name: 'ok', description: lookAlike, metadata: {} })).toBeNull();
  });
});
