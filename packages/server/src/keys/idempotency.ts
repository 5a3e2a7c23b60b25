import { createHash } from 'node:crypto';
import { actorOf, type Principal } from '../callers/principal.js';
import { type ErrorCode, err, type Failure } from '../errors.js';
import type { Executor } from '../store/schema.js';
import { findIdempotencyKey } from './idempotency.repository.js';

/** How long an `Idempotency-Key` answers for the key it created (as Stripe: 24 h). */
export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;

/** A create or roll sent with an `Idempotency-Key` header (validated at the edge: 1–255 printable ASCII). */
export interface IdempotentRequest {
  key: string;
  /** What was asked: a repeat must ask the same (compared by the SHA-256 of its canonical JSON). */
  request: { method: string; route: string; params: unknown; body: unknown };
}

/** Whose idempotency keys these are: one caller's never meet another's. */
export function idempotencyScope(principal: Principal): string {
  const actor = actorOf(principal);
  return `${actor.type}:${actor.id}`;
}

const sortKeys = (_key: string, value: unknown): unknown =>
  value !== null && typeof value === 'object' && !Array.isArray(value)
    ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    : value;

/** SHA-256 (hex) of the request as JSON with every object's keys sorted: the same request always hashes alike. */
export function requestHash(request: IdempotentRequest['request']): string {
  return createHash('sha256').update(JSON.stringify(request, sortKeys)).digest('hex');
}

/**
 * The answer to a request whose `Idempotency-Key` is already held: 409 naming the key created (its plaintext was
 * never kept, so it cannot be sent again), 422 when the key came with a different request, and 409 IN_USE in the
 * moment a row is replaced or pruned under the caller.
 */
export async function idempotencyConflict(db: Executor, scope: string, idempotent: IdempotentRequest, hash: string, now: number) {
  const held = await findIdempotencyKey(db, scope, idempotent.key);
  if (!held || held.createdAt < now - IDEMPOTENCY_TTL_MS) return null;
  if (held.requestHash !== hash) {
    return err('IDEMPOTENCY_KEY_MISMATCH', 'this Idempotency-Key was used with a different request (method, path or body)');
  }
  const reused: Failure = {
    ...err(
      'IDEMPOTENCY_KEY_REUSED',
      `this Idempotency-Key already created key ${held.keyId}; its plaintext is shown only once: roll that key if the answer was lost`,
    ),
    keyId: held.keyId,
  };
  return reused;
}

/** {@link idempotencyConflict} where the key is known to be held (a reservation lost): never null. */
export async function heldConflict(db: Executor, scope: string, idempotent: IdempotentRequest, hash: string, now: number) {
  const conflict = await idempotencyConflict(db, scope, idempotent, hash, now);
  const inUse: Failure<ErrorCode> = err('IDEMPOTENCY_KEY_IN_USE', 'a request with this Idempotency-Key is being processed; try again');
  return conflict ?? inUse;
}
