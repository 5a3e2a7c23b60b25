import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyBaseLogger, FastifyInstance, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify';

/** The Fastify instance routes are declared on: TypeBox schemas give the request and reply types. */
export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/** Security requirement for routes that take an API key (Bearer or X-API-Key) or a user JWT. */
export const SECURED: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { apiKeyHeader: [] }];
