// The controller killed at each step boundary of a blue/green switch, under load, by a fault that
// fires on the exact request (not by chance): right after the new version's Deployment is written,
// right after the route is switched (before the status says so), right after the status records the
// switch (before the old version is removed), and right before the first removal of the old
// version. Each time a fresh controller takes over; every switch completes, nothing the route uses
// is ever deleted, and every request is answered by a version of the endpoint, in time: each switch
// under load from its change to the old version's removal, answered only by its old or new version.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerProcess, Release } from '../../ci/cluster/operator.ts';
import { coverageProblems, type Span } from '../../ci/traffic/figures.ts';
import { waitFor } from '../../ci/wait.ts';
import type {
  MachineLearningEndpointConfigSpec,
  MachineLearningModelSpec,
} from '../../controller/src/api/generated.ts';
import { planFromTemplates } from '../../controller/src/desired/plan.ts';
import { resources, type KubeObject } from '../../controller/src/kube/resources.ts';
import { startApiProxy, type ApiProxy } from './api-proxy.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import {
  admin,
  applyConfig,
  applyEndpoint,
  applyModel,
  inService,
  k8s,
  runController,
  user,
  waitForEndpoint,
} from './ml.ts';
import { expectServed, installGatewayRelease, load, printReport, uninstallRelease, waitForGateway } from './traffic.ts';
import { servedModel } from './fixtures.ts';

let namespace: string;
let release: Release;
let proxy: ApiProxy;
let controller: ControllerProcess;

beforeAll(async () => {
  namespace = await createNamespace(admin, 'switch-faults');
  release = await installGatewayRelease(namespace, 'shared');
  proxy = await startApiProxy();
});
afterAll(async () => {
  await controller?.stop();
  await proxy?.close();
  await deleteNamespace(admin, namespace);
  if (release) await uninstallRelease(release);
});

const start = () => runController([namespace], { release, via: proxy });
const model = servedModel('faults');
/** The version and instance a model image will get: content hashes of the specs as stored (defaults filled in). */
async function instanceOf(image: string) {
  const storedModel = await user.get<KubeObject & { spec: MachineLearningModelSpec }>(resources.model, namespace, 'm');
  const storedConfig = await user.get<KubeObject & { spec: MachineLearningEndpointConfigSpec }>(
    resources.endpointConfig,
    namespace,
    'c',
  );
  const r = planFromTemplates('e', 'c', storedConfig!.spec, new Map([['m', { ...storedModel!.spec, image }]]));
  if (!r.ok) throw new Error('unresolved');
  return { version: r.plan.version, instance: r.plan.variants[0].instance };
}

describe('the controller killed at each step of a switch', () => {
  it('completes every switch with 0 failed requests', { timeout: 420_000 }, async () => {
    controller = await start();
    await applyModel(namespace, 'm', model('acme/m:1'));
    await applyConfig(namespace, 'c', { models: [{ model: 'm', instances: 2 }] });
    // The drain outlasts the gateway's reload (Traefik: a 2 s throttle, longer on a loaded machine).
    await applyEndpoint(namespace, 'e', { config: 'c', rollout: { drainSeconds: 8 } });
    await waitForEndpoint(namespace, 'e', 'InService', inService, 90_000);
    await waitForGateway(`e.${namespace}.models.example.com`);
    const run = load(`e.${namespace}.models.example.com`, {
      requests: 20_000,
      rate: 40,
      concurrency: 128,
      maxDurationMs: 240_000,
      sleepMs: (i) => (i % 10 === 0 ? 1500 : 0),
    });

    const steps: {
      name: string;
      fault: (
        next: { instance: string },
        previous: { instance: string },
      ) => { method: string; path: RegExp; when: 'before' | 'after' };
    }[] = [
      {
        name: 'after the new Deployment is written',
        fault: (next) => ({ method: 'PATCH', path: new RegExp(`/deployments/${next.instance}$`), when: 'after' }),
      },
      {
        name: 'after the route switched, before the status says so',
        fault: () => ({ method: 'PATCH', path: /\/httproutes\/e$/, when: 'after' }),
      },
      {
        name: 'after the status records the switch, before the old version is removed',
        fault: () => ({ method: 'PATCH', path: /\/machinelearningendpoints\/e\/status$/, when: 'after' }),
      },
      {
        name: 'before the first removal of the old version',
        fault: (_, previous) => ({
          method: 'DELETE',
          path: new RegExp(`/(deployments|services)/${previous.instance}$`),
          when: 'before',
        }),
      },
    ];
    let previous = await instanceOf('acme/m:1');
    const instances = [previous.instance];
    /** Each switch, from the change to the old version's removal, on the load's clock. */
    const spans: Span[] = [];
    for (const [i, step] of steps.entries()) {
      const image = `acme/m:${i + 2}`;
      const next = await instanceOf(image);
      instances.push(next.instance);
      const kill = { ...step.fault(next, previous), act: () => controller.child.kill('SIGKILL') };
      // The status write that records the switch is the first after the route's: arm it as the route's passes.
      const fired = step.name.startsWith('after the status')
        ? new Promise<string>(
            (resolve) =>
              void proxy.arm({
                method: 'PATCH',
                path: /\/httproutes\/e$/,
                when: 'observe',
                act: () => void proxy.arm(kill).then(resolve),
              }),
          )
        : proxy.arm(kill);
      const from = run.elapsed();
      await applyModel(namespace, 'm', model(image));
      const what = await fired;
      await controller.kill();
      process.stdout.write(`[faults] killed ${step.name}: ${what}\n`);
      controller = await start();
      const e = await waitForEndpoint(
        namespace,
        'e',
        `${next.version} serving after the kill ${step.name}`,
        (x) => inService(x) && x.status!.endpointConfigVersion === next.version && !x.status!.draining?.length,
        120_000,
      );
      expect(e.status!.traffic!.map((t) => t.service)).toEqual([next.instance]);
      await waitFor(`the old version ${previous.instance} removed`, 60_000, async () => {
        const pods = await admin
          .makeApiClient(k8s.CoreV1Api)
          .listNamespacedPod({ namespace, labelSelector: `ml-operator.dev/model-instance=${previous.instance}` });
        return pods.items.length === 0 ? true : undefined;
      });
      spans.push({
        name: `switch ${i + 1}, killed ${step.name}`,
        from,
        to: run.elapsed(),
        backends: [previous.instance, next.instance],
      });
      previous = next;
    }
    run.stop();
    const r = await run.done;
    printReport('four switches, the controller killed at a different step of each', r);
    expectServed(run, { backends: instances, namespace });
    // Every switch under load, and answered only by its old or its new version.
    for (const span of spans)
      process.stdout.write(
        `[faults] ${span.name}: ${((span.to - span.from) / 1000).toFixed(1)} s, ${run.samples.filter((x) => x.start >= span.from && x.start < span.to).length} requests sent in it\n`,
      );
    expect(coverageProblems(run.samples, spans, 40)).toEqual([]);
  });
});
