// What Istio itself makes of the Istio provider's objects: istiod (ci/cluster/istiod.ts) reads this
// test's namespace of the local cluster, and xds-reader, connected as the ingress gateway's proxy
// (a router node labelled istio: ingressgateway, the chart's default selector), receives what Envoy
// would run. At every state an endpoint goes through, the route for its host on the gateway's
// listener on port 80 must be what its status says: a route per variant of the serving version for
// requests that name it (x-ml-variant) ahead of the weighted split of status.traffic, with exactly
// those weights, the shadows' mirrors at their percent, and each cluster resolving (EDS) to the ready
// pods of its Service and nothing else; nothing for an endpoint that is gone. Only this file starts
// istiod; the other test files do without it.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createCertificateAuthority } from '../../ci/cluster/certs.ts';
import { istioNamespace, startIstiod, type Istiod } from '../../ci/cluster/istiod.ts';
import type { ControllerProcess, Release } from '../../ci/cluster/operator.ts';
import type { MachineLearningEndpoint, MachineLearningEndpointRollout } from '../../controller/src/api/generated.ts';
import { resources, type KubeObject } from '../../controller/src/kube/resources.ts';
import { waitFor } from '../../ci/wait.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import {
  admin,
  applyConfig,
  applyEndpoint,
  applyModel,
  artifact,
  getEndpoint,
  inService,
  k8s,
  runController,
  user,
  waitForEndpoint,
} from './ml.ts';
import { prometheus } from './prometheus.ts';
import { installRelease, uninstallRelease } from './traffic.ts';
import { clusterOf, expectedHost, programmedHost, readXds, tlsSecretsFor, XdsWatch } from './xds.ts';

let namespace: string;
let dir: string;
let istiod: Istiod;
let xds: XdsWatch;
let controller: ControllerProcess | undefined;
// A second release of the chart, in a namespace of its own: HTTPS from a credentialName, and metric
// gates on the cluster's Prometheus (for an automatic rollback).
let tlsNamespace: string;
let tlsRelease: Release | undefined;
let tlsController: ControllerProcess | undefined;
const credentialName = 'ml-xds-tls';

beforeAll(async () => {
  namespace = await createNamespace(admin, 'istio-xds');
  tlsNamespace = await createNamespace(admin, 'istio-xds-tls');
  dir = mkdtempSync(join(tmpdir(), 'istio-xds-'));
  istiod = await startIstiod({
    kubeconfigPath: inject('kubeconfigPath'),
    network: inject('network'),
    dir,
    namespaces: [namespace, tlsNamespace],
    progress: (m) => process.stdout.write(`[istiod] ${m}\n`),
  });
  xds = new XdsWatch(istiod.xdsAddress);
  controller = await runController([namespace]);
  // The certificate the gateway serves, in the ingress gateway's namespace, as Istio expects it.
  const cert = createCertificateAuthority(dir).issue('gateway', [`*.${tlsNamespace}.models.example.com`]);
  await admin.makeApiClient(k8s.CoreV1Api).createNamespacedSecret({
    namespace: istioNamespace,
    body: {
      metadata: { name: credentialName },
      type: 'kubernetes.io/tls',
      stringData: { 'tls.crt': readFileSync(cert.certFile, 'utf8'), 'tls.key': readFileSync(cert.keyFile, 'utf8') },
    },
  });
  tlsRelease = await installRelease(
    tlsNamespace,
    [
      'controller.config.gateway.tls.enabled=true',
      `controller.config.gateway.tls.credentialName=${credentialName}`,
      `controller.config.prometheus.url=${prometheus().url}`,
    ],
    'istio-tls',
  );
  tlsController = await runController([tlsNamespace], { release: tlsRelease });
});
afterAll(async () => {
  xds?.close();
  await controller?.stop();
  await tlsController?.stop();
  await istiod?.stop();
  if (namespace) await deleteNamespace(admin, namespace);
  if (tlsNamespace) await deleteNamespace(admin, tlsNamespace);
  if (tlsRelease) await uninstallRelease(tlsRelease);
  await admin
    .makeApiClient(k8s.CoreV1Api)
    .deleteNamespacedSecret({ name: credentialName, namespace: istioNamespace })
    .catch(() => undefined);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const model = (image: string, env: Record<string, string> = {}) => ({
  image,
  artifact: artifact('istio-xds'),
  readinessPath: '/healthz',
  env: Object.entries(env).map(([name, value]) => ({ name, value })),
});

/** The route istiod programs for the endpoint's host (on the listener of `port`) equals what its status says, now. */
async function checkProgrammed(e: MachineLearningEndpoint, what: string, port = 80) {
  const host = e.status!.host!;
  const programmed = await xds.programs(
    host,
    async () => expectedHost(await getEndpoint(e.metadata.namespace!, e.metadata.name!)),
    what,
    20_000,
    port,
  );
  process.stdout.write(
    `[istio-xds] ${e.metadata.name} ${what} (port ${port}): ${JSON.stringify(programmed?.routes)}\n`,
  );
  return programmed!;
}

const splitWeights = (p: { routes: { clusters: { weight: number }[] }[] }) =>
  p.routes.at(-1)!.clusters.map((c) => c.weight);
const splitClusters = (p: { routes: { clusters: { name: string }[] }[] }) =>
  p.routes.at(-1)!.clusters.map((c) => c.name);

type VirtualService = KubeObject & {
  spec: {
    hosts: string[];
    gateways: string[];
    http: { name: string; route: { destination: { host: string; port: { number: number } }; weight: number }[] }[];
  };
};

describe('istiod programs the ingress gateway with what the endpoint status says', () => {
  it('first version, weights changed in place (push time measured), a blue/green switch, the endpoint deleted', async () => {
    const drainSeconds = 10;
    const rollout: MachineLearningEndpointRollout = { drainSeconds };
    await applyModel(namespace, 'bg-a', model('acme/a:1'));
    await applyModel(namespace, 'bg-b', model('acme/b:1'));
    await applyConfig(namespace, 'bg', {
      models: [
        { model: 'bg-a', weight: 3, instances: 2 },
        { model: 'bg-b', weight: 1 },
      ],
    });
    await applyEndpoint(namespace, 'bg', { config: 'bg', rollout });
    const first = await waitForEndpoint(namespace, 'bg', 'InService', inService, 90_000);
    const programmed = await checkProgrammed(first, 'first version');
    // Two variants: two header routes ahead of the split, 75/25, the first variant's two pods.
    expect(programmed.routes.map((r) => r.header ?? 'split')).toEqual([
      'x-ml-variant=bg-a',
      'x-ml-variant=bg-b',
      'split',
    ]);
    expect(programmed.routes[2].clusters.map((c) => c.weight)).toEqual([75, 25]);
    expect(programmed.endpoints[programmed.routes[2].clusters[0].name]).toHaveLength(2);

    // Weights changed in place, five times: the time from the VirtualService's change (seen by a
    // watch) to istiod's push of the route that carries it (the reader's receipt), each measured.
    const pushMs: number[] = [];
    for (const [a, b] of [
      [1, 1],
      [1, 3],
      [3, 1],
      [1, 1],
      [3, 1],
    ]) {
      const expectedWeights = [(100 * a) / (a + b), (100 * b) / (a + b)];
      let vsAt = 0;
      let pushedAt = 0;
      const stopXds = xds.onSnapshot((s) => {
        const split = programmedHost(s, first.status!.host!)?.routes.at(-1);
        if (!pushedAt && JSON.stringify(split?.clusters.map((c) => c.weight)) === JSON.stringify(expectedWeights))
          pushedAt = s.receivedAt.routes;
      });
      const watch = await new k8s.Watch(admin).watch(
        `/apis/networking.istio.io/v1/namespaces/${namespace}/virtualservices`,
        { fieldSelector: 'metadata.name=bg' },
        (_type: string, vs: VirtualService) => {
          const weights = vs.spec.http.find((h) => h.name === 'variants')?.route.map((r) => r.weight);
          if (!vsAt && JSON.stringify(weights) === JSON.stringify(expectedWeights)) vsAt = Date.now();
        },
        () => undefined,
      );
      try {
        await applyConfig(namespace, 'bg', {
          models: [
            { model: 'bg-a', weight: a, instances: 2 },
            { model: 'bg-b', weight: b },
          ],
        });
        const e = await waitForEndpoint(
          namespace,
          'bg',
          `weights ${a}:${b}`,
          (x) => inService(x) && x.status!.traffic!.map((t) => t.weight).join() === expectedWeights.join(),
        );
        // In place: the same model instances (Services), re-weighted.
        expect(e.status!.traffic!.map((t) => t.service)).toEqual(first.status!.traffic!.map((t) => t.service));
        await checkProgrammed(e, `weights ${a}:${b} in place`);
        expect(vsAt).toBeGreaterThan(0);
        expect(pushedAt).toBeGreaterThan(0);
        pushMs.push(pushedAt - vsAt);
      } finally {
        stopXds();
        watch.abort();
      }
    }
    const sorted = [...pushMs].sort((x, y) => x - y);
    process.stdout.write(
      `[istio-xds] weight change -> istiod push of the route (ms): ${pushMs.join(', ')} (min ${sorted[0]}, max ${sorted.at(-1)}); drain ${drainSeconds * 1000} ms\n`,
    );
    // The previous version's drain outlasts the push by far: a gateway has the new route long before the old pods go.
    expect(sorted.at(-1)!).toBeLessThan(drainSeconds * 1000);

    // Blue/green: a new version of bg-a that takes 5 s to get ready. Before the switch, all traffic
    // stays on the serving version; after it, on the new one while the old one drains; then the old
    // one is gone.
    await applyModel(namespace, 'bg-a', model('acme/a:2', { DEMO_READY_DELAY_SECONDS: '5' }));
    const updating = await waitForEndpoint(namespace, 'bg', 'Updating', (x) => x.status?.state === 'Updating');
    const before = await checkProgrammed(updating, 'before the switch (new version not ready)');
    const firstClusters = first.status!.traffic!.map((t) => clusterOf(namespace, t.service));
    expect(before.routes.at(-1)!.clusters.map((c) => c.name)).toEqual(firstClusters);
    const switched = await waitForEndpoint(
      namespace,
      'bg',
      'switched, draining',
      (x) =>
        x.status?.endpointConfigVersion !== first.status!.endpointConfigVersion &&
        (x.status?.draining?.length ?? 0) > 0,
      90_000,
    );
    const during = await checkProgrammed(switched, 'after the switch, the previous version draining');
    // bg-b's model version did not change: its Service serves both versions; bg-a's old one is gone from the route.
    const switchedClusters = switched.status!.traffic!.map((t) => clusterOf(namespace, t.service));
    expect(during.routes.at(-1)!.clusters.map((c) => c.name)).toEqual(switchedClusters);
    expect(switchedClusters).not.toContain(firstClusters[0]);
    const drained = await waitForEndpoint(
      namespace,
      'bg',
      'drained',
      (x) => inService(x) && (x.status?.draining?.length ?? 0) === 0,
      60_000,
    );
    await checkProgrammed(drained, 'after the drain');

    // Deleted: nothing is programmed for its host any more.
    await user.delete(resources.endpoint, namespace, 'bg');
    await xds.programs(first.status!.host!, async () => undefined, 'nothing (endpoint deleted)');
  });

  it('a Canary step: the split between the versions at the step percent, then all on the new one', async () => {
    const rollout: MachineLearningEndpointRollout = {
      strategy: 'Canary',
      canary: { percent: 20, bakeSeconds: 20 },
      drainSeconds: 2,
    };
    await applyModel(namespace, 'canary', model('acme/canary:1'));
    await applyConfig(namespace, 'canary', { models: [{ model: 'canary' }] });
    await applyEndpoint(namespace, 'canary', { config: 'canary', rollout });
    const v1 = await waitForEndpoint(namespace, 'canary', 'InService', inService, 90_000);
    await checkProgrammed(v1, 'first version');
    await applyModel(namespace, 'canary', model('acme/canary:2'));
    const step = await waitForEndpoint(
      namespace,
      'canary',
      'the 20% step',
      (x) => x.status?.rollout?.phase === 'Progressing' && x.status.rollout.weight === 20,
      90_000,
    );
    const atStep = await checkProgrammed(step, 'Canary step 20%');
    expect(atStep.routes.at(-1)!.clusters.map((c) => c.weight)).toEqual([80, 20]);
    const promoted = await waitForEndpoint(
      namespace,
      'canary',
      'promoted',
      (x) => inService(x) && x.status!.endpointConfigVersion !== v1.status!.endpointConfigVersion,
      90_000,
    );
    await checkProgrammed(promoted, 'promoted');
  });

  it('a shadow mirrored at its percent, and the variants named by header ahead of the split', async () => {
    await applyModel(namespace, 'sh-a', model('acme/sh-a:1'));
    await applyModel(namespace, 'sh-b', model('acme/sh-b:1'));
    await applyModel(namespace, 'sh-shadow', model('acme/sh-shadow:1'));
    await applyConfig(namespace, 'shadowed', {
      models: [
        { model: 'sh-a', weight: 1 },
        { model: 'sh-b', weight: 1 },
        { model: 'sh-shadow', shadow: { percent: 25 } },
      ],
    });
    await applyEndpoint(namespace, 'shadowed', { config: 'shadowed', rollout: { drainSeconds: 2 } });
    const e = await waitForEndpoint(
      namespace,
      'shadowed',
      'InService, mirrored',
      (x) => inService(x) && x.status?.shadows?.[0]?.mirrored === true,
      90_000,
    );
    const programmed = await checkProgrammed(e, 'shadow mirrored');
    expect(programmed.routes.map((r) => r.header ?? 'split')).toEqual([
      'x-ml-variant=sh-a',
      'x-ml-variant=sh-b',
      'split',
    ]);
    expect(programmed.routes.at(-1)!.mirrors).toEqual([
      { cluster: clusterOf(namespace, e.status!.shadows![0].service), percent: 25 },
    ]);
    expect(programmed.endpoints[clusterOf(namespace, e.status!.shadows![0].service)]).toHaveLength(1);
    // Inside the mesh, a sidecar is programmed nothing for the endpoint's host: its VirtualService
    // binds only the endpoint's Gateway. The same sidecar does get the model Services' own routes,
    // so the reader is seeing a sidecar's configuration.
    const sidecar = await readXds(istiod.xdsAddress, [
      '--type=sidecar',
      `--namespace=${namespace}`,
      '--name=client',
      '--labels=app=client',
      '--ip=198.18.255.201',
    ]);
    expect(programmedHost(sidecar, e.status!.host!)).toBeUndefined();
    const serviceHost = `${e.status!.traffic![0].service}.${namespace}.svc.cluster.local`;
    expect(sidecar.routes.flatMap((r) => r.virtual_hosts ?? []).some((v) => v.domains.includes(serviceHost))).toBe(
      true,
    );
  });

  it('each Linear step: the split at 40%, then 80%, then all on the new version', async () => {
    const rollout: MachineLearningEndpointRollout = {
      strategy: 'Linear',
      linear: { stepPercent: 40, intervalSeconds: 10 },
      drainSeconds: 2,
    };
    await applyModel(namespace, 'linear', model('acme/linear:1'));
    await applyConfig(namespace, 'linear', { models: [{ model: 'linear' }] });
    await applyEndpoint(namespace, 'linear', { config: 'linear', rollout });
    const v1 = await waitForEndpoint(namespace, 'linear', 'InService', inService, 90_000);
    const v1Clusters = splitClusters(await checkProgrammed(v1, 'first version'));
    await applyModel(namespace, 'linear', model('acme/linear:2'));
    for (const [step, weight] of [
      [1, 40],
      [2, 80],
    ] as const) {
      const e = await waitForEndpoint(
        namespace,
        'linear',
        `Linear step ${step} (${weight}%)`,
        (x) => x.status?.rollout?.phase === 'Progressing' && x.status.rollout.weight === weight,
        90_000,
      );
      const atStep = await checkProgrammed(e, `Linear step ${step} (${weight}%)`);
      // The serving version first, then the new one, at the step's weights.
      expect(splitWeights(atStep)).toEqual([100 - weight, weight]);
      expect(splitClusters(atStep)[0]).toBe(v1Clusters[0]);
    }
    const promoted = await waitForEndpoint(
      namespace,
      'linear',
      'promoted',
      (x) => inService(x) && x.status!.endpointConfigVersion !== v1.status!.endpointConfigVersion,
      90_000,
    );
    const after = await checkProgrammed(promoted, 'promoted');
    expect(splitWeights(after)).toEqual([100]);
    expect(splitClusters(after)).not.toContain(v1Clusters[0]);
  });

  it("HostConflict: the second endpoint claiming a host routes nothing, istiod keeps the holder's route; the second takes over when the holder goes", async () => {
    const host = `shared.${namespace}.ml.example.com`;
    await applyModel(namespace, 'hc-a', model('acme/hc-a:1'));
    await applyModel(namespace, 'hc-b', model('acme/hc-b:1'));
    await applyConfig(namespace, 'hc-a', { models: [{ model: 'hc-a' }] });
    await applyConfig(namespace, 'hc-b', { models: [{ model: 'hc-b' }] });
    await applyEndpoint(namespace, 'hc-a', { config: 'hc-a', host, rollout: { drainSeconds: 2 } });
    const holder = await waitForEndpoint(namespace, 'hc-a', 'InService', inService, 90_000);
    await checkProgrammed(holder, 'the holder of the host');
    await applyEndpoint(namespace, 'hc-b', { config: 'hc-b', host, rollout: { drainSeconds: 2 } });
    const refused = await waitForEndpoint(
      namespace,
      'hc-b',
      'refused the host',
      (x) => x.status?.conditions?.some((c) => c.type === 'Ready' && c.reason === 'HostConflict') === true,
      60_000,
    );
    expect(refused.status?.traffic ?? []).toEqual([]);
    // Still exactly the holder's route for the host: hc-b's Services appear nowhere.
    const kept = await xds.programs(
      host,
      async () => expectedHost(await getEndpoint(namespace, 'hc-a')),
      "the holder's route while hc-b is refused",
    );
    expect(JSON.stringify(kept)).not.toContain('hc-b');
    await user.delete(resources.endpoint, namespace, 'hc-a');
    const takenOver = await waitForEndpoint(
      namespace,
      'hc-b',
      'InService after the holder is deleted',
      inService,
      90_000,
    );
    const now = await checkProgrammed(takenOver, 'the host taken over by hc-b');
    expect(JSON.stringify(now)).not.toContain('hc-a');
    await user.delete(resources.endpoint, namespace, 'hc-b');
    await xds.programs(host, async () => undefined, 'nothing (both deleted)');
  });

  it('HTTPS from credentialName: the listener on 443 presents the Secret for the host and routes as port 80 does', async () => {
    await applyModel(tlsNamespace, 'secure', model('acme/secure:1'));
    await applyConfig(tlsNamespace, 'secure', { models: [{ model: 'secure' }] });
    await applyEndpoint(tlsNamespace, 'secure', { config: 'secure', rollout: { drainSeconds: 2 } });
    const e = await waitForEndpoint(tlsNamespace, 'secure', 'InService', inService, 90_000);
    const http = await checkProgrammed(e, 'first version');
    const https = await checkProgrammed(e, 'first version', 443);
    expect(https.routes).toEqual(http.routes);
    expect(tlsSecretsFor(xds.latest!, e.status!.host!)).toEqual([`kubernetes://${credentialName}`]);
    // No certificate is presented for a host the endpoint does not serve.
    expect(tlsSecretsFor(xds.latest!, `other.${tlsNamespace}.models.example.com`)).toEqual([]);
  });

  it('an automatic rollback: a failing metric gate returns the split to the serving version', async () => {
    const rollout: MachineLearningEndpointRollout = {
      strategy: 'Canary',
      canary: { percent: 30, bakeSeconds: 120 },
      drainSeconds: 2,
      // Always outside its bound: the second evaluation (5 s apart) fails the step.
      analysis: { checks: [{ name: 'always-fails', query: 'vector(1)', max: 0, intervalSeconds: 5, failureLimit: 1 }] },
    };
    await applyModel(tlsNamespace, 'risky', model('acme/risky:1'));
    await applyConfig(tlsNamespace, 'risky', { models: [{ model: 'risky' }] });
    await applyEndpoint(tlsNamespace, 'risky', { config: 'risky', rollout });
    const v1 = await waitForEndpoint(tlsNamespace, 'risky', 'InService', inService, 90_000);
    const v1Clusters = splitClusters(await checkProgrammed(v1, 'first version'));
    await applyModel(tlsNamespace, 'risky', model('acme/risky:2'));
    const step = await waitForEndpoint(
      tlsNamespace,
      'risky',
      'the 30% step',
      (x) => x.status?.rollout?.phase === 'Progressing' && x.status.rollout.weight === 30,
      90_000,
    );
    expect(splitWeights(await checkProgrammed(step, 'Canary step 30%'))).toEqual([70, 30]);
    const rolledBack = await waitForEndpoint(
      tlsNamespace,
      'risky',
      'rolled back',
      (x) => x.status?.rollout?.phase === 'RolledBack',
      60_000,
    );
    const after = await checkProgrammed(rolledBack, 'rolled back');
    expect(splitClusters(after)).toEqual(v1Clusters);
    expect(splitWeights(after)).toEqual([100]);
  });

  it('catches a deliberately wrong VirtualService: a wrong port, a Gateway of another namespace, a host that does not match', async () => {
    const e = await waitForEndpoint(namespace, 'shadowed', 'InService', inService);
    const host = e.status!.host!;
    const live = (await user.get<VirtualService>(resources.virtualService, namespace, 'shadowed'))!;
    // The controller stops; its VirtualService is replaced by hand-written ones for the same endpoint.
    await controller!.stop();
    controller = undefined;
    await user.delete(resources.virtualService, namespace, 'shadowed');
    await xds.programs(host, async () => undefined, 'nothing (VirtualService deleted)');
    const objects = k8s.KubernetesObjectApi.makeApiClient(admin);
    const write = async (name: string, spec: VirtualService['spec']) => {
      await objects.create({
        apiVersion: 'networking.istio.io/v1',
        kind: 'VirtualService',
        metadata: { name, namespace },
        spec,
      });
    };
    const remove = (name: string) => user.delete(resources.virtualService, namespace, name);

    // A control: the controller's own spec, written by hand, passes.
    await write('control', live.spec);
    await checkProgrammed(e, "control (the controller's VirtualService, written by hand)");
    await remove('control');
    await xds.programs(host, async () => undefined, 'nothing (control removed)');

    const wrongPort = structuredClone(live.spec);
    for (const h of wrongPort.http) for (const r of h.route) r.destination.port.number = 8080;
    const wrong: [string, VirtualService['spec'], (p: ReturnType<typeof programmedHost>) => boolean][] = [
      // istiod programs it: routes to clusters of a port the Services lack, which resolve to no endpoint.
      [
        'wrong-port',
        wrongPort,
        (p) => Boolean(p?.routes.some((r) => r.clusters.some((c) => c.name.startsWith('outbound|8080||')))),
      ],
      // Bound to a Gateway of another namespace: the endpoint's Gateway serves nothing for the host.
      ['wrong-gateway', { ...live.spec, gateways: [`istio-system/${live.spec.gateways[0]}`] }, (p) => p === undefined],
      // A host the Gateway does not serve: nothing for the endpoint's host.
      ['wrong-host', { ...live.spec, hosts: [`typo-${host}`] }, (p) => p === undefined],
    ];
    for (const [name, spec, signature] of wrong) {
      await write(name, spec);
      // What istiod programs for it (its signature), and the check says it is not the endpoint's route.
      await waitFor(`istiod to program the ${name} VirtualService`, 20_000, async () =>
        xds.latest && signature(programmedHost(xds.latest, host)) ? true : undefined,
      );
      const caught = await xds
        .programs(host, async () => expectedHost(await getEndpoint(namespace, 'shadowed')), name, 3_000)
        .then(
          () => undefined,
          (err: unknown) => err as Error,
        );
      expect(caught?.message, `${name} must fail the check`).toMatch(/expected:[\s\S]*received from istiod:/);
      process.stdout.write(`[istio-xds] ${name} caught: ${caught!.message.split('\n').slice(0, 60).join('\n')}\n`);
      await remove(name);
    }
  });
});
