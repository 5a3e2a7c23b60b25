// The browser-safe part of `@keyward/sdk`: the typed client, its error type and the pure scope helpers. The
// package's main entry also exports the key helpers and middleware, which import node:crypto; Vite resolves
// `@keyward/sdk` here (vite.config.ts) so the bundle carries only what runs in a browser.
export * from '../../../sdk/src/client.js';
export { type FieldError, KeywardError, type Problem } from '../../../sdk/src/errors.js';
export { hasScopes, scopeCovers } from '../../../sdk/src/shared.js';
