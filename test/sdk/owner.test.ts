import { ownerOf } from '@keyward/sdk';
import { describe, expect, it } from 'vitest';

describe('ownerOf', () => {
  const keyId = '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90';
  const lineageId = '0197a4d2-0000-7b3a-9f4e-2d8c5b1a7e90';
  const userId = '0197a4d2-1111-7b3a-9f4e-2d8c5b1a7e90';

  it('owns by the key lineage by default: the same owner before and after a roll', () => {
    const before = { keyId: lineageId, lineageId, userId: null };
    const rolled = { keyId, lineageId, userId: null };
    expect(ownerOf(before)).toBe(lineageId);
    expect(ownerOf(rolled)).toBe(lineageId);
    expect(ownerOf(rolled, { by: 'key' })).toBe(lineageId);
  });

  it('falls back to the key id when the identity has no lineage id (an older Keyward)', () => {
    expect(ownerOf({ keyId })).toBe(keyId);
    expect(ownerOf({ keyId, lineageId: null, userId })).toBe(keyId);
  });

  it("owns by the user with by: 'user', whatever key of theirs calls", () => {
    expect(ownerOf({ keyId, lineageId, userId }, { by: 'user' })).toBe(userId);
    expect(ownerOf({ keyId: lineageId, userId }, { by: 'user' })).toBe(userId);
  });

  it("refuses by: 'user' for a key without a user, with a TypeError naming the key", () => {
    for (const identity of [{ keyId, userId: null }, { keyId }, { keyId, userId: '' }]) {
      expect(() => ownerOf(identity, { by: 'user' })).toThrow(TypeError);
      expect(() => ownerOf(identity, { by: 'user' })).toThrow(`key ${keyId} belongs to no user`);
    }
  });

  it('never returns an empty owner (which every such caller would share)', () => {
    expect(ownerOf({ keyId, lineageId: '' })).toBe(keyId);
    expect(() => ownerOf({ keyId: '' })).toThrow(TypeError);
    expect(() => ownerOf({ keyId: '', lineageId: '' })).toThrow(TypeError);
  });

  it('refuses an unknown `by` from untyped callers', () => {
    expect(() => ownerOf({ keyId }, { by: 'hash' as 'key' })).toThrow(TypeError);
  });
});
