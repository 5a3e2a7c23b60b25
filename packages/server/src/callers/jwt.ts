import { createRemoteJWKSet, errors, type JWTVerifyGetKey, jwtVerify, SignJWT } from 'jose';
import type { Config } from '../config.js';
import { MAX_EXTERNAL_ID_LENGTH, type User } from '../domain.js';
import { err, ok } from '../errors.js';
import { isStorableText } from '../text.js';
import type { JwtAuthenticator } from './authenticator.js';

// Asymmetric algorithms accepted from a JWKS. HS* is accepted only with JWT_SECRET, and `none` never:
// pinning the list is what stops algorithm-confusion tricks (an RSA public key used as an HMAC secret).
const JWKS_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'];
const SECRET_ALGORITHM = 'HS256';
const CLOCK_TOLERANCE_SECONDS = 5;

/** The signing keys could not be fetched: the server's problem (503), not the token's (401). */
class KeySourceUnavailable extends Error {}

// Failures of the JWKS fetch itself, as opposed to a token naming a key or algorithm the set lacks.
function isFetchFailure(error: unknown): boolean {
  if (!(error instanceof errors.JOSEError)) return true; // network errors from fetch
  return error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid || error.code === errors.JOSEError.code;
}

export interface JwtDeps {
  config: Pick<Config, 'jwtSecret' | 'jwtJwksUrl' | 'jwtIssuer' | 'jwtAudience'>;
  /** Finds the user a token's `sub` names, creating it on first sign-in (the user service, given by the container). */
  users: { signIn(externalId: string, claims?: { email?: string | null }): Promise<User> };
}

/**
 * Signs users in from a JWT: HS256 with `JWT_SECRET` and/or RS/ES/PS with keys from `JWT_JWKS_URL`;
 * `iss`/`aud` are checked when configured; `sub` and `exp` are required. The `sub` is the user's external
 * id; an unknown one is provisioned with the default tier. `null` when neither secret nor JWKS is set.
 */
export function createJwtAuthenticator({ config, users }: JwtDeps): JwtAuthenticator | null {
  if (config.jwtSecret === null && config.jwtJwksUrl === null) return null;
  const secret = config.jwtSecret === null ? null : new TextEncoder().encode(config.jwtSecret);
  // jose caches the set, refetches on an unknown `kid` at most every 30 s, and times a fetch out after 5 s.
  const jwks = config.jwtJwksUrl === null ? null : createRemoteJWKSet(new URL(config.jwtJwksUrl));
  const algorithms = [...(secret ? [SECRET_ALGORITHM] : []), ...(jwks ? JWKS_ALGORITHMS : [])];

  const keyFor: JWTVerifyGetKey = async (header, token) => {
    if (header.alg === SECRET_ALGORITHM && secret) return secret;
    if (!jwks) throw new errors.JOSEAlgNotAllowed('"alg" (Algorithm) Header Parameter value not allowed');
    try {
      return await jwks(header, token);
    } catch (error) {
      throw isFetchFailure(error) ? new KeySourceUnavailable() : error;
    }
  };

  return async (token) => {
    let payload: Awaited<ReturnType<typeof jwtVerify>>['payload'];
    try {
      ({ payload } = await jwtVerify(token, keyFor, {
        algorithms,
        requiredClaims: ['sub', 'exp'],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        ...(config.jwtIssuer === null ? {} : { issuer: config.jwtIssuer }),
        ...(config.jwtAudience === null ? {} : { audience: config.jwtAudience }),
      }));
    } catch (error) {
      if (error instanceof KeySourceUnavailable)
        return err('SERVICE_UNAVAILABLE', 'the token signing keys cannot be fetched; try again shortly');
      if (error instanceof errors.JWTExpired) return err('TOKEN_EXPIRED');
      if (error instanceof errors.JWTClaimValidationFailed)
        return err('INVALID_CREDENTIALS', `the token's ${error.claim} claim is not accepted`);
      if (error instanceof errors.JOSEError || error instanceof TypeError) return err('INVALID_CREDENTIALS', 'the token is not valid');
      throw error;
    }
    const { sub } = payload;
    // `sub` becomes stored text (the user's external id): text a database cannot hold (NUL) names no one.
    if (typeof sub !== 'string' || sub === '' || sub.length > MAX_EXTERNAL_ID_LENGTH || !isStorableText(sub)) {
      return err('INVALID_CREDENTIALS', 'the token has no usable sub claim');
    }
    // An unusable email is left out, as sign-in leaves out one that is no address.
    const email = typeof payload.email === 'string' && isStorableText(payload.email) ? payload.email : null;
    return ok({ kind: 'user', user: await users.signIn(sub, { email }) });
  };
}

/**
 * A short-lived HS256 token for `sub` (an external id), for development with `JWT_SECRET`. Carries the
 * configured issuer and audience so the server accepts it. Nothing is provisioned until it is used.
 */
export async function mintDevToken(
  config: Pick<Config, 'jwtIssuer' | 'jwtAudience'> & { jwtSecret: string },
  sub: string,
  ttlSeconds: number,
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  let jwt = new SignJWT({})
    .setProtectedHeader({ alg: SECRET_ALGORITHM, typ: 'JWT' })
    .setSubject(sub)
    .setIssuedAt(now)
    .setExpirationTime(now + ttlSeconds);
  if (config.jwtIssuer !== null) jwt = jwt.setIssuer(config.jwtIssuer);
  if (config.jwtAudience !== null) jwt = jwt.setAudience(config.jwtAudience);
  return jwt.sign(new TextEncoder().encode(config.jwtSecret));
}
