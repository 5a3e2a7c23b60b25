import { SignJWT } from 'jose';
import { bearer, type TestApp } from '../helpers/app.js';

/** The HS256 secret, issuer and audience the JWT tests configure (JWT_SECRET must be 32+ characters). */
export const SECRET = 'a-test-secret-that-is-long-enough-for-hs256';
export const ISSUER = 'https://issuer.test';
export const AUDIENCE = 'keyward-tests';
export const JWT_ENV = { JWT_SECRET: SECRET, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE };

export interface TokenOptions {
  secret?: string;
  issuer?: string | null;
  audience?: string | null;
  /** Seconds from now; negative for an expired token; null for no `exp`. */
  expiresIn?: number | null;
  claims?: Record<string, unknown>;
}

/** An HS256 token for `sub` (null: no sub), valid for the JWT_ENV configuration unless options say otherwise. */
export async function hsToken(sub: string | null, options: TokenOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  let jwt = new SignJWT(options.claims ?? {}).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt(now);
  if (sub !== null) jwt = jwt.setSubject(sub);
  const issuer = options.issuer === undefined ? ISSUER : options.issuer;
  const audience = options.audience === undefined ? AUDIENCE : options.audience;
  if (issuer !== null) jwt = jwt.setIssuer(issuer);
  if (audience !== null) jwt = jwt.setAudience(audience);
  const expiresIn = options.expiresIn === undefined ? 3600 : options.expiresIn;
  if (expiresIn !== null) jwt = jwt.setExpirationTime(now + expiresIn);
  return jwt.sign(new TextEncoder().encode(options.secret ?? SECRET));
}

/** Signs `sub` in and returns their Keyward user id (provisioning them on first use). */
export async function signIn(t: TestApp, sub: string): Promise<{ token: string; userId: string }> {
  const token = await hsToken(sub);
  const response = await t.app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(token) });
  if (response.statusCode !== 200) throw new Error(`sign-in failed: ${response.statusCode} ${response.body}`);
  return { token, userId: (response.json() as { id: string }).id };
}
