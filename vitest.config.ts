import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // One run, one report (`.ci/run` counts it): the server and SDK suites, the dashboard's component tests,
    // and its browser tests (which say plainly when they skip for want of Chromium).
    projects: [
      {
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
          name: 'server',
          include: ['packages/sdk/src/**/*.test.ts', 'packages/server/src/**/*.test.ts', 'test/**/*.test.ts', 'examples/**/*.test.ts'],
          testTimeout: 30_000,
          hookTimeout: 60_000,
          globalSetup: ['./test/global-setup.ts'],
        },
      },
      './packages/dashboard/vitest.config.ts',
      './packages/dashboard/vitest.e2e.config.ts',
    ],
  },
});
