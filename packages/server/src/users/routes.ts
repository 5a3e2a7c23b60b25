import { type Static, Type } from '@fastify/type-provider-typebox';
import type { User } from '../domain.js';
import { MAX_EXTERNAL_ID_LENGTH } from '../domain.js';
import { callerOf } from '../http/auth.js';
import { unwrap } from '../http/problem.js';
import { bodyProblems, IdParams, iso, NextCursor, problems, ref } from '../http/schemas.js';
import { type App, SECURED } from '../http/types.js';
import type { UserWithKeyCount } from './repository.js';
import { MAX_EMAIL_LENGTH, type UserService } from './service.js';

const tags = ['Users'];

const ExternalId = Type.String({
  minLength: 1,
  maxLength: MAX_EXTERNAL_ID_LENGTH,
  description: "The user's id in the host product; the `sub` claim of their JWT",
});
const Email = Type.Union([Type.String({ format: 'email', maxLength: MAX_EMAIL_LENGTH }), Type.Null()]);
const Tier = Type.String({ minLength: 1, maxLength: 32, description: 'A tier named in `TIERS` (default: free, pro, enterprise)' });

const USER_EXAMPLE = {
  id: '0197a4c8-2f3e-7a1b-9c4d-5e6f7a8b9c0d',
  external_id: 'auth0|64f1c2a9e8b7d6c5b4a39281',
  email: 'ada@example.com',
  tier: 'pro',
  created_at: '2025-05-20T11:00:00.000Z',
  updated_at: '2025-05-20T11:00:00.000Z',
};

export const UserResponse = Type.Object(
  {
    id: Type.String({ description: 'Keyward user id (UUIDv7)' }),
    external_id: Type.String({ description: "The user's id in the host product (JWT `sub`)" }),
    email: Type.Union([Type.String(), Type.Null()]),
    tier: Type.String(),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'User', description: 'An end user of the host product', examples: [USER_EXAMPLE] },
);
export type UserResponse = Static<typeof UserResponse>;

const USER_WITH_KEY_COUNT_EXAMPLE = { ...USER_EXAMPLE, key_count: 3 };

/** A user as the users API lists and gets them: with the number of keys they own. */
export const UserWithKeyCountResponse = Type.Object(
  {
    ...UserResponse.properties,
    key_count: Type.Integer({ minimum: 0, description: 'Keys the user owns, in every state (active, deactivated, revoked, expired)' }),
  },
  {
    $id: 'UserWithKeyCount',
    description: 'An end user of the host product, with how many keys they own',
    examples: [USER_WITH_KEY_COUNT_EXAMPLE],
  },
);
export type UserWithKeyCountResponse = Static<typeof UserWithKeyCountResponse>;

const CreateUserBody = Type.Object(
  { external_id: ExternalId, email: Type.Optional(Email), tier: Type.Optional(Tier) },
  { additionalProperties: false, examples: [{ external_id: USER_EXAMPLE.external_id, email: USER_EXAMPLE.email, tier: 'pro' }] },
);
const UpdateUserBody = Type.Object(
  { email: Type.Optional(Email), tier: Type.Optional(Tier) },
  { additionalProperties: false, minProperties: 1, examples: [{ tier: 'enterprise' }] },
);
const ListUsersQuery = Type.Object(
  {
    external_id: Type.Optional(ExternalId),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);
const UserListResponse = Type.Object(
  { data: Type.Array(ref(UserWithKeyCountResponse)), next_cursor: NextCursor },
  { $id: 'UserPage', description: 'A page of users, newest first' },
);

/** The users wing's named components of the OpenAPI document (registered by the app). */
export const USER_SCHEMAS = [UserResponse, UserWithKeyCountResponse, UserListResponse];

/** A user as an answer, with an example. */
export const user = (description: string, example: object = USER_EXAMPLE) => ref(UserResponse, { description, examples: [example] });

export function userView(user: User): UserResponse {
  return {
    id: user.id,
    external_id: user.externalId,
    email: user.email,
    tier: user.tier,
    created_at: iso(user.createdAt),
    updated_at: iso(user.updatedAt),
  };
}

export function userWithKeyCountView(user: UserWithKeyCount): UserWithKeyCountResponse {
  return { ...userView(user), key_count: user.keyCount };
}

/** The users API (admin only): the end users of the host product, their tiers, and deleting them with their keys. */
export function userRoutes(app: App, deps: { users: UserService }): void {
  const { users } = deps;

  app.post(
    '/v1/users',
    {
      schema: {
        operationId: 'createUser',
        tags,
        summary: 'Create a user',
        description:
          'Admin only. Registers an end user of the host product by `external_id` (their JWT `sub`), with a tier (default from `DEFAULT_TIER`). Users signing in with a JWT for the first time are also created automatically. 409 `USER_EXISTS` when the external id is taken.',
        security: SECURED,
        body: CreateUserBody,
        response: { 201: user('The user created'), ...bodyProblems(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const b = request.body;
      const user = unwrap(
        await users.create(callerOf(request), {
          externalId: b.external_id,
          ...(b.email === undefined ? {} : { email: b.email }),
          ...(b.tier === undefined ? {} : { tier: b.tier }),
        }),
      );
      return reply.code(201).send(userView(user));
    },
  );

  app.get(
    '/v1/users',
    {
      schema: {
        operationId: 'listUsers',
        tags,
        summary: 'List users',
        description:
          'Admin only. Newest first, paginated with `limit` and `cursor`; `external_id` finds one user by their host id. Each user carries `key_count`, the keys they own in every state.',
        security: SECURED,
        querystring: ListUsersQuery,
        response: {
          200: ref(UserListResponse, {
            description: 'A page of users',
            examples: [{ data: [USER_WITH_KEY_COUNT_EXAMPLE], next_cursor: null }],
          }),
          ...problems(400, 401, 403),
        },
      },
    },
    async (request) => {
      const q = request.query;
      const page = unwrap(
        await users.list(callerOf(request), {
          ...(q.external_id === undefined ? {} : { externalId: q.external_id }),
          ...(q.limit === undefined ? {} : { limit: q.limit }),
          ...(q.cursor === undefined ? {} : { cursor: q.cursor }),
        }),
      );
      return { data: page.items.map(userWithKeyCountView), next_cursor: page.nextCursor };
    },
  );

  app.get(
    '/v1/users/:id',
    {
      schema: {
        operationId: 'getUser',
        tags,
        summary: 'Get a user',
        description: 'Admin only. With `key_count`, the keys the user owns in every state.',
        security: SECURED,
        params: IdParams,
        response: {
          200: ref(UserWithKeyCountResponse, { description: 'The user', examples: [USER_WITH_KEY_COUNT_EXAMPLE] }),
          ...problems(401, 403, 404),
        },
      },
    },
    async (request) => userWithKeyCountView(unwrap(await users.get(callerOf(request), request.params.id))),
  );

  app.patch(
    '/v1/users/:id',
    {
      schema: {
        operationId: 'updateUser',
        tags,
        summary: 'Update a user',
        description:
          'Admin only. Changes the email or the tier. A new tier takes effect at once: its key limit applies to the next key the user creates (existing keys are kept even above a lower limit).',
        security: SECURED,
        params: IdParams,
        body: UpdateUserBody,
        response: {
          200: user('The user as changed', { ...USER_EXAMPLE, tier: 'enterprise', updated_at: '2025-06-03T08:00:00.000Z' }),
          ...bodyProblems(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const b = request.body;
      const user = unwrap(
        await users.update(callerOf(request), request.params.id, {
          ...(b.email === undefined ? {} : { email: b.email }),
          ...(b.tier === undefined ? {} : { tier: b.tier }),
        }),
      );
      return userView(user);
    },
  );

  app.delete(
    '/v1/users/:id',
    {
      schema: {
        operationId: 'deleteUser',
        tags,
        summary: 'Delete a user and their keys',
        description:
          'Admin only. Deletes the user and every key they own; those keys stop verifying at once. Audited (`user.delete`, and `key.delete` per key). A later sign-in with the same JWT `sub` creates a new user.',
        security: SECURED,
        params: IdParams,
        response: { 204: Type.Null({ description: 'Deleted' }), ...problems(401, 403, 404) },
      },
    },
    async (request, reply) => {
      unwrap(await users.remove(callerOf(request), request.params.id));
      return reply.code(204).send(null);
    },
  );
}
