import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';

// Standard Webhooks signing (standardwebhooks.com): the secret is `whsec_` and the base64 of random bytes; a
// delivery is signed with HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` keyed by those bytes, and the
// `webhook-signature` header carries `v1,` and the base64 of the MAC. node:crypto does it all; the tests check the
// result with the `standardwebhooks` library's own verifier, as a receiver would.

export const SECRET_PREFIX = 'whsec_';
/** Random bytes in a new secret: Standard Webhooks asks for 24 to 64. */
const SECRET_BYTES = 24;

/** A new signing secret, `whsec_` + base64 of 24 random bytes. Shown once, when made. */
export function newSigningSecret(): string {
  return `${SECRET_PREFIX}${randomBytes(SECRET_BYTES).toString('base64')}`;
}

/** The `webhook-signature` header value for one delivery attempt. */
export function signPayload(secret: string, id: string, timestampSeconds: number, body: string): string {
  const key = Buffer.from(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret, 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestampSeconds}.${body}`).digest('base64')}`;
}

/**
 * Keeps signing secrets at rest. The secret must be usable to sign, so it cannot be hashed as keys are: with
 * `WEBHOOK_ENCRYPTION_KEY` it is sealed with AES-256-GCM (a random nonce per seal, the webhook's id as associated
 * data, so a sealed secret copied to another webhook does not open); without one it is stored as is, marked
 * `plain:`, and anyone who can read the database can sign as Keyward. A secret sealed with a key that is no
 * longer configured does not open: its deliveries fail until the secret is rolled.
 */
export interface SecretBox {
  seal(secret: string, webhookId: string): string;
  /** The secret, or `null` when it cannot be opened (no key, another key, or tampered with). */
  open(stored: string, webhookId: string): string | null;
}

const PLAIN = 'plain:';
const SEALED = 'aes256gcm:';

/** Reads `WEBHOOK_ENCRYPTION_KEY`: 32 bytes as base64 or hex; `null` when it is neither. */
export function parseEncryptionKey(text: string): Buffer | null {
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(text)) {
    const bytes = Buffer.from(text, 'base64');
    return bytes.length === 32 ? bytes : null;
  }
  return null;
}

export function createSecretBox(encryptionKey: string | null): SecretBox {
  const key = encryptionKey === null ? null : parseEncryptionKey(encryptionKey);
  if (encryptionKey !== null && key === null) throw new Error('WEBHOOK_ENCRYPTION_KEY must be 32 bytes, as base64 or hex');
  return {
    seal(secret, webhookId) {
      if (key === null) return `${PLAIN}${secret}`;
      const nonce = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, nonce);
      cipher.setAAD(Buffer.from(webhookId, 'utf8'));
      const sealed = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
      return `${SEALED}${nonce.toString('base64url')}.${sealed.toString('base64url')}.${cipher.getAuthTag().toString('base64url')}`;
    },
    open(stored, webhookId) {
      if (stored.startsWith(PLAIN)) return stored.slice(PLAIN.length);
      if (!stored.startsWith(SEALED) || key === null) return null;
      const [nonce, sealed, tag] = stored.slice(SEALED.length).split('.');
      if (nonce === undefined || sealed === undefined || tag === undefined) return null;
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(nonce, 'base64url'));
        decipher.setAAD(Buffer.from(webhookId, 'utf8'));
        decipher.setAuthTag(Buffer.from(tag, 'base64url'));
        return Buffer.concat([decipher.update(Buffer.from(sealed, 'base64url')), decipher.final()]).toString('utf8');
      } catch {
        return null;
      }
    },
  };
}
