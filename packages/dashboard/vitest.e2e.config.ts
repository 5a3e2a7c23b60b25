import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// End-to-end tests: a real server on a fresh SQLite file, driven in headless Chromium.
export default defineConfig({
  resolve: {
    alias: [{ find: /^@keyward\/sdk$/, replacement: fileURLToPath(new URL('../sdk/src/index.ts', import.meta.url)) }],
  },
  test: {
    name: 'dashboard-e2e',
    include: ['e2e/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    fileParallelism: false,
  },
});
