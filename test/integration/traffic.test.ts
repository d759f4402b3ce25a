// Real requests through the local cluster's gateway (Traefik, Gateway API) to model servers on the
// pods' own addresses: what users of an endpoint see while it is created, re-weighted and switched
// blue/green, and while a version that never gets ready sits past its deadline; and that the check
// every traffic test makes (expectServed) catches model servers that stall, hang, reset, crash or
// answer as another model.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ControllerProcess, Release } from '../../ci/cluster/operator.ts';
import { servedProblems, type LoadRun } from '../../ci/traffic/load.ts';
import { waitFor } from '../../ci/wait.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import type { MachineLearningEndpointRollout } from '../../controller/src/api/generated.ts';
import { gatewayApiGatewayResource, httpRouteResource } from '../../controller/src/routing/gateway-api.ts';
import {
  applyConfig,
  applyEndpoint,
  applyModel,
  admin,
  getEndpoint,
  inService,
  k8s,
  runController,
  user,
  waitForEndpoint,
} from './ml.ts';
import {
  artifact,
  backendsOf,
  expectServed,
  installGatewayRelease,
  load,
  maxExtraMs,
  printReport,
  share,
  uninstallRelease,
  waitForGateway,
  type RoutingMode,
} from './traffic.ts';

// On the oldest Kubernetes (the `oldest` project) a part runs: what rests on the cluster's workloads
// (pods getting ready, EndpointSlices, a blue/green switch, a version that never gets ready) behind
// the shared Gateway. A weight change and a Gateway per endpoint exercise only the gateway, which is
// the same on both clusters.
const oldest = inject('kubernetesRelease') === 'oldest';

for (const mode of ['shared', 'perEndpoint'] as RoutingMode[]) {
  describe.skipIf(oldest && mode === 'perEndpoint')(
    `traffic through the gateway (Gateway API provider, ${mode === 'shared' ? 'a shared Gateway' : 'a Gateway per endpoint'})`,
    () => {
      let namespace: string;
      let release: Release;
      let controller: ControllerProcess;
      const host = (name: string) => `${name}.${namespace}.models.example.com`;

      beforeAll(async () => {
        namespace = await createNamespace(admin, `traffic-${mode === 'shared' ? 'shared' : 'own'}`, {
          'pod-security.kubernetes.io/enforce': 'restricted',
        });
        release = await installGatewayRelease(namespace, mode);
        controller = await runController([namespace], { release });
      });
      afterAll(async () => {
        await controller?.stop();
        await deleteNamespace(admin, namespace);
        if (release) await uninstallRelease(release);
      });

      const model = (image: string, env: Record<string, string> = {}) => ({
        image,
        artifact: artifact('titanic'),
        readinessPath: '/healthz',
        ...(Object.keys(env).length ? { env: Object.entries(env).map(([name, value]) => ({ name, value })) } : {}),
      });

      /**
       * Serves a healthy first version of endpoint `name`, rolls out a second whose model server
       * misbehaves as `env` says, and sends 20 requests a second until 8 s after the status shows the
       * new version taking traffic. Returns what the served check finds.
       */
      async function misbehaving(name: string, rollout: MachineLearningEndpointRollout, env: Record<string, string>) {
        await applyModel(namespace, name, model(`acme/${name}:1`));
        await applyConfig(namespace, name, { models: [{ model: name }] });
        await applyEndpoint(namespace, name, { config: name, rollout: { ...rollout, drainSeconds: 5 } });
        const v1 = await waitForEndpoint(namespace, name, 'InService', inService, 90_000);
        await waitForGateway(host(name));
        // A stall of 3 s within a 10 s deadline: no request fails by status, as with the old 30 s one.
        const run: LoadRun = load(host(name), {
          requests: 2000,
          rate: 20,
          concurrency: 128,
          maxDurationMs: 120_000,
          ...(env.DEMO_STALL_MS ? { timeoutMs: 10_000 } : {}),
        });
        try {
          await applyModel(namespace, name, model(`acme/${name}:2`, env));
          const v2 = await waitForEndpoint(
            namespace,
            name,
            'the new version taking traffic',
            (e) =>
              (e.status?.traffic ?? []).some((t) => t.version !== v1.status!.endpointConfigVersion && t.weight > 0),
            90_000,
          );
          const from = run.elapsed();
          await waitFor(`8 s of load on ${name} since the new version took traffic`, 30_000, async () =>
            run.elapsed() >= from + 8000 ? true : undefined,
          );
          run.stop();
          const r = await run.done;
          printReport(`${name}: a version that misbehaves (${JSON.stringify(env)})`, r);
          return {
            name,
            run,
            failed: r.failed,
            problems: servedProblems(run.samples, { backends: backendsOf(v1, v2), namespace, maxExtraMs }, run.capped),
          };
        } finally {
          run.stop();
        }
      }

      if (mode === 'shared') {
        it('splits 2,000 requests 80/20 within the 99.9% binomial interval of the weights', async () => {
          await applyModel(namespace, 'champion', model('acme/champion:1'));
          await applyModel(namespace, 'challenger', model('acme/challenger:1'));
          await applyConfig(namespace, 'ab', {
            models: [
              { model: 'champion', weight: 80 },
              { model: 'challenger', weight: 20 },
            ],
          });
          await applyEndpoint(namespace, 'ab', { config: 'ab' });
          const e = await waitForEndpoint(namespace, 'ab', 'InService', inService, 90_000);
          await waitForGateway(host('ab'));
          expect(e.status!.conditions!.find((c) => c.type === 'RouteAccepted')).toMatchObject({ status: 'True' });
          const [champion, challenger] = e.status!.traffic!.map((t) => t.service);
          const run = load(host('ab'), { requests: 2000, concurrency: 16, maxDurationMs: 60_000 });
          const r = await run.done;
          printReport('80/20 split', r);
          expectServed(run, { backends: [champion, challenger], namespace });
          for (const [instance, weight] of [
            [champion, 0.8],
            [challenger, 0.2],
          ] as const) {
            const s = share(run.samples, instance, weight);
            process.stdout.write(
              `[traffic] ${instance}: ${(s.observed * 100).toFixed(2)}% of ${s.n}, interval ${(s.interval[0] * 100).toFixed(2)}..${(s.interval[1] * 100).toFixed(2)}%\n`,
            );
            expect(s.observed).toBeGreaterThanOrEqual(s.interval[0]);
            expect(s.observed).toBeLessThanOrEqual(s.interval[1]);
          }
        });

        it.skipIf(oldest)('follows a weight change in place within 10 s, with 0 failed requests', async () => {
          const before = await getEndpoint(namespace, 'ab');
          const run = load(host('ab'), { requests: 4000, rate: 100, concurrency: 128, maxDurationMs: 40_000 });
          await waitFor('some load before the change', 10_000, async () =>
            run.samples.length > 200 ? true : undefined,
          );
          const changedAt = performance.now();
          const runStart = changedAt - run.samples.at(-1)!.start;
          await applyConfig(namespace, 'ab', {
            models: [
              { model: 'champion', weight: 50 },
              { model: 'challenger', weight: 50 },
            ],
          });
          const e = await waitForEndpoint(
            namespace,
            'ab',
            'weights 50/50',
            (x) => inService(x) && x.status!.traffic!.every((t) => t.weight === 50),
          );
          expect(e.status!.traffic!.map((t) => t.service)).toEqual(before.status!.traffic!.map((t) => t.service));
          const r = await run.done;
          printReport('weight change 80/20 -> 50/50', r);
          expectServed(run, { backends: backendsOf(before, e), namespace });
          const after = run.samples.filter((s) => s.start >= changedAt - runStart + 10_000);
          expect(after.length).toBeGreaterThan(1000);
          const s = share(after, e.status!.traffic![0].service, 0.5);
          process.stdout.write(
            `[traffic] 10 s after the change: champion ${(s.observed * 100).toFixed(2)}% of ${s.n}, interval ${(s.interval[0] * 100).toFixed(2)}..${(s.interval[1] * 100).toFixed(2)}%\n`,
          );
          expect(s.observed).toBeGreaterThanOrEqual(s.interval[0]);
          expect(s.observed).toBeLessThanOrEqual(s.interval[1]);
        });
      }

      it('switches blue/green under load: old answers before, new after, 0 failed requests', async () => {
        await applyModel(namespace, 'bg', model('acme/bg:1'));
        await applyConfig(namespace, 'bg', { models: [{ model: 'bg' }] });
        await applyEndpoint(namespace, 'bg', { config: 'bg', rollout: { drainSeconds: 5 } });
        const v1 = await waitForEndpoint(namespace, 'bg', 'InService', inService, 90_000);
        await waitForGateway(host('bg'));
        const oldInstance = v1.status!.traffic![0].service;
        // 60 requests a second, one in ten lasting 2 s, through the whole switch.
        const run = load(host('bg'), {
          requests: 6000,
          rate: 60,
          concurrency: 128,
          maxDurationMs: 90_000,
          sleepMs: (i) => (i % 10 === 0 ? 2000 : 0),
        });
        await waitFor('load before the change', 10_000, async () => (run.samples.length > 120 ? true : undefined));
        await applyModel(namespace, 'bg', model('acme/bg:2'));
        const v2 = await waitForEndpoint(
          namespace,
          'bg',
          'switched',
          (x) => inService(x) && x.status!.endpointConfigVersion !== v1.status!.endpointConfigVersion,
          90_000,
        );
        const newInstance = v2.status!.traffic![0].service;
        // Keep the load on until the old version is gone, and a little longer.
        await waitFor('the old version removed', 60_000, async () => {
          const pods = await admin
            .makeApiClient(k8s.CoreV1Api)
            .listNamespacedPod({ namespace, labelSelector: `ml-operator.dev/model-instance=${oldInstance}` });
          return pods.items.length === 0 ? true : undefined;
        });
        await new Promise((resolve) => setTimeout(resolve, 3000));
        run.stop();
        const r = await run.done;
        printReport('blue/green switch', r);
        const answered = [...run.samples].filter((s) => s.status === 200).sort((a, b) => a.start - b.start);
        const firstNew = answered.find((s) => s.backend?.instance === newInstance)!;
        const lastOld = answered.filter((s) => s.backend?.instance === oldInstance).at(-1)!;
        process.stdout.write(
          `[traffic] switch: last request answered by the old version started at ${lastOld.start.toFixed(0)} ms, first answered by the new at ${firstNew.start.toFixed(0)} ms\n`,
        );
        expectServed(run, { backends: [oldInstance, newInstance], namespace });
        // Requests the gateway took before its switch went to the old version, after it to the new; in
        // between lies only the moment the gateway swaps its configuration.
        expect(lastOld.start).toBeLessThan(firstNew.start + 50);
      });

      if (mode === 'perEndpoint') {
        it('removes the Gateway and HTTPRoute of an endpoint moved onto a host another one serves', async () => {
          await applyEndpoint(namespace, 'mover', { config: 'bg', host: `mover.${namespace}.example.com` });
          await waitForEndpoint(namespace, 'mover', 'InService', inService, 90_000);
          await applyEndpoint(namespace, 'mover', { config: 'bg', host: host('bg') });
          await waitForEndpoint(
            namespace,
            'mover',
            'HostConflict',
            (x) => x.status?.conditions?.find((c) => c.type === 'Ready')?.reason === 'HostConflict',
          );
          await waitFor("the mover's Gateway and HTTPRoute removed", 30_000, async () => {
            const left = [
              await user.get(gatewayApiGatewayResource, namespace, 'mover-gw'),
              await user.get(httpRouteResource, namespace, 'mover'),
            ].filter(Boolean);
            return left.length === 0 ? true : undefined;
          });
          const run = load(host('bg'), { requests: 200, concurrency: 8, maxDurationMs: 30_000 });
          const r = await run.done;
          expectServed(run, { backends: backendsOf(await getEndpoint(namespace, 'bg')), namespace });
          expect(Object.keys(r.byInstance)).toHaveLength(1);
        });
      }

      if (mode === 'shared') {
        it('keeps 100% of the load on the serving version while a new one never gets ready, past its deadline', async () => {
          await applyEndpoint(namespace, 'bg', {
            config: 'bg',
            rollout: { drainSeconds: 5, progressDeadlineSeconds: 10 },
          });
          const serving = await waitForEndpoint(namespace, 'bg', 'InService', inService);
          const servingInstance = serving.status!.traffic![0].service;
          const run = load(host('bg'), { requests: 3000, rate: 60, concurrency: 128, maxDurationMs: 60_000 });
          await applyModel(namespace, 'bg', model('acme/bg:3', { DEMO_READY: 'false' }));
          await waitForEndpoint(
            namespace,
            'bg',
            'ProgressDeadlineExceeded',
            (x) => x.status?.conditions?.find((c) => c.type === 'Progressing')?.reason === 'ProgressDeadlineExceeded',
            60_000,
          );
          // And for a while after the deadline.
          await new Promise((resolve) => setTimeout(resolve, 5000));
          run.stop();
          const r = await run.done;
          printReport('a version that never gets ready', r);
          expectServed(run, { backends: [servingInstance], namespace });
          expect((await getEndpoint(namespace, 'bg')).status!.endpointConfigVersion).toBe(
            serving.status!.endpointConfigVersion,
          );
        });

        // What the check of every test above (expectServed) is for: each of these would pass a test
        // that only counts failed statuses, or lose itself in a long timeout, and each must be caught.
        it.skipIf(oldest)(
          'catches what a count of failed requests misses: a 3 s stall at a switch, and a canary that resets, hangs, crashes mid-answer or answers 200 as another model',
          { timeout: 600_000 },
          async () => {
            // One at a time: five loads at once, some of them hanging, would overload the machine itself.
            const caught = [
              await misbehaving('stall', { strategy: 'BlueGreen' }, { DEMO_STALL_MS: '3000', DEMO_STALL_SECONDS: '5' }),
            ];
            for (const fault of ['reset', 'hang', 'crash', 'wrong'] as const) {
              caught.push(
                await misbehaving(
                  fault,
                  { strategy: 'Canary', canary: { percent: 50, bakeSeconds: 600 } },
                  { DEMO_FAULT: fault },
                ),
              );
            }
            for (const c of caught) {
              process.stdout.write(
                `[traffic] ${c.name}: ${c.run.samples.length} requests, ${c.failed} failed by status, ${c.problems.length} not served; e.g. ${c.problems[0]}\n`,
              );
              expect(c.problems.length, c.name).toBeGreaterThan(10);
            }
            const [stall, reset, hang, crash, wrong] = caught;
            // The stall and the wrong model fail no request by status: only the served check sees them.
            expect(stall.failed).toBe(0);
            expect(
              stall.problems.every((p) =>
                new RegExp(
                  `took \\d+ ms beyond the 0 ms it asked for, more than ${maxExtraMs} ms|waited for the in-flight cap`,
                ).test(p),
              ),
            ).toBe(true);
            expect(wrong.failed).toBe(0);
            expect(wrong.problems.every((p) => / 200 from another-model-\w+ \(pod /.test(p))).toBe(true);
            // The gateway turns a reset into its 502; a hang is cut at its deadline; a crash cuts the
            // connection (before or after the gateway has passed the status on).
            expect(reset.problems.every((p) => /: status 502$/.test(p))).toBe(true);
            expect(hang.problems.every((p) => /: no answer \(no answer within 3000 ms\)$/.test(p))).toBe(true);
            expect(
              crash.problems.every((p) =>
                /: no answer \((ECONNRESET|response: aborted|answer cut short after status 200)\)$/.test(p),
              ),
            ).toBe(true);
          },
        );
      }
    },
  );
}
