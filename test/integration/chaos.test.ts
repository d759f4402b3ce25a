// The chaos soak (ci/chaos/soak.ts) at the size CI affords: 12 endpoints at 20 requests a second each,
// 100 random spec changes and 50 SIGKILLs of the controller over 150 s; run alone, after every other
// integration file (the `soak` project). First, its route watcher is shown to catch a route that
// names a Service with nothing available for 300 ms. Longer runs: `npm run chaos -- --minutes=N`.
// The seed is random and printed; ML_OPERATOR_CHAOS_SEED replays one (ML_OPERATOR_CHAOS_LOG_LEVEL=debug
// logs each of the controller's decisions).
import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { setTimeout as delay } from 'node:timers/promises';
import * as k8s from '@kubernetes/client-node';
import { watchRoutes } from '../../ci/chaos/route-watcher.ts';
import { describeSoak, runSoak, soakProblems } from '../../ci/chaos/soak.ts';
import { waitFor } from '../../ci/wait.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import { admin } from './ml.ts';

let namespace: string;
beforeAll(async () => {
  namespace = await createNamespace(admin, 'chaos', { 'pod-security.kubernetes.io/enforce': 'restricted' });
});
afterAll(async () => {
  if (namespace) await deleteNamespace(admin, namespace);
});

describe('the chaos soak route watcher', () => {
  it('catches a route that sends traffic for 300 ms to a Service with no available replica, and says how long', async () => {
    const ns = await createNamespace(admin, 'chaos-watcher');
    try {
      const core = admin.makeApiClient(k8s.CoreV1Api);
      const apps = admin.makeApiClient(k8s.AppsV1Api);
      const custom = admin.makeApiClient(k8s.CustomObjectsApi);
      const labels = { app: 'no-replica' };
      // A Service whose only Deployment is at 0 replicas: nothing available behind it.
      await apps.createNamespacedDeployment({
        namespace: ns,
        body: {
          metadata: { name: 'no-replica' },
          spec: {
            replicas: 0,
            selector: { matchLabels: labels },
            template: { metadata: { labels }, spec: { containers: [{ name: 'model', image: 'acme/model:1' }] } },
          },
        },
      });
      await core.createNamespacedService({
        namespace: ns,
        body: { metadata: { name: 'no-replica' }, spec: { selector: labels, ports: [{ port: 80 }] } },
      });
      const route = (backends: { name: string; port: number }[]) => ({
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'HTTPRoute',
        metadata: { name: 'broken-build' },
        spec: { hostnames: ['broken.example.com'], rules: [{ backendRefs: backends }] },
      });
      const group = { group: 'gateway.networking.k8s.io', version: 'v1', namespace: ns, plural: 'httproutes' };
      await custom.createNamespacedCustomObject({ ...group, body: route([]) });
      const watcher = await watchRoutes(admin, ns);
      // What a broken build would do: name the Service for 300 ms, then take it out again.
      await custom.replaceNamespacedCustomObject({
        ...group,
        name: 'broken-build',
        body: { ...route([{ name: 'no-replica', port: 80 }]), metadata: await metadataOf(custom, group) },
      });
      await delay(300);
      await custom.replaceNamespacedCustomObject({
        ...group,
        name: 'broken-build',
        body: { ...route([]), metadata: await metadataOf(custom, group) },
      });
      await waitFor('the watcher to see the violation end', 15_000, async () =>
        watcher.checker.violations().some((v) => v.to !== undefined) ? true : undefined,
      );
      const checker = watcher.stop();
      expect(checker.errors()).toEqual([]);
      const violations = checker.violations();
      process.stdout.write(
        `[chaos] the watcher on a route that named a Service with nothing available for 300 ms: ${violations.map((v) => `${v.route} -> ${v.service} for ${v.to! - v.from} ms (${v.why})`).join('; ')}\n`,
      );
      expect(violations.map((v) => [v.route, v.service, v.why])).toEqual([
        ['broken-build', 'no-replica', 'its Deployments (no-replica 0 available) have no available replica'],
      ]);
      // Measured between the watch events' arrivals: the 300 ms plus the second write's own time.
      expect(violations[0].to! - violations[0].from).toBeGreaterThanOrEqual(250);
      expect(violations[0].to! - violations[0].from).toBeLessThan(3000);
    } finally {
      await deleteNamespace(admin, ns);
    }
  });
});

/** The route's current metadata (name and resourceVersion), for a replace. */
async function metadataOf(
  custom: k8s.CustomObjectsApi,
  group: { group: string; version: string; namespace: string; plural: string },
): Promise<{ name: string; resourceVersion: string }> {
  const live = (await custom.getNamespacedCustomObject({ ...group, name: 'broken-build' })) as {
    metadata: { name: string; resourceVersion: string };
  };
  return { name: live.metadata.name, resourceVersion: live.metadata.resourceVersion };
}

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
        endpoints: 12,
        changes: 100,
        kills: 50,
        churnMs: 150_000,
        rate: 20,
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
