// The platform team's first hour, in real containers on the local cluster's real node: images and
// the chart come from an OCI registry in the cluster's network (containerd pulls, helm installs
// from oci://), the controller runs in a pod under PSS restricted with in-cluster config through
// the `kubernetes` Service, the real fetcher fetches real scikit-learn models, and predictions go
// through the gateway: an 80/20 split with every prediction kept by Data Capture in the cluster's
// object store (MinIO), read back by Python; a broken artifact that never takes traffic, a new model
// rolled out blue/green under load, and a controller upgrade under load that restarts no model.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane } from '../../ci/cluster/control-plane.ts';
import {
  readCapturesPython,
  startJourneyCapture,
  type CapturesRead,
  type JourneyCapture,
} from '../../ci/cluster/journey-capture.ts';
import { serviceAccountOf } from '../../ci/cluster/operator.ts';
import {
  buildJourneyImages,
  irisExamples,
  onRealNode,
  prepareRealJourney,
  type RealJourney,
} from '../../ci/cluster/real-journey.ts';
import { buildControllerImage, pushImage } from '../../ci/image/build.ts';
import { log } from '../../ci/log.ts';
import {
  binomialInterval,
  describeReport,
  type LoadOptions,
  type LoadRun,
  type Sample,
} from '../../ci/traffic/load.ts';
import { waitFor } from '../../ci/wait.ts';
import { backendsOf, expectServed } from './served.ts';

const endpointName = 'iris';
let cluster: ControlPlane;
let journey: RealJourney;
let capture: JourneyCapture;
let core: k8s.CoreV1Api;
let release: RealJourney['release'];
let models: string;
const timings: Record<string, number> = {};
/** Predictions sent while waiting for the first answer through the gateway. */
let probes = 0;
/** The answers each model gave to the 500 predictions of the 80/20 test. */
let split: Record<string, number> = {};
const started = Date.now();

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

beforeAll(async () => {
  // The images build (layer cache) while the cluster starts.
  const images = buildJourneyImages();
  cluster = await startControlPlane({ realNode: true, observability: false, nodes: 1 });
  core = cluster.kubeConfig().makeApiClient(k8s.CoreV1Api);
  const built = await images;
  timings.imageBuilds = built.seconds * 1000;
  journey = await prepareRealJourney(cluster, built);
  timings.pushes = journey.pushSeconds * 1000;
  ({ release, models } = journey);
  capture = await startJourneyCapture(cluster, journey);
  log(
    `real journey: images built in ${seconds(timings.imageBuilds)}, pushed with the chart in ${seconds(timings.pushes)}`,
  );
}, 1_500_000);

afterAll(async () => {
  log(
    `real journey: total ${seconds(Date.now() - started)}; timings: ${JSON.stringify(Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, seconds(v)])))}`,
  );
  await journey?.stop().catch(() => undefined);
  await capture?.stop().catch(() => undefined);
  await cluster?.stop();
});

async function controllerPod(): Promise<k8s.V1Pod | undefined> {
  const pods = await core.listNamespacedPod({ namespace: release.namespace });
  return pods.items.find(
    (p) =>
      !p.metadata?.deletionTimestamp && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
  );
}

async function leaseHolder(): Promise<string | undefined> {
  const coordination = cluster.kubeConfig().makeApiClient(k8s.CoordinationV1Api);
  const lease = await coordination
    .readNamespacedLease({ name: `${release.name}-controller`, namespace: release.namespace })
    .catch(() => undefined);
  return lease?.spec?.holderIdentity ?? undefined;
}

async function podsExplain(namespace: string): Promise<string> {
  const pods = await core.listNamespacedPod({ namespace });
  return pods.items
    .map(
      (p) =>
        `${p.metadata?.name} on ${p.spec?.nodeName}: ${p.status?.phase} ${JSON.stringify(p.status?.initContainerStatuses?.map((s) => s.state))} ${JSON.stringify(p.status?.containerStatuses?.map((s) => s.state))}`,
    )
    .join('\n');
}

const model = (name: string, spec: Parameters<RealJourney['applyModel']>[1]) => journey.applyModel(name, spec);
const endpoint = async () => (await journey.endpoint(endpointName))!;
const predictions = (o: Partial<LoadOptions> & Pick<LoadOptions, 'requests' | 'maxDurationMs'>): LoadRun =>
  journey.predictions(endpointName, o);

const expected = irisExamples.map((e) => e.label);
/** A prediction is right when it gives each flower its species. */
const rightLabels = (s: Sample) =>
  JSON.stringify(s.backend?.labels) === JSON.stringify(expected)
    ? undefined
    : `labels ${JSON.stringify(s.backend?.labels)}, expected ${JSON.stringify(expected)}`;
/** Every prediction answered, by a pod of the endpoint's instances (`backends`), right and in time. */
const expectPredicted = (run: LoadRun, backends: string[]) => expectServed(run, { backends, answer: rightLabels });

/** Model pods (those of the models namespace), by UID with their containers' restart counts. */
async function modelPods(): Promise<Map<string, number>> {
  const pods = await core.listNamespacedPod({ namespace: models });
  return new Map(
    pods.items
      .filter((p) => !p.metadata?.deletionTimestamp)
      .map((p) => [p.metadata!.uid!, (p.status?.containerStatuses ?? []).reduce((n, c) => n + c.restartCount, 0)]),
  );
}

/** Waits until the models namespace holds only the serving version's pods (`count`), all Ready: drained versions are gone. */
async function settledModelPods(count: number): Promise<k8s.V1Pod[]> {
  return waitFor(
    `the models namespace to hold only the ${count} serving pods`,
    180_000,
    async () => {
      const pods = (await core.listNamespacedPod({ namespace: models })).items;
      return pods.length === count &&
        pods.every(
          (p) =>
            !p.metadata?.deletionTimestamp &&
            p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        )
        ? pods
        : undefined;
    },
    () => podsExplain(models),
  );
}

/** The kubelet's "Successfully pulled image" events of a namespace: image and how long the pull took. */
async function pulls(namespace: string): Promise<string[]> {
  const events = await core.listNamespacedEvent({ namespace });
  return events.items
    .filter((e) => e.reason === 'Pulled' && /Successfully pulled/.test(e.message ?? ''))
    .map((e) => e.message!.replace(/^Successfully pulled image /, ''));
}

describe("the platform team's first hour on real containers", () => {
  let installStarted = 0;

  it('installs the chart from the registry; the controller runs in a pod on the real node and holds the Lease', async () => {
    installStarted = Date.now();
    await journey.helmRelease('journey-1');
    timings.helmInstall = Date.now() - installStarted;
    const pod = await waitFor('the controller pod to be Ready', 180_000, controllerPod, () =>
      podsExplain(release.namespace),
    );
    timings.controllerReady = Date.now() - installStarted;
    log(`real journey: controller image pulls: ${(await pulls(release.namespace)).join('; ')}`);
    expect(pod.spec?.nodeName).toBe(cluster.realNode!.name);
    expect(pod.spec?.containers[0].image).toBe(`${journey.controllerRepository}:journey-1`);
    expect(pod.status?.containerStatuses?.[0].imageID).toMatch(
      new RegExp(`^${journey.registry.host.replace(/\./g, '\\.')}/ml-operator/controller@sha256:`),
    );
    const holder = await waitFor(
      'the controller to hold its Lease',
      60_000,
      async () => ((await leaseHolder()) === pod.metadata!.name ? true : undefined),
      async () => `holder: ${await leaseHolder()}`,
    );
    expect(holder).toBe(true);
    // Its requests reach the API server from the pod's own address: in-cluster config, through the
    // `kubernetes` Service's ClusterIP (in the serving certificate's names) and kube-proxy's rules.
    const username = `system:serviceaccount:${release.namespace}:${serviceAccountOf(release)}`;
    const sources = await waitFor("the controller's requests in the audit log", 30_000, async () => {
      const events = readFileSync(cluster.auditLogPath, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { user?: { username?: string }; sourceIPs?: string[] });
      const ips = new Set(events.filter((e) => e.user?.username === username).flatMap((e) => e.sourceIPs ?? []));
      return ips.size ? [...ips] : undefined;
    });
    log(`real journey: the controller's API requests come from ${sources.join(', ')} (its pod: ${pod.status?.podIP})`);
    expect(sources).toEqual([pod.status!.podIP]);
    log(
      `real journey: helm install ${seconds(timings.helmInstall)}, controller pod ${pod.metadata!.name} Ready on ${pod.spec?.nodeName} ${seconds(timings.controllerReady)} after the install started`,
    );
  }, 400_000);

  it('serves real predictions through the gateway, split 80/20 between two models', async () => {
    await model('iris-a', journey.irisModel(journey.artifacts['iris-1.0.0']));
    await model('iris-b', journey.irisModel(journey.artifacts['iris-2.0.0']));
    await journey.applyConfig('iris', {
      models: [
        { model: 'iris-a', weight: 80, instances: 1, cpus: '100m', memory: '256Mi', size: '64Mi', ...onRealNode },
        { model: 'iris-b', weight: 20, instances: 1, cpus: '100m', memory: '256Mi', size: '64Mi', ...onRealNode },
      ],
      // Every request and its answer kept (the next test reads them).
      dataCapture: capture.dataCapture(100),
    });
    await journey.applyEndpoint(endpointName, 'iris');
    await waitFor(
      'the endpoint to be InService',
      300_000,
      async () => ((await endpoint()).status?.state === 'InService' ? true : undefined),
      async () => `${JSON.stringify((await endpoint()).status?.conditions)}\n${await podsExplain(models)}`,
    );
    await waitFor('a first prediction through the gateway', 120_000, async () => {
      const r = await predictions({ requests: 1, maxDurationMs: 10_000, concurrency: 1 }).done;
      probes++;
      return r.failed === 0 ? true : undefined;
    });
    timings.installToFirstPrediction = Date.now() - installStarted;
    log(`real journey: helm install to the first prediction: ${seconds(timings.installToFirstPrediction)}`);
    log(`real journey: model image pulls: ${(await pulls(models)).join('; ')}`);
    // Real containers on the real node, the server image pulled from the registry, the artifact fetched by the fetcher.
    for (const p of await settledModelPods(2)) {
      expect(p.spec?.nodeName).toBe(cluster.realNode!.name);
      expect(p.status?.containerStatuses?.find((c) => c.image.includes('sklearn-server'))?.imageID).toMatch(
        new RegExp(`^${journey.registry.host.replace(/\./g, '\\.')}/ml-operator/sklearn-server@sha256:`),
      );
      expect(p.status?.initContainerStatuses?.map((c) => c.state?.terminated?.exitCode)).toEqual([0]);
    }

    const run = predictions({ requests: 500, maxDurationMs: 120_000, concurrency: 4 });
    const r = await run.done;
    log(`real journey: 500 predictions: ${describeReport(r)}`);
    expect(r.sent).toBe(500);
    expectPredicted(run, backendsOf(await endpoint()));
    const first = run.samples.filter((s) => s.backend?.model === 'iris/1.0.0').length;
    const second = run.samples.filter((s) => s.backend?.model === 'iris/2.0.0').length;
    expect(first + second).toBe(500);
    const [lo, hi] = binomialInterval(0.8, 500);
    log(
      `real journey: split iris/1.0.0 ${first}, iris/2.0.0 ${second} (share ${(first / 500).toFixed(3)}, 99.9% interval ${lo.toFixed(3)}-${hi.toFixed(3)})`,
    );
    expect(first / 500).toBeGreaterThanOrEqual(lo);
    expect(first / 500).toBeLessThanOrEqual(hi);
    split = { 'iris-a': first, 'iris-b': second };
  }, 600_000);

  it("keeps every prediction in the cluster's object store, as JSON Lines files Python reads", async () => {
    // The 500 predictions of the test before and its probes, the successful one at least.
    const stored = await capture.settled(endpointName, 501);
    const copies = join(cluster.dir, 'captures');
    const files = await capture.download(endpointName, copies);
    log(`real journey: ${stored} records in ${files.length} files of ${capture.where(endpointName)}`);
    const python = spawnSync('python3', ['-c', readCapturesPython, copies], { encoding: 'utf8' });
    expect(python.status, python.error?.message ?? python.stderr).toBe(0);
    const read = JSON.parse(python.stdout) as CapturesRead;
    log(
      `real journey: Python read ${JSON.stringify({ ...read, first: undefined })}; the first record: ${JSON.stringify(read.first)}`,
    );
    // Every request that reached a model: the 500 and the probes that were answered (a probe the
    // gateway refused before the route was ready never reached one).
    expect(read.files).toBe(files.length);
    expect(read.records).toBe(stored);
    expect(read.records).toBeGreaterThanOrEqual(501);
    expect(read.records).toBeLessThanOrEqual(500 + probes);
    // Each one's request as the client sent it, and the answer it got.
    expect(read.inputs).toEqual({ [JSON.stringify({ instances: irisExamples.map((e) => e.flower) })]: read.records });
    expect(read.labels).toEqual({ [JSON.stringify(expected)]: read.records });
    // Each model's records, as many as the answers it gave (the probes aside).
    for (const [variant, answered] of Object.entries(split)) {
      expect(read.variants[variant]).toBeGreaterThanOrEqual(answered);
      expect(read.variants[variant]).toBeLessThanOrEqual(answered + probes);
    }
    expect(read.first).toMatchObject({
      eventVersion: '0',
      captureData: {
        endpointInput: { mode: 'INPUT', encoding: 'JSON', observedContentType: 'application/json' },
        endpointOutput: { mode: 'OUTPUT', encoding: 'JSON' },
      },
      mlOperator: { endpoint: endpointName, status: 200 },
    });
  }, 300_000);

  it("keeps traffic on the serving version while a model's artifact cannot be fetched, and says why", async () => {
    const before = await endpoint();
    const serving = before.status?.endpointConfigVersion;
    expect(serving).toBeTruthy();
    const load = predictions({ requests: 10_000, maxDurationMs: 400_000, rate: 10 });
    try {
      await model(
        'iris-b',
        journey.irisModel(journey.artifacts['iris-2.0.0'], {
          artifact: journey.artifactUrl('/sklearn-iris/iris-9.9.9.tar.gz'),
          artifactSha256: undefined,
        }),
      );
      const stuck = await waitFor(
        'the new pod to fail in its fetcher',
        180_000,
        async () => {
          const pods = await core.listNamespacedPod({ namespace: models });
          return pods.items.find((p) =>
            p.status?.initContainerStatuses?.some(
              (s) => (s.lastState?.terminated?.exitCode ?? s.state?.terminated?.exitCode ?? 0) !== 0,
            ),
          );
        },
        () => podsExplain(models),
      );
      expect(stuck.status?.phase).toBe('Pending');
      const fetcher = stuck.status!.initContainerStatuses![0];
      const message = fetcher.lastState?.terminated?.message ?? fetcher.state?.terminated?.message ?? '';
      log(`real journey: the fetcher's error: ${message}`);
      expect(message).toMatch(/404|not found/i);
      const condition = await waitFor(
        'the endpoint to say the artifact could not be fetched',
        120_000,
        async () =>
          (await endpoint()).status?.conditions?.find((c) => c.type === 'ArtifactsFetched' && c.status === 'False'),
        async () => JSON.stringify((await endpoint()).status?.conditions),
      );
      expect(condition.reason).toBe('FetchFailed');
      expect(condition.message).toContain('iris-9.9.9');
      const e = await endpoint();
      expect(e.status?.state).toBe('Updating');
      expect(e.status?.endpointConfigVersion).toBe(serving);
      expect(e.status?.pendingEndpointConfigVersion).toBeTruthy();
      // Held there under traffic: the stuck version takes none, the serving one answers everything.
      const heldFrom = load.elapsed();
      await waitFor('10 s of traffic while the new version is stuck', 30_000, async () =>
        load.elapsed() - heldFrom > 10_000 ? true : undefined,
      );
      expect((await endpoint()).status?.endpointConfigVersion).toBe(serving);
      expect(
        stuck.metadata?.uid &&
          (await core.listNamespacedPod({ namespace: models })).items.find(
            (p) => p.metadata?.uid === stuck.metadata?.uid,
          )?.status?.phase,
      ).toBe('Pending');
      // Back to the artifact that works: the stuck version is dropped.
      await model('iris-b', journey.irisModel(journey.artifacts['iris-2.0.0']));
      await waitFor(
        'the endpoint to settle back',
        300_000,
        async () => {
          const now = await endpoint();
          return now.status?.state === 'InService' &&
            !now.status.pendingEndpointConfigVersion &&
            !now.status.conditions?.some((c) => c.type === 'ArtifactsFetched' && c.status === 'False')
            ? true
            : undefined;
        },
        async () => JSON.stringify((await endpoint()).status, null, 1),
      );
    } finally {
      load.stop();
    }
    const r = await load.done;
    log(`real journey: traffic while the artifact failed: ${describeReport(r)}`);
    expect(r.sent).toBeGreaterThan(50);
    // The stuck version took none: every answer came from the serving version's pods.
    expectPredicted(load, backendsOf(before));
  }, 800_000);

  it('rolls a new model artifact out blue/green under load without a failed request', async () => {
    const before = await endpoint();
    const load = predictions({ requests: 10_000, maxDurationMs: 400_000, rate: 10 });
    let switchedAt = 0;
    try {
      await model('iris-a', journey.irisModel(journey.artifacts['iris-2.0.0']));
      await waitFor(
        'every answer to come from the new model',
        360_000,
        async () => {
          const recent = load.samples.filter((s) => s.end > 0).slice(-30);
          return recent.length === 30 && recent.every((s) => s.backend?.model === 'iris/2.0.0') ? true : undefined;
        },
        async () => `${JSON.stringify((await endpoint()).status?.conditions)}\n${await podsExplain(models)}`,
      );
      switchedAt = load.elapsed();
      await waitFor('a few more answers', 30_000, async () =>
        load.samples.filter((s) => s.start > switchedAt && s.end > 0).length >= 30 ? true : undefined,
      );
      await settledModelPods(2);
    } finally {
      load.stop();
    }
    const r = await load.done;
    log(
      `real journey: blue/green under load (all answers from iris/2.0.0 ${seconds(switchedAt)} after the change): ${describeReport(r)}`,
    );
    expectPredicted(load, backendsOf(before, await endpoint()));
    expect(load.samples.filter((s) => s.start > switchedAt).every((s) => s.backend?.model === 'iris/2.0.0')).toBe(true);
  }, 500_000);

  it('upgrades the controller to a new image under load: the controller pod is replaced, no model pod restarts', async () => {
    const built = await buildControllerImage();
    await pushImage(built.image, journey.registry.host, 'ml-operator/controller', 'journey-2');
    const before = await controllerPod();
    await settledModelPods(2);
    const podsBefore = await modelPods();
    expect(podsBefore.size).toBe(2);
    const serving = backendsOf(await endpoint());
    const load = predictions({ requests: 10_000, maxDurationMs: 300_000, rate: 10 });
    let after: k8s.V1Pod | undefined;
    try {
      const upgradeStarted = Date.now();
      await journey.helmRelease('journey-2', { 'ml-operator.dev/upgraded-by': 'platform-team' });
      after = await waitFor(
        'the new controller pod to be Ready and hold the Lease',
        180_000,
        async () => {
          const p = await controllerPod();
          return p && p.metadata!.uid !== before!.metadata!.uid && (await leaseHolder()) === p.metadata!.name
            ? p
            : undefined;
        },
        () => podsExplain(release.namespace),
      );
      timings.controllerUpgrade = Date.now() - upgradeStarted;
      // The new controller reconciles everything once; give it a moment under load.
      const t = load.elapsed();
      await waitFor('20 s of traffic under the new controller', 60_000, async () =>
        load.elapsed() - t > 20_000 ? true : undefined,
      );
    } finally {
      load.stop();
    }
    const r = await load.done;
    log(
      `real journey: controller upgrade (${seconds(timings.controllerUpgrade)} to the new pod holding the Lease) under load: ${describeReport(r)}`,
    );
    expect(after.spec?.containers[0].image).toBe(`${journey.controllerRepository}:journey-2`);
    expect(await modelPods()).toEqual(podsBefore);
    expectPredicted(load, serving);
  }, 600_000);
});
