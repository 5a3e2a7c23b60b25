import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // The SDK from source, entry point and framework subpaths (`@keyward/sdk/fastify` → src/fastify.ts).
    alias: [
      { find: /^@keyward\/sdk$/, replacement: fileURLToPath(new URL('./packages/sdk/src/index.ts', import.meta.url)) },
      {
        find: /^@keyward\/sdk\/(fastify|express|hono)$/,
        replacement: `${fileURLToPath(new URL('./packages/sdk/src/', import.meta.url))}$1.ts`,
      },
    ],
  },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'test/**/*.test.ts', 'examples/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    globalSetup: ['./test/global-setup.ts'],
  },
});
