import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

// The dashboard calls the API through the SDK's typed client, compiled from source. The SDK's main entry also
// carries the Node-only key helpers and middleware (node:crypto); the dashboard needs only the client and its
// error type, so `@keyward/sdk` resolves to a browser-safe entry that re-exports exactly those.
export const sdkAlias = [{ find: /^@keyward\/sdk$/, replacement: here('./app/api/sdk-browser.ts') }];

/** Replaced per response by the server (packages/server/src/http/dashboard.ts). */
export const CSP_NONCE_PLACEHOLDER = '__KEYWARD_CSP_NONCE__';

export default defineConfig({
  plugins: [react()],
  resolve: { alias: sdkAlias },
  // `keyward serve` replaces this placeholder with a fresh nonce for every index.html it sends (its CSP names it).
  html: { cspNonce: CSP_NONCE_PLACEHOLDER },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    // No data: URLs (the CSP's font-src and img-src are 'self'): every asset is a file.
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 1200,
  },
  server: {
    // `npm run dev` next to `keyward serve` on :8080.
    proxy: { '/v1': 'http://127.0.0.1:8080' },
  },
});
