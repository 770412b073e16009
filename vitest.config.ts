import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Every matrix kernel in the store first (the custom one is built there, once).
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    // Guest boots are CPU-bound under TCG: do not oversubscribe the two cores.
    fileParallelism: true,
    maxWorkers: 2,
    reporters: ['default'],
  },
});
