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
          // After the integration and oldest projects (group 0, two workers), one file at a time, as
          // before; the chaos soak comes last, alone (group 2). Left to its default, a one-worker
          // project would join vitest's sequential group, which runs after every numbered group:
          // beside the soak.
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
          // Some spawn the fetcher or a server as a process (2-3 s of Node.js start-up on two busy
          // cores): a test's time is not what it checks (speed lives in the benchmarks).
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // The chaos soak and the real node's shadow tests run alone, after these (the `soak` and
          // `quiet` projects below).
          exclude: [
            'test/integration/chaos.test.ts',
            'test/integration/failing-shadows.test.ts',
            'test/integration/shadow-verdicts.test.ts',
          ],
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
          // The chaos soak, alone on the integration project's cluster once every other file is done:
          // its 20 endpoints, 100 changes and 50 controller restarts load two cores enough to be felt
          // by the latency bounds of whatever ran beside it, and it must not feel theirs either.
          name: 'soak',
          include: ['test/integration/chaos.test.ts'],
          environment: 'node',
          globalSetup: ['test/integration/soak-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          pool: 'forks',
          maxWorkers: 1,
          sequence: { groupOrder: 2 },
        },
      },
      {
        test: {
          // Latencies judged on the real node, each file on a cluster of its own: the failing
          // shadows' p99 against the same model's without them, and the shadow tests' clients, every
          // request within a second of what it asked for while the agents mirror every request.
          // `npm test` (ci/test.ts) runs them in a vitest of their own once the other projects' have
          // closed: their control planes, idle until vitest closes, were felt in hundreds of
          // milliseconds of the failing shadows' tail, and the traffic suite's misbehaving versions
          // running beside the shadow tests stalled one of their requests for a second.
          name: 'quiet',
          include: ['test/integration/failing-shadows.test.ts', 'test/integration/shadow-verdicts.test.ts'],
          environment: 'node',
          testTimeout: 180_000,
          hookTimeout: 1_500_000,
          pool: 'forks',
          maxWorkers: 1,
          sequence: { groupOrder: 3 },
        },
      },
      {
        test: {
          // The chart's claim of the oldest Kubernetes it supports (Chart.yaml kubeVersion), tested:
          // a second control plane of that minor (ci/tools/kubernetes-oldest), and the test files of
          // the CRDs, the chart's install and lifecycle, the core rollouts and the placement of model
          // pods (the scheduler's and Pod Security's messages) run on it too.
          name: 'oldest',
          include: [
            'test/integration/chart-install.test.ts',
            'test/integration/endpoint-rollout.test.ts',
            'test/integration/placement.test.ts',
            'test/integration/rollout-safety.test.ts',
            'test/integration/traffic.test.ts',
          ],
          environment: 'node',
          globalSetup: ['test/integration/oldest-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          pool: 'forks',
          // The same two workers as the integration project: their files share them.
          maxWorkers: 2,
        },
      },
      {
        test: {
          // The controller image, built with podman on a local Node.js 24 base and run read-only as
          // user 65532 (ci/image/); needs no cluster. A first build also makes the base image.
          name: 'image',
          include: ['test/image/**/*.test.ts'],
          environment: 'node',
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
          testTimeout: 180_000,
          hookTimeout: 900_000,
        },
      },
      {
        test: {
          name: 'chart',
          include: ['test/chart/**/*.test.ts'],
          environment: 'node',
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
          // Spawns the real helm 4, helm 3 and helm-unittest binaries; needs no cluster.
          testTimeout: 120_000,
        },
      },
    ],
  },
});
