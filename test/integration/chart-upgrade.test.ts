// `helm upgrade` from the last published release to the working tree, then `helm rollback`, as a
// platform team does it, with endpoints serving under load. The published release (its commit is
// recorded in ci/release/published.ts) is rebuilt from git, chart and controller, packaged and
// pushed to a local OCI registry with the release scripts, and installed from there; the working
// tree is packaged as the next release would be (version bumped on a copy) and pushed beside it.
// Each release's controller runs in a pod on the cluster's real node (ci/cluster/real-node.ts: a kubelet
// with containerd), from its own image: the published one built from the release's tree
// (buildReleaseControllerImage, cached by commit), the next one from the working tree; the chart's own
// rolling update hands over, and the Lease is watched all along: the old leader keeps it until the new
// pod takes it, both ways. Requests go straight to the model pods' addresses, because the published
// release routes with Istio only and no Envoy runs here; the VirtualServices are watched instead: they
// must only ever name Services with Ready pods. An endpoint made between the upgrade and the rollback
// shows what each controller makes of the other's versions.
//
// This file runs its own control plane. CRDs are cluster-wide and belong to one release: the run's
// shared cluster has the working tree's CRDs, owned by its release and used by the other test files
// in their new fields, so it can neither take the published CRDs nor see them rolled back.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishArtifact } from '../../ci/cluster/artifacts.ts';
import { startControlPlane, type ControlPlane } from '../../ci/cluster/control-plane.ts';
import type { Release } from '../../ci/cluster/operator.ts';
import { realNodeLabel, realNodeTaint } from '../../ci/cluster/real-node.ts';
import { buildReleaseControllerImage, controllerImageArchive } from '../../ci/image/build.ts';
import { log } from '../../ci/log.ts';
import { bumpVersion } from '../../ci/release/bump-version.ts';
import { execOk } from '../../ci/exec.ts';
import { packageChart } from '../../ci/release/package.ts';
import { publishChart } from '../../ci/release/publish.ts';
import { lastPublished, requireCommit } from '../../ci/release/published.ts';
import { releaseVersion } from '../../ci/release/versions.ts';
import { toolPath } from '../../ci/tools/build.ts';
import type { DirectReport } from '../../ci/traffic/direct.ts';
import { waitFor } from '../../ci/wait.ts';
import type { MachineLearningEndpoint } from '../../controller/src/api/generated.ts';
import { KubeClient } from '../../controller/src/kube/client.ts';
import { resources, type KubeObject } from '../../controller/src/kube/resources.ts';
import { checkoutAt, copyCheckout, isolatedHelmEnv, repositoryRoot } from '../../ci/release/checkout.ts';
import { maxExtraMs } from './served.ts';
import { startRegistry, type Registry } from '../../ci/cluster/registry.ts';

const published = lastPublished;
/** What the next release would be called: the working tree, packaged as it would be released. */
const next = (() => {
  const [major, minor] = published.version.split('.').map(Number);
  return `${major}.${minor + 1}.0`;
})();
const release: Release = { name: 'ml-operator', namespace: 'ml-operator' };
/** Where both releases find their controller image: imported into the real node's containerd, never pulled. */
const imageRepository = 'localhost/ml-operator/controller';
/**
 * The user's values, the same at every step: one controller replica on the real node, with leader
 * election (0.1.0's chart turns it off for one replica unless asked; the working tree's turns it on).
 */
const userValues = {
  controller: {
    image: { repository: imageRepository },
    leaderElection: { enabled: true },
    podDisruptionBudget: { enabled: false },
    nodeSelector: { [realNodeLabel.key]: realNodeLabel.value },
    tolerations: [
      { key: realNodeTaint.key, operator: 'Equal', value: realNodeTaint.value, effect: realNodeTaint.effect },
    ],
  },
};
let values: string[];
const namespace = 'models';
/** Endpoints made under the published release, and the one made after the upgrade. */
const endpoints = ['a', 'b'];
const later = 'c';
/** Endpoints whose VirtualService is watched. */
const routed = [...endpoints];
const modelPort = 8080;

let scratch: string;
let helmEnv: NodeJS.ProcessEnv;
let cluster: ControlPlane;
let registry: Registry;
let kc: k8s.KubeConfig;
let user: KubeClient;
let chartRef: string;
let load: ChildProcess | undefined;

/** The controller image (which is the fetcher's) that a release's chart names by default. */
const fetcherImage = (version: string) => `${imageRepository}:${version}`;

const elapsed = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)}s`;

async function helm(args: string[]): Promise<string> {
  return (await execOk(toolPath('helm'), [`--kubeconfig=${cluster.kubeconfigPath}`, ...args], { env: helmEnv })).stdout;
}

beforeAll(async () => {
  requireCommit(published.commit);
  scratch = mkdtempSync(join(tmpdir(), 'ml-operator-chart-upgrade-'));
  helmEnv = isolatedHelmEnv(scratch);
  // The images build while the cluster starts.
  const images = Promise.all([
    buildReleaseControllerImage(published.commit, published.version, imageRepository),
    controllerImageArchive(join(scratch, 'images'), next, imageRepository),
  ]);
  images.catch(() => undefined);
  cluster = await startControlPlane({ realNode: true });
  kc = cluster.kubeConfig();
  user = new KubeClient(kc, { fieldManager: 'integration-test' });
  registry = await startRegistry(join(scratch, 'registry'));
  const oci = `oci://${registry.host}/charts`;

  // The published release, as it was packaged and pushed: its chart files at its commit.
  let started = Date.now();
  const old = checkoutAt(published.commit, join(scratch, `chart-${published.version}`));
  const oldArchive = await packageChart({
    root: old,
    outDir: join(scratch, 'dist'),
    helm: toolPath('helm'),
    env: helmEnv,
  });
  const pushedOld = await publishChart({
    registry: oci,
    root: old,
    archive: oldArchive,
    plainHttp: true,
    helm: toolPath('helm'),
    env: helmEnv,
  });
  // The working tree as its release would be: the version bumped on a copy, then the same scripts.
  const current = copyCheckout(join(scratch, 'chart-next'));
  await bumpVersion({ root: current, version: next, helm: toolPath('helm'), env: helmEnv });
  const pushedNext = await publishChart({
    registry: oci,
    root: current,
    plainHttp: true,
    helm: toolPath('helm'),
    env: helmEnv,
  });
  expect([pushedOld.version, pushedNext.version]).toEqual([published.version, next]);
  expect(releaseVersion(old)).toBe(published.version);
  chartRef = pushedOld.chart;
  log(
    `chart-upgrade: ${chartRef} ${published.version} (commit ${published.commit.slice(0, 7)}) and ${next} (working tree) pushed in ${elapsed(started)}`,
  );

  started = Date.now();
  const [publishedImage, nextImage] = await images;
  for (const image of [publishedImage, nextImage]) await cluster.realNode!.provideImage(image);
  log(
    `chart-upgrade: controller images ${publishedImage.name} (${publishedImage.cached ? 'from the cache' : `built from commit ${published.commit.slice(0, 7)}'s tree in ${publishedImage.seconds.toFixed(0)}s`}) and ${nextImage.name} (working tree, ${nextImage.seconds.toFixed(0)}s) on the real node ${elapsed(started)} after the charts were pushed`,
  );
  const valuesFile = join(scratch, 'values.json');
  writeFileSync(valuesFile, JSON.stringify(userValues));
  values = ['-f', valuesFile];
}, 1_500_000);

afterAll(async () => {
  if (load && load.exitCode === null && load.signalCode === null) load.kill('SIGKILL');
  await registry?.stop();
  await cluster?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

interface LeaseSeen {
  at: number;
  holder: string;
}

/** The controller pods of the release: name, when first seen Ready and when first seen terminating (ms since the watcher's start). */
interface ControllerPodSeen {
  ready?: number;
  terminating?: number;
  image: string;
}

/**
 * Polls the controller's Lease and pods every 100 ms until stopped: every change of the Lease's holder
 * ('' while nobody holds it), and when each controller pod became Ready and began to terminate.
 */
function watchControllers(): {
  t0: number;
  holders: LeaseSeen[];
  pods: Map<string, ControllerPodSeen>;
  errors: string[];
  stop(): Promise<void>;
} {
  const coordination = kc.makeApiClient(k8s.CoordinationV1Api);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const t0 = Date.now();
  const holders: LeaseSeen[] = [];
  const pods = new Map<string, ControllerPodSeen>();
  const errors: string[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        const lease = await coordination
          .readNamespacedLease({ name: `${release.name}-controller`, namespace: release.namespace })
          .catch((err: unknown) => {
            if (err instanceof k8s.ApiException && err.code === 404) return undefined;
            throw err;
          });
        const at = Date.now() - t0;
        const spec = lease?.spec;
        // A released Lease keeps its last holder's name with a duration of 1 s (or none): nobody holds it.
        const expired =
          !spec?.renewTime ||
          new Date(spec.renewTime).getTime() + (spec.leaseDurationSeconds ?? 0) * 1000 < Date.now() - 1000;
        const holder =
          spec?.holderIdentity && !expired && (spec.leaseDurationSeconds ?? 0) > 1 ? spec.holderIdentity : '';
        if (holders.at(-1)?.holder !== holder) holders.push({ at, holder });
        const list = await core.listNamespacedPod({ namespace: release.namespace });
        // One time for the whole list: a pod seen Ready and another seen terminating in the same
        // list were so at the same moment, whichever of them comes first in it.
        const listed = Date.now() - t0;
        for (const p of list.items) {
          const name = p.metadata!.name!;
          const seen = pods.get(name) ?? { image: p.spec!.containers[0].image! };
          pods.set(name, seen);
          if (seen.ready === undefined && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
            seen.ready = listed;
          if (seen.terminating === undefined && p.metadata!.deletionTimestamp) seen.terminating = listed;
        }
      } catch (err) {
        errors.push(`${((Date.now() - t0) / 1000).toFixed(1)}s: ${err instanceof Error ? err.message : String(err)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  return {
    t0,
    holders,
    pods,
    errors,
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/** The Ready controller pod that holds the Lease. */
async function leader(): Promise<{ name: string; image: string; uid: string }> {
  const coordination = kc.makeApiClient(k8s.CoordinationV1Api);
  const lease = await coordination.readNamespacedLease({
    name: `${release.name}-controller`,
    namespace: release.namespace,
  });
  const holder = lease.spec?.holderIdentity ?? '';
  const pods = (await kc.makeApiClient(k8s.CoreV1Api).listNamespacedPod({ namespace: release.namespace })).items;
  const pod = pods.find(
    (p) =>
      p.metadata!.name === holder &&
      !p.metadata!.deletionTimestamp &&
      p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
  );
  if (!pod)
    throw new Error(
      `the Lease names ${JSON.stringify(holder)}, which is no Ready controller pod (pods: ${pods.map((p) => p.metadata!.name).join(', ')})`,
    );
  return { name: holder, image: pod.spec!.containers[0].image!, uid: pod.metadata!.uid! };
}

/**
 * Waits until a controller pod other than `from` runs `image`, is Ready, holds the Lease and `from` is gone
 * (the rolling update of `helm upgrade` or `helm rollback`, whose --wait returns once the new pod is Ready).
 */
async function handedOver(from: string, image: string): Promise<{ name: string; uid: string }> {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  return waitFor(
    `a controller pod running ${image} to hold the Lease, and ${from} to be gone`,
    180_000,
    async () => {
      const l = await leader().catch(() => undefined);
      const pods = (await core.listNamespacedPod({ namespace: release.namespace })).items.map((p) => p.metadata!.name!);
      return l && l.name !== from && l.image === image && !pods.includes(from) ? l : undefined;
    },
    async () =>
      JSON.stringify(
        (await core.listNamespacedPod({ namespace: release.namespace })).items.map((p) => ({
          name: p.metadata!.name,
          image: p.spec!.containers[0].image,
          status: p.status?.containerStatuses,
        })),
      ),
  );
}

/**
 * What the Lease went through between `since` and `until` (ms of the watcher): the holders in turn, and
 * the longest time nobody held it. `from` must hold it until `to` takes it: the sequence is exactly
 * [from, to], with only a release between them.
 */
function leaseHandover(
  w: ReturnType<typeof watchControllers>,
  since: number,
  until: number,
): { holders: string[]; unheldMs: number } {
  const inWindow = w.holders.filter((h) => h.at >= since && h.at <= until);
  const atStart = w.holders.filter((h) => h.at < since).at(-1);
  const seq = [...(atStart ? [{ ...atStart, at: since }] : []), ...inWindow];
  let unheldMs = 0;
  for (let i = 0; i < seq.length; i++)
    if (seq[i].holder === '') unheldMs = Math.max(unheldMs, (seq[i + 1]?.at ?? until) - seq[i].at);
  return { holders: seq.map((h) => h.holder).filter((h) => h !== ''), unheldMs };
}

interface PodState {
  name: string;
  uid: string;
  ip: string;
  instance: string;
  restarts: number;
  ready: boolean;
}

const ofEndpoints = (names: string[]) =>
  `ml-operator.dev/model-instance,ml-operator.dev/endpoint in (${names.join(',')})`;

async function modelPods(names = endpoints): Promise<PodState[]> {
  const list = await kc
    .makeApiClient(k8s.CoreV1Api)
    .listNamespacedPod({ namespace, labelSelector: ofEndpoints(names) });
  return list.items
    .map((p) => ({
      name: p.metadata!.name!,
      uid: p.metadata!.uid!,
      ip: p.status?.podIP ?? '',
      instance: p.metadata!.labels!['ml-operator.dev/model-instance'],
      restarts: (p.status?.containerStatuses ?? []).reduce((n, c) => n + c.restartCount, 0),
      ready: p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** The fetcher each Deployment runs: its image, and whether it is given flags. */
async function fetchers(names = endpoints): Promise<Record<string, string>> {
  const list = await kc
    .makeApiClient(k8s.AppsV1Api)
    .listNamespacedDeployment({ namespace, labelSelector: ofEndpoints(names) });
  return Object.fromEntries(
    list.items.map((d) => {
      const init = d.spec!.template.spec!.initContainers!.find((c) => c.name === 'fetch-artifact')!;
      return [
        d.metadata!.name!,
        `${init.image} ${(init.args ?? []).some((a) => a.startsWith('--')) ? 'with flags' : 'URI TARGET'}`,
      ];
    }),
  );
}

/** The Deployments' generations: any change of their spec (a pod template, above all) bumps one. */
async function deploymentGenerations(names = endpoints): Promise<Record<string, number>> {
  const list = await kc
    .makeApiClient(k8s.AppsV1Api)
    .listNamespacedDeployment({ namespace, labelSelector: ofEndpoints(names) });
  return Object.fromEntries(
    list.items
      .map((d) => [d.metadata!.name!, d.metadata!.generation!])
      .sort(([a], [b]) => String(a).localeCompare(String(b))),
  );
}

async function endpointVersions(names = endpoints): Promise<Record<string, string | undefined>> {
  const out: Record<string, string | undefined> = {};
  for (const e of names) {
    const o = await user.get<MachineLearningEndpoint & KubeObject>(resources.endpoint, namespace, e);
    const ready =
      o?.status?.state === 'InService' && o.status.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
    out[e] = ready ? o.status!.endpointConfigVersion : `not in service: ${JSON.stringify(o?.status)}`;
  }
  return out;
}

/** Whether the served MachineLearningModel schema knows spec.artifactSha256 (added after 0.1.0): a strict dry-run create. */
async function servesArtifactSha256(): Promise<boolean> {
  const body = {
    apiVersion: 'ml-operator.dev/v1alpha1',
    kind: 'MachineLearningModel',
    metadata: { name: 'schema-probe', namespace },
    spec: {
      image: 'acme/probe:1',
      artifact: 'https://models.example.com/probe.tar.gz',
      artifactSha256: 'a'.repeat(64),
    },
  };
  try {
    await kc.makeApiClient(k8s.CustomObjectsApi).createNamespacedCustomObject({
      group: 'ml-operator.dev',
      version: 'v1alpha1',
      namespace,
      plural: 'machinelearningmodels',
      body,
      dryRun: 'All',
      fieldValidation: 'Strict',
    });
    return true;
  } catch (err) {
    const message =
      err instanceof k8s.ApiException ? (JSON.parse(String(err.body)) as { message?: string }).message : undefined;
    if (
      err instanceof k8s.ApiException &&
      err.code === 400 &&
      /unknown field "spec\.artifactSha256"/.test(message ?? '')
    )
      return false;
    throw err;
  }
}

/**
 * Polls every endpoint's VirtualService until stopped: each Service it names must exist and have a
 * Ready pod behind it. Returns what it saw.
 */
function watchRoutes(): {
  stop(): Promise<{ polls: number; violations: string[]; errors: string[]; services: Set<string> }>;
} {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  const violations: string[] = [];
  const errors: string[] = [];
  const services = new Set<string>();
  let polls = 0;
  let stopped = false;
  const t0 = Date.now();
  const loop = (async () => {
    while (!stopped && Date.now() - t0 < 900_000) {
      try {
        await poll();
      } catch (err) {
        errors.push(`${((Date.now() - t0) / 1000).toFixed(1)}s: ${err instanceof Error ? err.message : String(err)}`);
      }
      polls++;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  async function poll(): Promise<void> {
    for (const e of routed) {
      const vs = (await custom
        .getNamespacedCustomObject({
          group: 'networking.istio.io',
          version: 'v1',
          namespace,
          plural: 'virtualservices',
          name: e,
        })
        .catch((err: unknown) => {
          // The endpoint made after the upgrade has no route until its first version is Available.
          if (e === later && err instanceof k8s.ApiException && err.code === 404) return undefined;
          throw err;
        })) as { spec: { http: { route: { destination: { host: string } }[] }[] } } | undefined;
      if (!vs) continue;
      for (const host of vs.spec.http.flatMap((h) => h.route.map((r) => r.destination.host))) {
        const name = host.split('.')[0];
        services.add(name);
        const svc = await core.readNamespacedService({ name, namespace }).catch(() => undefined);
        const selector = Object.entries(svc?.spec?.selector ?? {})
          .map(([k, v]) => `${k}=${v}`)
          .join(',');
        const pods =
          svc && selector ? (await core.listNamespacedPod({ namespace, labelSelector: selector })).items : [];
        const ready = pods.filter((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
        if (ready.length === 0)
          violations.push(
            `${((Date.now() - t0) / 1000).toFixed(1)}s: VirtualService ${e} routes to ${host}, ${svc ? `which has no Ready pod (${pods.length} pods)` : 'which does not exist'}`,
          );
      }
    }
  }
  return {
    async stop() {
      stopped = true;
      await loop;
      return { polls, violations, errors, services };
    },
  };
}

/** Starts steady requests to each pod's own address, from inside the cluster's network namespace. */
async function startDirectLoad(pods: PodState[]): Promise<{ stop(): Promise<DirectReport> }> {
  const args = [
    join(repositoryRoot, 'ci', 'traffic', 'direct.ts'),
    '--rate=10',
    '--seconds=900',
    '--requests=9000',
    ...pods.map((p) => `--target=${p.name}=http://${p.ip}:${modelPort}/predict`),
  ];
  const [command, argv] = ['ip', ['netns', 'exec', cluster.network.namespace, process.execPath, ...args]];
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  load = child;
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitFor('the load to start', 30_000, async () => {
    if (child.exitCode !== null) throw new Error(`the load exited with ${child.exitCode}: ${err}`);
    return out.startsWith('sending\n') ? true : undefined;
  });
  return {
    async stop() {
      child.kill('SIGTERM');
      await exited;
      const line = out.split('\n').filter(Boolean).at(-1)!;
      if (child.exitCode !== 0) throw new Error(`the load exited with ${child.exitCode}: ${err}`);
      return JSON.parse(line) as DirectReport;
    },
  };
}

const apiVersion = 'ml-operator.dev/v1alpha1';

async function applyModel(m: string): Promise<void> {
  const path = `/upgrade-${m}.tar.gz`;
  publishArtifact(cluster.artifactsDir, path, { name: m, format: 'demo' });
  await user.apply(resources.model, {
    apiVersion,
    kind: 'MachineLearningModel',
    metadata: { name: m, namespace },
    spec: { image: `acme/${m}:1`, artifact: `https://models.example.com${path}`, readinessPath: '/healthz' },
  });
}

async function applyEndpoint(
  name: string,
  models: { model: string; weight: number; instances: number }[],
): Promise<void> {
  await user.apply(resources.endpointConfig, {
    apiVersion,
    kind: 'MachineLearningEndpointConfig',
    metadata: { name, namespace },
    spec: { models },
  });
  await user.apply(resources.endpoint, {
    apiVersion,
    kind: 'MachineLearningEndpoint',
    metadata: { name, namespace },
    spec: { config: name },
  });
}

async function applyWorkload(): Promise<void> {
  for (const m of ['m1', 'm2']) await applyModel(m);
  await applyEndpoint('a', [
    { model: 'm1', weight: 3, instances: 2 },
    { model: 'm2', weight: 1, instances: 1 },
  ]);
  await applyEndpoint('b', [{ model: 'm1', weight: 1, instances: 1 }]);
}

describe(`helm upgrade from ${published.version} (published) to the working tree, and helm rollback`, () => {
  it(
    'updates the CRDs, restarts no model pod of the published release, fails no request, and routes only to Ready pods, both ways',
    { timeout: 1_200_000 },
    async () => {
      let started = Date.now();
      await helm([
        'install',
        release.name,
        chartRef,
        '--version',
        published.version,
        '--plain-http',
        '-n',
        release.namespace,
        '--create-namespace',
        ...values,
        '--wait',
        '--timeout',
        '2m',
      ]);
      const installSeconds = elapsed(started);
      await kc.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
      expect(await servesArtifactSha256()).toBe(false);

      const first = await waitFor('the published controller to lead', 180_000, () => leader().catch(() => undefined));
      expect(first.image).toBe(fetcherImage(published.version));
      started = Date.now();
      await applyWorkload();
      await waitFor(
        'both endpoints in service',
        180_000,
        async () =>
          Object.values(await endpointVersions()).every((v) => v && !v.startsWith('not')) ? true : undefined,
        async () => JSON.stringify(await endpointVersions(), null, 2),
      );
      log(
        `chart-upgrade: ${published.version} installed in ${installSeconds}, endpoints in service ${elapsed(started)} after they were applied`,
      );
      const versions = await endpointVersions();
      const generations = await deploymentGenerations();
      const before = await modelPods();
      expect(before.map((p) => p.ready)).toEqual([true, true, true, true]);

      const routes = watchRoutes();
      const lease = watchControllers();
      const loadStartedAt = Date.now() - lease.t0;
      const traffic = await startDirectLoad(before);

      // helm upgrade to the next release: CRDs, RBAC, config; then the controllers' rolling update.
      started = Date.now();
      await helm([
        'upgrade',
        release.name,
        chartRef,
        '--version',
        next,
        '--plain-http',
        '-n',
        release.namespace,
        ...values,
        '--wait',
        '--timeout',
        '2m',
      ]);
      const upgradeSeconds = elapsed(started);
      const upgradeStarted = started - lease.t0;
      expect(await servesArtifactSha256()).toBe(true);
      started = Date.now();
      const upgraded = await handedOver(first.name, fetcherImage(next));
      const upgradeLease = leaseHandover(lease, upgradeStarted, Date.now() - lease.t0);
      // A rolling update of the model pods would bump a Deployment's generation at once, and replace
      // pods over the next seconds: look for a while.
      await new Promise((resolve) => setTimeout(resolve, 10_000));
      const upgradeHandover = elapsed(started);
      const afterUpgrade = {
        generations: await deploymentGenerations(),
        pods: await modelPods(),
        versions: await endpointVersions(),
        fetchers: await fetchers(),
      };

      // A version made after the upgrade gets the new release's fetcher; the running ones keep theirs.
      started = Date.now();
      await applyModel('m3');
      await applyEndpoint(later, [{ model: 'm3', weight: 1, instances: 2 }]);
      routed.push(later);
      await waitFor(
        `endpoint ${later} in service`,
        180_000,
        async () => ((await endpointVersions([later]))[later]?.startsWith('not') === false ? true : undefined),
        async () => JSON.stringify(await endpointVersions([later])),
      );
      const laterInService = elapsed(started);
      const laterBefore = {
        pods: await modelPods([later]),
        version: await endpointVersions([later]),
        fetchers: await fetchers([later]),
      };
      // A model with a field 0.1.0's schema does not have, written while the new schema is served.
      await user.apply(resources.model, {
        apiVersion,
        kind: 'MachineLearningModel',
        metadata: { name: 'with-digest', namespace },
        spec: { image: 'acme/d:1', artifact: 'https://models.example.com/d.tar.gz', artifactSha256: 'b'.repeat(64) },
      });

      started = Date.now();
      const rollbackStarted = started - lease.t0;
      await helm(['rollback', release.name, '1', '-n', release.namespace, '--wait', '--timeout', '2m']);
      const rollbackSeconds = elapsed(started);
      const servedAfterRollback = await servesArtifactSha256();
      started = Date.now();
      const rolledBack = await handedOver(upgraded.name, fetcherImage(published.version));
      const rollbackLease = leaseHandover(lease, rollbackStarted, Date.now() - lease.t0);
      await new Promise((resolve) => setTimeout(resolve, 10_000));
      const rollbackHandover = elapsed(started);
      const afterRollback = {
        generations: await deploymentGenerations(),
        pods: await modelPods(),
        versions: await endpointVersions(),
        fetchers: await fetchers(),
      };
      // The published controller renders the later version's Deployment its own way (its fetcher, no
      // flags): those pods are replaced, by a rolling update that keeps Ready pods behind the route.
      await waitFor(
        `endpoint ${later} in service, its pods on the published fetcher`,
        180_000,
        async () => {
          const f = await fetchers([later]);
          const pods = await modelPods([later]);
          const onPublished = Object.values(f).every((x) => x === `${fetcherImage(published.version)} URI TARGET`);
          return onPublished &&
            pods.length === 2 &&
            pods.every((p) => p.ready) &&
            (await endpointVersions([later]))[later]?.startsWith('not') === false
            ? true
            : undefined;
        },
        async () =>
          JSON.stringify({
            fetchers: await fetchers([later]),
            pods: await modelPods([later]),
            status: await endpointVersions([later]),
          }),
      );
      const laterAfter = { pods: await modelPods([later]), version: await endpointVersions([later]) };
      const digest = await user.get<KubeObject & { spec: Record<string, unknown> }>(
        resources.model,
        namespace,
        'with-digest',
      );

      const report = await traffic.stop();
      const seen = await routes.stop();
      await lease.stop();
      const podSeen = (name: string) => lease.pods.get(name) ?? ({} as ControllerPodSeen);
      const leaseTimes = (name: string) => lease.holders.filter((h) => h.holder === name).map((h) => h.at);
      const history = JSON.parse(await helm(['history', release.name, '-n', release.namespace, '-o', 'json'])) as {
        revision: number;
        chart: string;
        status: string;
        description: string;
      }[];

      const total = Object.values(report).reduce((n, r) => n + r.sent, 0);
      const failed = Object.values(report).reduce((n, r) => n + r.failed, 0);
      process.stdout.write(
        [
          `[chart-upgrade] helm install ${published.version} ${installSeconds}, upgrade to ${next} ${upgradeSeconds} + controller handover ${upgradeHandover}, rollback ${rollbackSeconds} + handover ${rollbackHandover}`,
          `[chart-upgrade] controller pods on the real node: ${first.name} (${published.version}) -> ${upgraded.name} (${next}) -> ${rolledBack.name} (${published.version}); ` +
            `seen Ready/terminating at (s of the watch): ${[first.name, upgraded.name, rolledBack.name].map((n) => `${n} ${JSON.stringify(podSeen(n))}`).join(', ')}`,
          `[chart-upgrade] Lease holders (s of the watch, '' = released): ${lease.holders.map((h) => `${(h.at / 1000).toFixed(1)} ${h.holder || "''"}`).join(', ')}`,
          `[chart-upgrade] upgrade: holders ${upgradeLease.holders.join(' -> ')}, unheld at most ${upgradeLease.unheldMs} ms; rollback: holders ${rollbackLease.holders.join(' -> ')}, unheld at most ${rollbackLease.unheldMs} ms`,
          `[chart-upgrade] requests straight to the pods (from ${(loadStartedAt / 1000).toFixed(1)}s of the watch on): ${total} sent, ${failed} failed, worst beyond the asked duration ${Math.round(Math.max(...Object.values(report).map((r) => r.worstExtraMs)))} ms`,
          ...Object.entries(report).map(
            ([pod, r]) =>
              `[chart-upgrade]   ${pod}: ${r.sent} sent, ${r.failed} failed, latency p50/p99/max ${r.latency.p50}/${r.latency.p99}/${r.latency.max} ms, answered by ${JSON.stringify(r.byPod)}${r.failures.length ? `, first failures ${JSON.stringify(r.failures.slice(0, 3))}` : ''}`,
          ),
          `[chart-upgrade] model pods before ${before.map((p) => `${p.name} (${p.uid.slice(0, 8)})`).join(', ')}`,
          `[chart-upgrade] after the upgrade ${afterUpgrade.pods.map((p) => `${p.name} (${p.uid.slice(0, 8)}, restarts ${p.restarts})`).join(', ')}`,
          `[chart-upgrade] after the rollback ${afterRollback.pods.map((p) => `${p.name} (${p.uid.slice(0, 8)}, restarts ${p.restarts})`).join(', ')}`,
          `[chart-upgrade] fetchers after the upgrade ${JSON.stringify(afterUpgrade.fetchers)}; of the version made after it ${JSON.stringify(laterBefore.fetchers)} (in service ${laterInService} after it was applied)`,
          `[chart-upgrade] endpoint ${later} (made after the upgrade) ${JSON.stringify(laterBefore.version)} -> ${JSON.stringify(laterAfter.version)}; pods ${laterBefore.pods.map((p) => p.uid.slice(0, 8)).join(', ')} -> ${laterAfter.pods.map((p) => p.uid.slice(0, 8)).join(', ')}`,
          `[chart-upgrade] after the rollback, a model written with spec.artifactSha256 reads ${digest?.spec.artifactSha256 === undefined ? 'without it' : 'with it'}`,
          `[chart-upgrade] Deployment generations ${JSON.stringify(generations)} -> ${JSON.stringify(afterUpgrade.generations)} -> ${JSON.stringify(afterRollback.generations)}`,
          `[chart-upgrade] VirtualServices polled ${seen.polls} times, naming ${[...seen.services].sort().join(', ')}; ${seen.violations.length} polls named a Service without a Ready pod`,
          `[chart-upgrade] helm history: ${history.map((h) => `${h.revision} ${h.chart} ${h.status} (${h.description})`).join('; ')}`,
          '',
        ].join('\n'),
      );

      expect(afterUpgrade.generations).toEqual(generations);
      expect(afterUpgrade.pods).toEqual(before);
      expect(afterUpgrade.versions).toEqual(versions);
      expect(new Set(Object.values(afterUpgrade.fetchers))).toEqual(
        new Set([`${fetcherImage(published.version)} URI TARGET`]),
      );
      expect(new Set(Object.values(laterBefore.fetchers))).toEqual(new Set([`${fetcherImage(next)} with flags`]));
      expect(afterRollback.generations).toEqual(generations);
      expect(afterRollback.pods).toEqual(before);
      expect(afterRollback.versions).toEqual(versions);
      expect(afterRollback.fetchers).toEqual(afterUpgrade.fetchers);
      expect(laterAfter.version).toEqual(laterBefore.version);
      expect(failed).toBe(0);
      for (const r of Object.values(report)) expect(r.worstExtraMs).toBeLessThanOrEqual(maxExtraMs);
      // The old leader keeps the Lease until the new pod takes it, both ways: exactly two holders in turn,
      // the old one still holding once the new pod was Ready (it hands over only on its way out), and no
      // more than a release and the new pod's next try (its retry period, 2 s) between them.
      expect(upgradeLease.holders).toEqual([first.name, upgraded.name]);
      expect(rollbackLease.holders).toEqual([upgraded.name, rolledBack.name]);
      for (const [from, to, unheldMs] of [
        [first.name, upgraded.name, upgradeLease.unheldMs],
        [upgraded.name, rolledBack.name, rollbackLease.unheldMs],
      ] as const) {
        expect(podSeen(to).ready, `${to} seen Ready`).toBeDefined();
        expect(podSeen(from).terminating, `${from} seen terminating`).toBeDefined();
        expect(podSeen(from).terminating!).toBeGreaterThanOrEqual(podSeen(to).ready!);
        // The new pod took the Lease only after the old one was told to stop.
        expect(Math.min(...leaseTimes(to))).toBeGreaterThanOrEqual(podSeen(from).terminating! - 200);
        expect(unheldMs).toBeLessThan(5000);
      }
      expect(lease.errors).toEqual([]);
      for (const p of before) expect(report[p.name].byPod).toEqual({ [p.name]: report[p.name].sent });
      // About 10 requests a second to each pod for the whole run.
      expect(Math.min(...Object.values(report).map((r) => r.sent))).toBeGreaterThan(100);
      expect(seen.violations).toEqual([]);
      expect(seen.errors).toEqual([]);
      expect(seen.polls).toBeGreaterThan(10);
      // The rollback restores the published CRDs, as it restores every template of revision 1.
      expect(servedAfterRollback).toBe(false);
      expect(history.map((h) => [h.revision, h.chart, h.status])).toEqual([
        [1, `ml-operator-${published.version}`, 'superseded'],
        [2, `ml-operator-${next}`, 'superseded'],
        [3, `ml-operator-${published.version}`, 'deployed'],
      ]);
    },
  );
});
