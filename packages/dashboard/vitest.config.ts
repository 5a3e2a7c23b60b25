import { defineConfig } from 'vitest/config';
import { sdkAlias } from './vite.config.js';

// Component tests (jsdom). The browser tests have their own config: vitest.e2e.config.ts.
export default defineConfig({
  resolve: { alias: sdkAlias },
  test: {
    name: 'dashboard',
    include: ['app/**/*.test.{ts,tsx}'],
    environment: 'jsdom',
    setupFiles: ['./app/test/setup.ts'],
    testTimeout: 30_000,
  },
});
