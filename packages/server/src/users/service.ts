import { v7 as uuidv7 } from 'uuid';
import { audit, diff } from '../audit/audit.js';
import { type Caller, isAdmin } from '../callers/principal.js';
import type { Config } from '../config.js';
import type { ApiKey, User } from '../domain.js';
import { MAX_EXTERNAL_ID_LENGTH } from '../domain.js';
import { err, type Failure, ok, type Result } from '../errors.js';
import { actorData, keySummary, userSummary } from '../events/catalogue.js';
import { emitEvent } from '../events/outbox.js';
import { findKeyFactsOwnedBy } from '../events/repository.js';
import { decodeCursor, encodeCursor, type Page } from '../pagination.js';
import type { Db } from '../store/database.js';
import {
  deleteUser,
  findKeysOwnedBy,
  findUserByExternalId,
  findUserById,
  findUserForUpdate,
  findUserWithKeyCount,
  insertUserIfAbsent,
  listUsers,
  type OwnedKey,
  type UserWithKeyCount,
  updateUser,
} from './repository.js';

export interface CreateUserInput {
  externalId: string;
  email?: string | null;
  tier?: string;
}

export interface UpdateUserInput {
  email?: string | null;
  tier?: string;
}

export interface ListUsersInput {
  externalId?: string;
  limit?: number;
  cursor?: string;
}

export interface UserServiceDeps {
  db: Db;
  config: Pick<Config, 'tiers' | 'defaultTier'>;
  /**
   * Told, after commit, about keys whose meaning changed without a write to the key itself: the keys of a
   * deleted user (gone through the cascade) and of a user whose tier changed (their default limits did).
   */
  onKeysChanged?: (keys: readonly Pick<ApiKey, 'keyHash'>[]) => void;
  now?: () => number;
}

export type UserService = ReturnType<typeof createUserService>;

/** The actor recorded when a user is created by signing in with a JWT for an unknown `sub`. */
const PROVISIONER: Caller = { principal: { kind: 'system', name: 'jwt' }, ip: null };

export const MAX_EMAIL_LENGTH = 320;

function invalid(field: string, message: string): Failure<'INVALID_REQUEST'> {
  return err('INVALID_REQUEST', `${field}: ${message}`, [{ field, message }]);
}

const forbidden = (): Failure<'FORBIDDEN'> => err('FORBIDDEN', 'only an admin may manage users');

export function createUserService({ db: { db, dialect }, config, onKeysChanged = () => {}, now = Date.now }: UserServiceDeps) {
  function checkTier(tier: string | undefined): Failure<'INVALID_REQUEST'> | null {
    if (tier === undefined || Object.hasOwn(config.tiers, tier)) return null;
    return invalid('body.tier', `must be one of ${Object.keys(config.tiers).join(', ')}`);
  }

  // HTTP schemas check these too; the CLI reaches the service without them.
  function checkEmail(email: string | null | undefined): Failure<'INVALID_REQUEST'> | null {
    if (email === undefined || email === null) return null;
    if (email.length > MAX_EMAIL_LENGTH || !/^[^\s@]+@[^\s@]+$/.test(email)) return invalid('body.email', 'must be an email address');
    return null;
  }

  return {
    async create(caller: Caller, input: CreateUserInput): Promise<Result<User>> {
      if (!isAdmin(caller.principal)) return forbidden();
      if (input.externalId === '' || input.externalId.length > MAX_EXTERNAL_ID_LENGTH) {
        return invalid('body.external_id', `must be 1 to ${MAX_EXTERNAL_ID_LENGTH} characters`);
      }
      const bad = checkTier(input.tier) ?? checkEmail(input.email);
      if (bad) return bad;
      const at = now();
      const user: User = {
        id: uuidv7(),
        externalId: input.externalId,
        email: input.email ?? null,
        tier: input.tier ?? config.defaultTier,
        createdAt: at,
        updatedAt: at,
      };
      return db.transaction().execute(async (trx): Promise<Result<User>> => {
        const inserted = await insertUserIfAbsent(trx, user);
        if (!inserted) return err('USER_EXISTS', 'a user with this external_id exists');
        await audit(trx, caller, 'user.create', { type: 'user', id: user.id }, { external_id: user.externalId, tier: user.tier }, at);
        await emitEvent(trx, 'user.created', { user: userSummary(inserted), actor: actorData(caller) }, at);
        return ok(inserted);
      });
    },

    /**
     * The user a verified JWT names by `sub`, created with the default tier on first sign-in. Safe under
     * concurrent first sign-ins: one insert wins, the others read the winner's row; one audit row.
     */
    async signIn(externalId: string, claims: { email?: string | null } = {}): Promise<User> {
      const found = await findUserByExternalId(db, externalId);
      if (found) return found;
      // Two rounds cover a user deleted between a lost insert race and the read that follows it.
      for (let round = 0; round < 2; round += 1) {
        const user = await db.transaction().execute(async (trx) => {
          const at = now();
          const candidate: User = {
            id: uuidv7(),
            externalId,
            email: checkEmail(claims.email) ? null : (claims.email ?? null),
            tier: config.defaultTier,
            createdAt: at,
            updatedAt: at,
          };
          const inserted = await insertUserIfAbsent(trx, candidate);
          if (!inserted) return findUserByExternalId(trx, externalId);
          await audit(
            trx,
            PROVISIONER,
            'user.create',
            { type: 'user', id: inserted.id },
            { external_id: externalId, tier: inserted.tier, source: 'jwt' },
            at,
          );
          await emitEvent(trx, 'user.created', { user: userSummary(inserted), actor: actorData(PROVISIONER), source: 'jwt' }, at);
          return inserted;
        });
        if (user) return user;
      }
      throw new Error('user provisioning did not settle');
    },

    /** A page of users, each with how many keys they own. */
    async list(caller: Caller, input: ListUsersInput): Promise<Result<Page<UserWithKeyCount>>> {
      if (!isAdmin(caller.principal)) return forbidden();
      const before = input.cursor === undefined ? undefined : decodeCursor(input.cursor);
      if (before === null) return invalid('querystring.cursor', 'is not a cursor from a previous page');
      const limit = input.limit ?? 20;
      const rows = await listUsers(db, { externalId: input.externalId, limit, before });
      const items = rows.slice(0, limit);
      const last = items.at(-1);
      return ok({ items, nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null });
    },

    /** A user and how many keys they own. */
    async get(caller: Caller, id: string): Promise<Result<UserWithKeyCount>> {
      if (!isAdmin(caller.principal)) return forbidden();
      const user = await findUserWithKeyCount(db, id);
      return user ? ok(user) : err('USER_NOT_FOUND');
    },

    /** A user by Keyward id or, failing that, by external id (for the CLI, where operators know either). */
    async find(caller: Caller, idOrExternalId: string): Promise<Result<User>> {
      if (!isAdmin(caller.principal)) return forbidden();
      const user = (await findUserById(db, idOrExternalId)) ?? (await findUserByExternalId(db, idOrExternalId));
      return user ? ok(user) : err('USER_NOT_FOUND');
    },

    async update(caller: Caller, id: string, input: UpdateUserInput): Promise<Result<User>> {
      if (!isAdmin(caller.principal)) return forbidden();
      const bad = checkTier(input.tier) ?? checkEmail(input.email);
      if (bad) return bad;
      const outcome = await db.transaction().execute(async (trx): Promise<Result<{ user: User; keys: OwnedKey[] }>> => {
        // The row lock orders this change against concurrent key creation, which counts against the tier.
        const current = await findUserForUpdate(trx, id, dialect);
        if (!current) return err('USER_NOT_FOUND');
        const wanted: Partial<User> = {};
        if (input.email !== undefined) wanted.email = input.email;
        if (input.tier !== undefined) wanted.tier = input.tier;
        const changes = diff(current, wanted, { email: ['email'], tier: ['tier'] });
        if (Object.keys(changes).length === 0) return ok({ user: current, keys: [] });
        const at = now();
        const updated = await updateUser(trx, id, { ...wanted, updatedAt: at });
        if (!updated) return err('USER_NOT_FOUND');
        await audit(trx, caller, 'user.update', { type: 'user', id }, changes, at);
        await emitEvent(trx, 'user.updated', { user: userSummary(updated), actor: actorData(caller), changes }, at);
        return ok({ user: updated, keys: 'tier' in changes ? await findKeysOwnedBy(trx, id) : [] });
      });
      if (!outcome.ok) return outcome;
      if (outcome.value.keys.length > 0) onKeysChanged(outcome.value.keys);
      return ok(outcome.value.user);
    },

    /** Deletes a user and, by cascade, every key they own; each key's removal is audited with the user's. */
    async remove(caller: Caller, id: string): Promise<Result<User>> {
      if (!isAdmin(caller.principal)) return forbidden();
      const outcome = await db.transaction().execute(async (trx): Promise<Result<{ user: User; keys: OwnedKey[] }>> => {
        // Locked first, so no key can be created for this user between listing their keys and the delete.
        const user = await findUserForUpdate(trx, id, dialect);
        if (!user) return err('USER_NOT_FOUND');
        const keys = await findKeysOwnedBy(trx, id);
        // Read before the cascade removes them: each key's deletion is an event of its own.
        const deletedKeys = await findKeyFactsOwnedBy(trx, id);
        if (!(await deleteUser(trx, id))) return err('USER_NOT_FOUND');
        const at = now();
        for (const key of keys) {
          await audit(
            trx,
            caller,
            'key.delete',
            { type: 'api_key', id: key.id },
            { name: key.name, key_prefix: key.keyPrefix, cause: 'user.delete' },
            at,
          );
        }
        await audit(
          trx,
          caller,
          'user.delete',
          { type: 'user', id },
          { external_id: user.externalId, tier: user.tier, keys_deleted: keys.length },
          at,
        );
        const actor = actorData(caller);
        for (const key of deletedKeys) await emitEvent(trx, 'key.deleted', { key: keySummary(key), actor, cause: 'user.delete' }, at);
        await emitEvent(trx, 'user.deleted', { user: userSummary(user), actor, keys_deleted: keys.length }, at);
        return ok({ user, keys });
      });
      if (!outcome.ok) return outcome;
      onKeysChanged(outcome.value.keys);
      return ok(outcome.value.user);
    },
  };
}
