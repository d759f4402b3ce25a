// The chaos soak (ci/chaos/soak.ts) at the size CI affords: 20 endpoints under load, 100 random spec
// changes and 50 SIGKILLs of the controller over 150 s. Longer runs: `npm run chaos -- --minutes=N`.
// The seed is random and printed; ML_OPERATOR_CHAOS_SEED replays one (ML_OPERATOR_CHAOS_LOG_LEVEL=debug
// logs each of the controller's decisions).
import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { describeSoak, runSoak, soakProblems } from '../../ci/chaos/soak.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import { admin } from './ml.ts';

let namespace: string;
beforeAll(async () => {
  namespace = await createNamespace(admin, 'chaos', { 'pod-security.kubernetes.io/enforce': 'restricted' });
});
afterAll(async () => {
  if (namespace) await deleteNamespace(admin, namespace);
});

describe('chaos: random changes and controller kills under load', () => {
  it(
    'keeps every request answered in time, routes only to available Deployments, and converges with nothing duplicated, orphaned or rewritten',
    { timeout: 900_000 },
    async () => {
      const seed = process.env.ML_OPERATOR_CHAOS_SEED ? Number(process.env.ML_OPERATOR_CHAOS_SEED) : randomInt(2 ** 31);
      const cluster = {
        kubeconfigPath: inject('kubeconfigPath'),
        auditLogPath: inject('auditLogPath'),
        network: inject('network'),
        gateway: inject('gateway'),
        artifactsDir: inject('artifactsDir'),
      };
      const report = await runSoak(cluster, namespace, {
        endpoints: 20,
        changes: 100,
        kills: 50,
        churnMs: 150_000,
        rate: 2,
        seed,
        echo: process.env.ML_OPERATOR_TEST_LOGS === '1',
        logLevel: process.env.ML_OPERATOR_CHAOS_LOG_LEVEL,
      });
      process.stdout.write(`[chaos] ${describeSoak(report).replaceAll('\n', '\n[chaos] ')}\n`);
      expect(report.kills).toBe(50);
      expect(Object.values(report.changes).reduce((a, b) => a + b, 0)).toBe(100);
      expect(report.checks, 'the watcher never checked a route').toBeGreaterThan(100);
      expect(soakProblems(report), `chaos soak with seed ${seed} (replay: ML_OPERATOR_CHAOS_SEED=${seed})`).toEqual([]);
    },
  );
});
