import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    reporters: ['default', './ci/summary-reporter.ts'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['{ci,codegen,controller}/**/*.test.ts'],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          // One real control plane for the whole run; each test file works in its own namespace.
          globalSetup: ['test/integration/global-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          pool: 'forks',
          maxWorkers: 2,
        },
      },
      {
        test: {
          name: 'chart',
          include: ['test/chart/**/*.test.ts'],
          environment: 'node',
          // Spawns the real helm 4, helm 3 and helm-unittest binaries; needs no cluster.
          testTimeout: 120_000,
        },
      },
    ],
  },
});
