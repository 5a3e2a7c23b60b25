import { displayPrefix, generateKey, hashApiKey, isValidPrefix } from '@keyward/sdk';
import { v7 as uuidv7 } from 'uuid';
import { type AuditedFields, audit, diff, facts } from '../audit/audit.js';
import { type Caller, hasScopes, isAdmin, keyReach, type Principal } from '../callers/principal.js';
import { type Config, type TierSetting, tierSettingOf } from '../config.js';
import { type ApiKey, INSTANT_RANGE, isBoundedInstant, isoOrNull, type Quota, type QuotaInput, type RateLimit } from '../domain.js';
import { err, type Failure, ok, type Result } from '../errors.js';
import { actorData, keySummary } from '../events/catalogue.js';
import { emitEvent } from '../events/outbox.js';
import { MAX_KEY_SEARCH_LENGTH } from '../input-bounds.js';
import { decodeCursor, encodeCursor, type Page } from '../pagination.js';
import { refuseSecretInFields } from '../secrets.js';
import type { Db } from '../store/database.js';
import type { Executor } from '../store/schema.js';
import { findUserById, findUserForUpdate } from '../users/repository.js';
import {
  heldConflict,
  IDEMPOTENCY_TTL_MS,
  type IdempotentRequest,
  idempotencyConflict,
  idempotencyScope,
  requestHash,
} from './idempotency.js';
import { pruneIdempotencyKeys, reserveIdempotencyKey } from './idempotency.repository.js';
import {
  countKeysOfUser,
  countUsableAdminKeys,
  deleteKey,
  findKeyByHash,
  findKeyById,
  findKeyForUpdate,
  findLiveReplacement,
  insertKey,
  isUniqueViolation,
  listKeys,
  lockBootstrap,
  pointBudgetAt,
  updateKey,
} from './repository.js';

export interface CreateKeyInput {
  /** Default: `Key ` and the display prefix, e.g. `Key kw_3xYkAb12`. */
  name?: string;
  description?: string | null;
  isAdmin?: boolean;
  scopes?: string[];
  expiresAt?: number | null;
  metadata?: Record<string, unknown>;
  userId?: string | null;
  prefix?: string;
  rateLimit?: RateLimit | null;
  quota?: QuotaInput | null;
}

export interface UpdateKeyInput {
  name?: string;
  description?: string | null;
  scopes?: string[];
  metadata?: Record<string, unknown>;
  expiresAt?: number | null;
  rateLimit?: RateLimit | null;
  quota?: QuotaInput | null;
}

export interface ListKeysInput {
  includeInactive?: boolean;
  userId?: string;
  limit?: number;
  cursor?: string;
  /** Name or display prefix containing this (any case), or the exact id: 1–200 characters. */
  q?: string;
}

/** A key just created or rolled: the plaintext, which is returned exactly once and never stored. */
export interface IssuedKey {
  key: string;
  record: ApiKey;
}

export interface KeyServiceDeps {
  db: Db;
  config: Pick<Config, 'keyPrefix' | 'tiers' | 'defaultTier' | 'maxKeysPerUser'>;
  /** Called after every committed change to a key (cache invalidation, cross-instance notification). */
  onKeyChanged?: (key: Pick<ApiKey, 'keyHash'>) => void;
  now?: () => number;
}

export type KeyService = ReturnType<typeof createKeyService>;

/** `plaintext`, `action` and `note` are for the operator only (bootstrap with `INITIAL_ADMIN_KEY`): HTTP never sets them. */
export interface CreateOptions {
  plaintext?: string;
  action?: 'key.create' | 'admin.bootstrap';
  note?: Record<string, unknown>;
  /** Makes a retry safe: see {@link IdempotentRequest}. */
  idempotency?: IdempotentRequest;
}

/** A create or roll: the key issued, or why not (naming a key where there is one to name). */
export type IssueResult = { ok: true; value: IssuedKey } | Failure;

// A key's fields as audit `changes` show them: as the API names and shows them (snake_case, ISO times).
const SHOWN = {
  name: ['name'],
  description: ['description'],
  keyPrefix: ['key_prefix'],
  isAdmin: ['is_admin'],
  userId: ['user_id'],
  scopes: ['scopes'],
  metadata: ['metadata'],
  expiresAt: ['expires_at', isoOrNull],
  rateLimit: ['rate_limit', (r: RateLimit | null) => r && { limit: r.limit, window_seconds: r.windowSeconds }],
  quota: ['quota', (q: Quota | null) => q && { remaining: q.remaining, refill: q.refill, last_refill_at: isoOrNull(q.lastRefillAt) }],
  isActive: ['is_active'],
  revokedAt: ['revoked_at', isoOrNull],
} as const satisfies AuditedFields<ApiKey>;

const pick = <F extends keyof typeof SHOWN>(...fields: F[]): AuditedFields<ApiKey> =>
  Object.fromEntries(fields.map((field) => [field, SHOWN[field]]));

/** What a change of state may touch, as audited. */
const AUDITED_CHANGES = pick('name', 'description', 'scopes', 'metadata', 'expiresAt', 'rateLimit', 'quota', 'isActive', 'revokedAt');
/** The event each change of state sends (webhooks). */
const KEY_EVENTS = {
  'key.update': 'key.updated',
  'key.deactivate': 'key.deactivated',
  'key.activate': 'key.activated',
  'key.revoke': 'key.revoked',
} as const;

/** What a new key's audit entry records. */
const AUDITED_ON_CREATE = pick('name', 'keyPrefix', 'isAdmin', 'scopes', 'userId', 'expiresAt');

// A user (or a user's own key) must not set, lift or clear the limits the operator's tiers impose.
const LIMITS_ARE_THE_OPERATORS = 'only an admin or a service key may set the rate limit or quota of a user’s key';

/**
 * A non-admin key must not escape its own limits (README "Rights"), so:
 * - it may not change its own rate limit or quota, nor give any key (itself included) an expiry later than
 *   its own, or none, when it has one;
 * - when it has a rate limit or a quota, it may not set or change any key's, create keys, or roll any key
 *   but itself: every new credential would add its own budget, so "at least as strict" is not enough.
 * Admins and the operator are not limited; users (JWT) are covered by LIMITS_ARE_THE_OPERATORS.
 */
function limitedKey(principal: Principal): ApiKey | null {
  return principal.kind === 'key' && !principal.key.isAdmin ? principal.key : null;
}

const isLimited = (key: ApiKey): boolean => key.rateLimit !== null || key.quota !== null;

function laterExpiry(self: ApiKey, expiresAt: number | null): Failure<'FORBIDDEN'> | null {
  if (self.expiresAt === null || (expiresAt !== null && expiresAt <= self.expiresAt)) return null;
  return err('FORBIDDEN', 'a key may not give a key a later expiry than its own (or none)');
}

/** How often idempotency keys older than {@link IDEMPOTENCY_TTL_MS} are deleted (an expired one is replaced anyway). */
const PRUNE_EVERY_MS = 60 * 60 * 1000;

// Thrown to roll a transaction back: the outcome it carries is returned instead.
const ROLLBACK = new Error('rolled back');

/** Tries of a roll whose lineage's budget moved (another roll of it committed) before `KEY_IS_CHANGING`. */
const MAX_ROLL_ATTEMPTS = 5;

const KEY_IS_LIMITED = 'a key with a rate limit or quota may not create keys, roll other keys or change limits';

function invalid(field: string, message: string): Failure<'INVALID_REQUEST'> {
  return err('INVALID_REQUEST', `${field}: ${message}`, [{ field, message }]);
}

/** Scopes a user may give their own keys: the tier's list, or anything outside `keyward:` plus keys:read|write. */
export function tierAllowsScopes(tier: TierSetting | undefined, scopes: readonly string[]): boolean {
  if (tier?.scopes) return hasScopes(tier.scopes, scopes);
  // `*` is refused too: it would cover `keyward:verify` and every other management scope.
  return scopes.every((s) => s !== '*' && (!s.startsWith('keyward:') || s === 'keyward:keys:read' || s === 'keyward:keys:write'));
}

function toQuota(input: QuotaInput | null | undefined, now: number): Quota | null | undefined {
  if (input === undefined || input === null) return input;
  return { remaining: input.remaining, refill: input.refill ?? null, lastRefillAt: input.refill ? now : null };
}

export function createKeyService({ db: { db, dialect }, config, onKeyChanged = () => {}, now = Date.now }: KeyServiceDeps) {
  /**
   * Runs `work` in a transaction that commits only when `keep` says so, and is rolled back otherwise: a refused
   * create or roll leaves nothing behind, not even its idempotency key (a failed request does not consume it).
   */
  async function transact<T>(keep: (outcome: T) => boolean, work: (trx: Executor) => Promise<T>): Promise<T> {
    const refused: { outcome: T }[] = [];
    try {
      return await db.transaction().execute(async (trx) => {
        const outcome = await work(trx);
        if (keep(outcome)) return outcome;
        refused.push({ outcome });
        throw ROLLBACK;
      });
    } catch (error) {
      const first = refused[0];
      if (error === ROLLBACK && first) return first.outcome;
      throw error;
    }
  }

  /** Records the caller's idempotency key in `trx`, or answers why it cannot be: taken first, before any lock. */
  async function reserve(
    trx: Executor,
    caller: Caller,
    idempotency: IdempotentRequest,
    keyId: string,
    at: number,
  ): Promise<Failure | null> {
    const scope = idempotencyScope(caller.principal);
    const hash = requestHash(idempotency.request);
    const record = { caller: scope, idempotencyKey: idempotency.key, requestHash: hash, keyId, createdAt: at };
    if (await reserveIdempotencyKey(trx, record, at - IDEMPOTENCY_TTL_MS)) return null;
    return heldConflict(trx, scope, idempotency, hash, at);
  }

  /** A repeat answered before any other check, so that it gets the same answer however the keys have changed since. */
  async function repeated(caller: Caller, idempotency: IdempotentRequest | undefined): Promise<Failure | null> {
    if (idempotency === undefined) return null;
    const scope = idempotencyScope(caller.principal);
    return idempotencyConflict(db, scope, idempotency, requestHash(idempotency.request), now());
  }

  /** The refusal to roll a key rolled already: it names the live replacement, the key to roll instead. */
  async function wasRolled(key: ApiKey): Promise<Failure> {
    const replacement = await findLiveReplacement(db, key, now());
    if (!replacement) return err('KEY_WAS_ROLLED', 'this key was rolled already, and its replacement is no longer live');
    return { ...err('KEY_WAS_ROLLED', `this key was rolled already: roll its replacement, ${replacement.id}`), keyId: replacement.id };
  }

  let nextPrune = 0;
  /** Now and then, after a commit, deletes expired idempotency keys. */
  async function pruneNowAndThen(at: number): Promise<void> {
    if (at < nextPrune) return;
    nextPrune = at + PRUNE_EVERY_MS;
    try {
      await pruneIdempotencyKeys(db, at - IDEMPOTENCY_TTL_MS);
    } catch {
      // The key is created and must be answered: a failed prune is retried at the next one (expired rows are
      // replaced when their idempotency key comes again, so they never refuse anything meanwhile).
      nextPrune = 0;
    }
  }

  function checkExpiry(expiresAt: number | null | undefined): Failure<'INVALID_REQUEST'> | null {
    // NaN (a leap second Date.parse cannot read) or an instant the API could not show must not reach the database.
    if (expiresAt !== undefined && expiresAt !== null && !isBoundedInstant(expiresAt)) {
      return invalid('body.expires_at', `must be an instant between ${INSTANT_RANGE}`);
    }
    if (expiresAt !== undefined && expiresAt !== null && expiresAt <= now()) {
      return invalid('body.expires_at', 'must be in the future');
    }
    return null;
  }

  /** No escalation: a non-admin key may grant only scopes it holds itself; a user only what the tier allows. */
  function checkGrant(principal: Principal, scopes: readonly string[], tierName: string | null): Failure | null {
    if (isAdmin(principal)) return null;
    if (principal.kind === 'key' && !hasScopes(principal.key.scopes, scopes)) {
      return err('FORBIDDEN', 'a key may grant only scopes it holds itself');
    }
    if (tierName !== null && !tierAllowsScopes(tierOf(tierName), scopes)) {
      return invalid('body.scopes', `holds a scope the ${tierName} tier does not allow`);
    }
    return null;
  }

  // A tier no longer in TIERS falls back to the default tier, never to "unlimited".
  const tierOf = (tierName: string): TierSetting | undefined => tierSettingOf(config, tierName);

  function tierLimit(tierName: string): number | null {
    const tierMax = tierOf(tierName)?.maxKeys ?? null;
    const cap = config.maxKeysPerUser;
    if (cap === null) return tierMax;
    return tierMax === null ? cap : Math.min(tierMax, cap);
  }

  async function loadReachable(caller: Caller, id: string, mode: 'read' | 'write'): Promise<Result<ApiKey>> {
    const reach = keyReach(caller.principal, mode);
    if (reach === null) return err('FORBIDDEN', 'this credential may not manage keys');
    const key = await findKeyById(db, id);
    if (!key) return err('KEY_NOT_FOUND');
    // SPEC §5: another user's key is 403 for a user-scoped caller (ids are random UUIDs, so this leaks little).
    if (!reach.all && key.userId !== reach.userId) return err('FORBIDDEN', 'this key belongs to another user');
    if (mode === 'write' && key.isAdmin && !isAdmin(caller.principal)) {
      return err('FORBIDDEN', 'only an admin may change an admin key');
    }
    return ok(key);
  }

  async function change(
    caller: Caller,
    id: string,
    action: 'key.update' | 'key.deactivate' | 'key.activate' | 'key.revoke',
    decide: (key: ApiKey, trx: Executor) => Result<Partial<ApiKey> | null> | Promise<Result<Partial<ApiKey> | null>>,
  ): Promise<Result<ApiKey>> {
    const loaded = await loadReachable(caller, id, 'write');
    if (!loaded.ok) return loaded;
    const outcome = await db.transaction().execute(async (trx): Promise<Result<ApiKey>> => {
      // Re-read inside the transaction so the decision sees the committed state.
      const current = await findKeyById(trx, id);
      if (!current) return err('KEY_NOT_FOUND');
      const decided = await decide(current, trx);
      if (!decided.ok) return decided;
      if (decided.value === null) return ok(current);
      const at = now();
      const updated = await updateKey(trx, id, { ...decided.value, updatedAt: at });
      if (!updated) return err('KEY_NOT_FOUND');
      const changes = diff(current, decided.value, AUDITED_CHANGES);
      await audit(trx, caller, action, { type: 'api_key', id }, changes, at);
      const event = { key: keySummary(updated), actor: actorData(caller), ...(action === 'key.update' ? { changes } : {}) };
      await emitEvent(trx, KEY_EVENTS[action], event, at);
      return ok(updated);
    });
    if (outcome.ok) onKeyChanged(outcome.value);
    return outcome;
  }

  /**
   * Whether a caller other than an admin may give `current` the expiry `expiresAt`, when that makes it live longer.
   * A key that was rolled is not given a longer life: its replacement is the live key (a leaked key rolled away
   * could otherwise extend itself). A user's expired key brought back counts again, so it must fit the tier's key
   * limit (the user's row is locked, as when creating a key).
   */
  async function refuseLongerLife(trx: Executor, current: ApiKey, expiresAt: number | null): Promise<Failure | null> {
    const at = now();
    const until = current.expiresAt ?? Number.POSITIVE_INFINITY;
    if ((expiresAt ?? Number.POSITIVE_INFINITY) <= until) return null;
    if (current.rolledAt !== null) {
      return err('KEY_WAS_ROLLED', 'this key was rolled: its replacement is the live key (an admin may still extend it)');
    }
    if (current.userId === null || until > at) return null;
    const user = await findUserForUpdate(trx, current.userId, dialect);
    const limit = user ? tierLimit(user.tier) : null;
    if (user && limit !== null && (await countKeysOfUser(trx, user.id, at)) >= limit) {
      return err('KEY_LIMIT_REACHED', `the ${user.tier} tier allows ${limit} keys; this expired key would count again`);
    }
    return null;
  }

  /**
   * Creates a key (see `create`) in `inTransaction`, or in a transaction of its own when null. Does not call
   * `onKeyChanged`: the caller does, once the transaction has committed.
   */
  async function issue(
    caller: Caller,
    input: CreateKeyInput,
    options: CreateOptions,
    inTransaction: Executor | null,
  ): Promise<IssueResult> {
    const { idempotency } = options;
    const repeat = await repeated(caller, idempotency);
    if (repeat) return repeat;
    const { principal } = caller;
    const reach = keyReach(principal, 'write');
    if (reach === null) return err('FORBIDDEN', 'this credential may not create keys');
    const wantsAdmin = input.isAdmin ?? false;
    if (wantsAdmin && !isAdmin(principal)) return err('FORBIDDEN', 'only an admin may create an admin key');
    let userId = input.userId ?? null;
    if (!reach.all) {
      if (userId !== null && userId !== reach.userId) return err('FORBIDDEN', 'may create keys only for its own user');
      userId = reach.userId;
      if (input.rateLimit != null || input.quota != null) return err('FORBIDDEN', LIMITS_ARE_THE_OPERATORS);
    }
    const self = limitedKey(principal);
    if (self && isLimited(self)) return err('FORBIDDEN', KEY_IS_LIMITED);
    const later = self && laterExpiry(self, input.expiresAt ?? null);
    if (later) return later;
    if (wantsAdmin && userId !== null) return invalid('body.is_admin', 'an admin key cannot belong to a user');
    // Push protection: a key pasted into a descriptive field would be stored in plaintext.
    const secret = refuseSecretInFields(input);
    if (secret) return secret;
    const expiry = checkExpiry(input.expiresAt);
    if (expiry) return expiry;
    const scopes = [...new Set(input.scopes ?? [])];

    const key = options.plaintext ?? generateKey(input.prefix ?? config.keyPrefix);
    const keyPrefix = displayPrefix(key);
    const at = now();
    const id = uuidv7();
    const record: ApiKey = {
      id,
      name: input.name ?? `Key ${keyPrefix}`,
      description: input.description ?? null,
      keyHash: hashApiKey(key),
      keyPrefix,
      hashScheme: 'sha256',
      userId,
      isAdmin: wantsAdmin,
      scopes,
      metadata: input.metadata ?? {},
      isActive: true,
      createdAt: at,
      createdBy: principal.kind === 'system' ? principal.name : principal.kind === 'key' ? principal.key.id : principal.user.id,
      updatedAt: at,
      lastUsedAt: null,
      expiresAt: input.expiresAt ?? null,
      revokedAt: null,
      rolledFrom: null,
      lineageId: id,
      budgetKeyId: null,
      rolledAt: null,
      rateLimit: input.rateLimit ?? null,
      quota: toQuota(input.quota, at) ?? null,
    };

    const run = async (trx: Executor): Promise<IssueResult> => {
      // First, before the user's row is locked: of concurrent repeats one holds it, the others wait for it.
      const taken = idempotency && (await reserve(trx, caller, idempotency, record.id, at));
      if (taken) return taken;
      let tierName: string | null = null;
      if (userId !== null) {
        // Locks the user row (PostgreSQL) so the count below and the insert are one decision.
        const user = await findUserForUpdate(trx, userId, dialect);
        if (!user) return invalid('body.user_id', 'no such user');
        // Admins and the operator may give a user's key any scope; the user and their keys only the tier's.
        tierName = isAdmin(principal) ? null : user.tier;
        const limit = tierLimit(user.tier);
        if (limit !== null && (await countKeysOfUser(trx, userId, at)) >= limit) {
          return err('KEY_LIMIT_REACHED', `the ${user.tier} tier allows ${limit} keys`);
        }
      }
      const denied = checkGrant(principal, scopes, tierName);
      if (denied) return denied;
      await insertKey(trx, record);
      await audit(
        trx,
        caller,
        options.action ?? 'key.create',
        { type: 'api_key', id: record.id },
        { ...options.note, ...facts(record, AUDITED_ON_CREATE) },
        at,
      );
      await emitEvent(trx, 'key.created', { key: keySummary(record), actor: actorData(caller) }, at);
      return ok({ key, record });
    };
    if (inTransaction !== null) return run(inTransaction);
    const outcome = await transact((o) => o.ok, run);
    if (outcome.ok && idempotency) await pruneNowAndThen(at);
    return outcome;
  }

  return {
    /** Tells the key-change hook about keys changed outside this service (e.g. removed with their user). */
    announceChanged(changed: readonly Pick<ApiKey, 'keyHash'>[]): void {
      for (const key of changed) onKeyChanged(key);
    },

    /**
     * Creates a key and returns its plaintext once. Enforces grants, tier scopes and the tier key limit.
     * With `options.idempotency`, a repeat within 24 h creates nothing: `IDEMPOTENCY_KEY_REUSED` names the key
     * created (`IDEMPOTENCY_KEY_MISMATCH` for another request); the record is written in the key's transaction, so
     * of concurrent repeats exactly one creates a key. The other options are for the operator only.
     */
    async create(caller: Caller, input: CreateKeyInput, options: CreateOptions = {}): Promise<IssueResult> {
      const outcome = await issue(caller, input, options, null);
      if (outcome.ok) onKeyChanged(outcome.value.record);
      return outcome;
    },

    /**
     * On a database with no usable admin key, creates one: from `initialKey` (stored hashed) or generated.
     * Returns the generated plaintext so the caller can print it once; `null` when nothing was created.
     * Instances starting together are serialized by a lock held across the check and the insert.
     */
    async bootstrap(initialKey: string | null): Promise<{ generated: string | null; record: ApiKey } | null> {
      const caller: Caller = { principal: { kind: 'system', name: 'bootstrap' }, ip: null };
      let created: IssueResult | null;
      try {
        created = await db.transaction().execute(async (trx): Promise<IssueResult | null> => {
          await lockBootstrap(trx, dialect);
          if ((await countUsableAdminKeys(trx, now())) > 0) return null;
          // A configured key that exists but was deactivated or revoked is not brought back to life.
          if (initialKey !== null && (await findKeyByHash(trx, hashApiKey(initialKey)))) return null;
          // One audit row, `admin.bootstrap`, written in the same transaction as the key.
          return issue(
            caller,
            { name: 'Initial admin key', isAdmin: true },
            {
              ...(initialKey === null ? {} : { plaintext: initialKey }),
              action: 'admin.bootstrap',
              note: { source: initialKey ? 'INITIAL_ADMIN_KEY' : 'generated' },
            },
            trx,
          );
        });
      } catch (error) {
        // Another instance stored the same INITIAL_ADMIN_KEY first (a database without the lock): bootstrapped.
        if (initialKey !== null && isUniqueViolation(error)) return null;
        throw error;
      }
      if (created === null) return null;
      if (!created.ok) throw new Error(`bootstrap failed: ${created.code}`);
      onKeyChanged(created.value.record);
      return { generated: initialKey === null ? created.value.key : null, record: created.value.record };
    },

    async list(caller: Caller, input: ListKeysInput): Promise<Result<Page<ApiKey>>> {
      const reach = keyReach(caller.principal, 'read');
      if (reach === null) return err('FORBIDDEN', 'this credential may not list keys');
      if (!reach.all && input.userId !== undefined && input.userId !== reach.userId) {
        return err('FORBIDDEN', 'may list only its own user’s keys');
      }
      const before = input.cursor === undefined ? undefined : decodeCursor(input.cursor);
      if (before === null) return invalid('querystring.cursor', 'is not a cursor from a previous page');
      // The HTTP schema checks this too; the CLI reaches the service without it.
      if (input.q !== undefined && (input.q.length === 0 || input.q.length > MAX_KEY_SEARCH_LENGTH)) {
        return invalid('querystring.q', `must be 1 to ${MAX_KEY_SEARCH_LENGTH} characters`);
      }
      const limit = input.limit ?? 20;
      const rows = await listKeys(db, {
        includeInactive: input.includeInactive ?? false,
        userId: reach.all ? input.userId : reach.userId,
        limit,
        before,
        search: input.q,
      });
      const items = rows.slice(0, limit);
      const last = items.at(-1);
      return ok({ items, nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null });
    },

    async get(caller: Caller, id: string): Promise<Result<ApiKey>> {
      return loadReachable(caller, id, 'read');
    },

    async update(caller: Caller, id: string, input: UpdateKeyInput): Promise<Result<ApiKey>> {
      const secret = refuseSecretInFields(input);
      if (secret) return secret;
      const expiry = checkExpiry(input.expiresAt);
      if (expiry) return expiry;
      const touchesLimits = input.rateLimit !== undefined || input.quota !== undefined;
      if (touchesLimits && keyReach(caller.principal, 'write')?.all === false) {
        return err('FORBIDDEN', LIMITS_ARE_THE_OPERATORS);
      }
      const self = limitedKey(caller.principal);
      if (self && touchesLimits && (self.id === id || isLimited(self))) {
        return err('FORBIDDEN', self.id === id ? 'a key may not change its own rate limit or quota' : KEY_IS_LIMITED);
      }
      const later = self && input.expiresAt !== undefined && laterExpiry(self, input.expiresAt);
      if (later) return later;
      if (input.scopes !== undefined) {
        const loaded = await loadReachable(caller, id, 'write');
        if (!loaded.ok) return loaded;
        const tierName = loaded.value.userId === null || isAdmin(caller.principal) ? null : await userTier(db, loaded.value.userId);
        const denied = checkGrant(caller.principal, input.scopes, tierName);
        if (denied) return denied;
      }
      return change(caller, id, 'key.update', async (current, trx) => {
        if (current.revokedAt !== null) return err('KEY_IS_REVOKED');
        if (input.expiresAt !== undefined && !isAdmin(caller.principal)) {
          const refused = await refuseLongerLife(trx, current, input.expiresAt);
          if (refused) return refused;
        }
        const changes: Partial<ApiKey> = {};
        if (input.name !== undefined) changes.name = input.name;
        if (input.description !== undefined) changes.description = input.description;
        if (input.scopes !== undefined) changes.scopes = [...new Set(input.scopes)];
        if (input.metadata !== undefined) changes.metadata = input.metadata;
        if (input.expiresAt !== undefined) changes.expiresAt = input.expiresAt;
        if (input.rateLimit !== undefined) changes.rateLimit = input.rateLimit;
        const quota = toQuota(input.quota, now());
        if (quota !== undefined) changes.quota = quota;
        return ok(changes);
      });
    },

    async deactivate(caller: Caller, id: string): Promise<Result<ApiKey>> {
      return change(caller, id, 'key.deactivate', (k) => {
        if (k.revokedAt !== null) return err('KEY_IS_REVOKED');
        return ok(k.isActive ? { isActive: false } : null);
      });
    },

    /** Re-enables a deactivated key. A revoked key can never be activated. */
    async activate(caller: Caller, id: string): Promise<Result<ApiKey>> {
      return change(caller, id, 'key.activate', (k) => {
        if (k.revokedAt !== null) return err('KEY_IS_REVOKED');
        return ok(k.isActive ? null : { isActive: true });
      });
    },

    /** Permanently revokes a key. Revoking a revoked key changes nothing. */
    async revoke(caller: Caller, id: string): Promise<Result<ApiKey>> {
      return change(caller, id, 'key.revoke', (k) => ok(k.revokedAt !== null ? null : { isActive: false, revokedAt: now() }));
    },

    /**
     * Replaces a key's secret: a new key with the same name, description, owner, admin flag, scopes,
     * metadata, rate limit, quota, state and expiry (`rolled_from` = the old id), returned once. The old key
     * keeps working for `gracePeriodSeconds`, never longer than it already would. One transaction, audited.
     * The quota moves to the new key, and during its grace the old key spends it and counts against the new
     * key's rate limit (`budgetKeyId`), so it keeps working and a roll never adds budget;
     * for a user's caller a roll with grace holds two live keys, so it must fit the tier's key limit.
     * A key already rolled is not rolled again (`KEY_WAS_ROLLED`, naming its live replacement): the new key would
     * inherit its expiry, the end of its grace period, and die with it.
     */
    async roll(
      caller: Caller,
      id: string,
      input: { gracePeriodSeconds?: number },
      options: { idempotency?: IdempotentRequest } = {},
    ): Promise<IssueResult> {
      const { idempotency } = options;
      const repeat = await repeated(caller, idempotency);
      if (repeat) return repeat;
      const loaded = await loadReachable(caller, id, 'write');
      if (!loaded.ok) return loaded;
      const { principal } = caller;
      // A roll issues a new credential with the old one's scopes: a key may do that only for scopes it holds.
      const denied = checkGrant(principal, loaded.value.scopes, null);
      if (denied) return denied;
      const self = limitedKey(principal);
      if (self && isLimited(self) && self.id !== id) return err('FORBIDDEN', KEY_IS_LIMITED);
      const later = self && laterExpiry(self, loaded.value.expiresAt);
      if (later) return later;
      const grace = input.gracePeriodSeconds ?? 0;
      const ownerId = loaded.value.userId;
      const newId = uuidv7();
      type Rolled = { ok: true; value: { issued: IssuedKey; old: ApiKey; repointed: ApiKey[] } } | Failure;
      type Retry = { budgetMoved: string | null } | { wasRolled: ApiKey };
      const issuedOk = (o: Rolled | Retry) => 'ok' in o && o.ok;
      const attempt = (budget: string | null) =>
        transact(issuedOk, async (trx): Promise<Rolled | Retry> => {
          const taken = idempotency && (await reserve(trx, caller, idempotency, newId, now()));
          if (taken) return taken;
          // Lock order as in `create`: the user row (the count below and the insert are one decision), then the
          // budget the key spends, then the key. A roll of that budget's owner re-points the keys spending it; holding
          // the owner's row first makes it wait for the key this roll adds (which inherits the pointer), or this roll
          // wait for it and see the pointer it moved. Without, the new key could be left spending a replaced key.
          const owner = ownerId !== null && !isAdmin(principal) ? await findUserForUpdate(trx, ownerId, dialect) : undefined;
          if (budget !== null) await findKeyForUpdate(trx, budget, dialect);
          // Locked so that a concurrent verification cannot spend quota the new key has already been given.
          const current = await findKeyForUpdate(trx, id, dialect);
          if (!current) return err('KEY_NOT_FOUND');
          if (current.budgetKeyId !== budget) return { budgetMoved: current.budgetKeyId };
          if (current.revokedAt !== null) return err('KEY_IS_REVOKED');
          const at = now();
          if (current.expiresAt !== null && current.expiresAt <= at) return err('KEY_IS_EXPIRED');
          if (current.rolledAt !== null) return { wasRolled: current };
          const expiresAt = Math.min(current.expiresAt ?? Number.POSITIVE_INFINITY, at + grace * 1000);
          // With grace 0 the roll replaces the key and is always allowed; with grace both keys are live for a while.
          if (owner && expiresAt > at) {
            const limit = tierLimit(owner.tier);
            if (limit !== null && (await countKeysOfUser(trx, owner.id, at)) >= limit) {
              return err('KEY_LIMIT_REACHED', `the ${owner.tier} tier allows ${limit} keys; roll with grace_period_seconds 0`);
            }
          }
          const key = generateKey(rollPrefix(current.keyPrefix, config.keyPrefix));
          const record: ApiKey = {
            ...current,
            id: newId,
            keyHash: hashApiKey(key),
            keyPrefix: displayPrefix(key),
            hashScheme: 'sha256',
            createdAt: at,
            createdBy: actorId(principal),
            updatedAt: at,
            lastUsedAt: null,
            rolledFrom: current.id,
            // The lineage stays: resources owned by the old key's lineage belong to the new key.
            lineageId: current.lineageId,
            rolledAt: null,
          };
          await insertKey(trx, record);
          // One budget per lineage: during its grace the old key counts against the new key's rate limit and
          // spends its quota (the old one keeps a quota of 0 as the sign that it spends one), so a roll never
          // adds budget and the old key keeps working. Keys still in grace from earlier rolls follow. A key that
          // already spends another's budget (itself in grace) passes that on: pointers always lead to the owner.
          const spent: Quota | null = current.quota && { remaining: 0, refill: null, lastRefillAt: null };
          const old = (await updateKey(trx, id, { expiresAt, quota: spent, rolledAt: current.rolledAt ?? at, updatedAt: at })) ?? current;
          // Only with a grace period: a key replaced at once has no budget left to spend.
          const repointed = current.budgetKeyId === null && expiresAt > at ? await pointBudgetAt(trx, id, record.id, at) : [];
          await audit(
            trx,
            caller,
            'key.roll',
            { type: 'api_key', id },
            {
              new_key_id: record.id,
              new_key_prefix: record.keyPrefix,
              grace_period_seconds: grace,
              ...diff(current, { expiresAt, quota: spent }, pick('expiresAt', 'quota')),
            },
            at,
          );
          await audit(trx, caller, 'key.create', { type: 'api_key', id: record.id }, { rolled_from: id, key_prefix: record.keyPrefix }, at);
          const actor = actorData(caller);
          await emitEvent(trx, 'key.rolled', { key: keySummary(old), new_key: keySummary(record), grace_period_seconds: grace, actor }, at);
          await emitEvent(trx, 'key.created', { key: keySummary(record), actor, rolled_from: id }, at);
          return ok({ issued: { key, record }, old, repointed });
        });
      // The budget read before locking may have moved (a concurrent roll of its owner): lock the one it moved to.
      let outcome = await attempt(loaded.value.budgetKeyId);
      for (let tries = 1; 'budgetMoved' in outcome; tries++) {
        if (tries === MAX_ROLL_ATTEMPTS) return err('KEY_IS_CHANGING');
        outcome = await attempt(outcome.budgetMoved);
      }
      if ('wasRolled' in outcome) return wasRolled(outcome.wasRolled);
      if (!outcome.ok) return outcome;
      onKeyChanged(outcome.value.old);
      for (const key of outcome.value.repointed) if (key.id !== id) onKeyChanged(key);
      onKeyChanged(outcome.value.issued.record);
      if (idempotency) await pruneNowAndThen(outcome.value.issued.record.createdAt);
      return ok(outcome.value.issued);
    },

    async remove(caller: Caller, id: string): Promise<Result<ApiKey>> {
      const loaded = await loadReachable(caller, id, 'write');
      if (!loaded.ok) return loaded;
      const key = loaded.value;
      const removed = await db.transaction().execute(async (trx) => {
        if (!(await deleteKey(trx, id))) return false;
        const at = now();
        await audit(trx, caller, 'key.delete', { type: 'api_key', id }, { name: key.name, key_prefix: key.keyPrefix }, at);
        await emitEvent(trx, 'key.deleted', { key: keySummary(key), actor: actorData(caller) }, at);
        return true;
      });
      if (!removed) return err('KEY_NOT_FOUND');
      onKeyChanged(key);
      return ok(key);
    },
  };
}

/** The prefix of a rolled key: the old key's (`sk_live` from `sk_live_AbCd1234`), or the default for imported keys. */
function rollPrefix(displayed: string, fallback: string): string {
  const cut = displayed.length - 9;
  const prefix = displayed.slice(0, cut);
  return cut > 0 && displayed[cut] === '_' && isValidPrefix(prefix) ? prefix : fallback;
}

function actorId(principal: Principal): string {
  return principal.kind === 'system' ? principal.name : principal.kind === 'key' ? principal.key.id : principal.user.id;
}

async function userTier(db: Executor, userId: string): Promise<string | null> {
  return (await findUserById(db, userId))?.tier ?? null;
}
