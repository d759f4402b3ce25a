// Placement and identity of model pods on the local cluster: a tainted GPU node (a kwok node of this
// file's own, with nvidia.com/gpu capacity and the usual NoSchedule taint) takes a GPU variant that
// tolerates it through the chart's default and selects it, and nothing else; without the toleration
// the pods stay Pending and the endpoint says why; pull secrets reach the pods; a root image runs
// where Pod Security allows it and is refused, visibly, where it does not; a variant with several
// replicas has a disruption budget that goes when it is down to one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerProcess, Release } from '../../ci/cluster/operator.ts';
import { log } from '../../ci/log.ts';
import { waitFor } from '../../ci/wait.ts';
import type { MachineLearningEndpoint } from '../../controller/src/api/generated.ts';
import { resources, type KubeObject, type Resource } from '../../controller/src/kube/resources.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import {
  admin,
  applyConfig,
  applyEndpoint,
  applyModel,
  artifact,
  inService,
  list,
  runController,
  user,
  waitForEndpoint,
} from './ml.ts';
import { installGatewayRelease, uninstallRelease } from './traffic.ts';

const nodeResource: Resource = { group: '', version: 'v1', kind: 'Node', plural: 'nodes', namespaced: false };
const gpuNode = `kwok-gpu-${process.pid}`;
/** A /24 of the pod range that the cluster's own nodes (198.18.<i>.0/24, i < 250) never use. */
const gpuPodCidr = '198.18.200.0/24';
const poolLabel = 'ml-operator.dev/test-pool';

type Pod = KubeObject & {
  spec: { nodeName?: string; imagePullSecrets?: { name: string }[]; tolerations?: unknown[] };
  status?: { phase?: string };
};
type Condition = { type: string; status: string; reason: string; message: string };

let plain: string;
let baseline: string;
let restricted: string;
let release: Release;
let controller: ControllerProcess;

const podsOf = async (namespace: string, instance: string) =>
  ((await list(resources.pod, namespace)) as Pod[]).filter(
    (p) => p.metadata.labels?.['ml-operator.dev/model-instance'] === instance && !p.metadata.deletionTimestamp,
  );
const servedInstance = (e: MachineLearningEndpoint) => e.status!.traffic![0].service;
const condition = (e: MachineLearningEndpoint, type: string) =>
  e.status?.conditions?.find((c) => c.type === type) as Condition | undefined;
const model = (extra: Record<string, unknown> = {}) => ({
  image: 'acme/placement:1',
  artifact: artifact('placement'),
  readinessPath: '/healthz',
  ...extra,
});

beforeAll(async () => {
  log(
    'placement: a tainted GPU node of its own, three namespaces (one baseline, one restricted), a release and a controller',
  );
  await user.apply(nodeResource, {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: gpuNode,
      // kwok keeps it alive; the pod runtime serves the pods of nodes labelled type=kwok.
      annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
      labels: {
        'kubernetes.io/hostname': gpuNode,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        type: 'kwok',
        [poolLabel]: 'gpu',
      },
    },
    spec: {
      podCIDR: gpuPodCidr,
      podCIDRs: [gpuPodCidr],
      taints: [{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }],
    },
    status: {
      allocatable: { cpu: '32', memory: '128Gi', pods: '250', 'nvidia.com/gpu': '4' },
      capacity: { cpu: '32', memory: '128Gi', pods: '250', 'nvidia.com/gpu': '4' },
    },
  });
  await waitFor(`node ${gpuNode} Ready`, 60_000, async () => {
    const n = await user.get<KubeObject & { status?: { conditions?: { type: string; status: string }[] } }>(
      nodeResource,
      undefined,
      gpuNode,
    );
    return n?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? true : undefined;
  });
  // What a device plugin reports, and its address: the first of its /24, as for the cluster's own nodes.
  const gpus = { cpu: '32', memory: '128Gi', pods: '250', 'nvidia.com/gpu': '4' };
  await user.applyStatus(nodeResource, {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: gpuNode },
    status: {
      capacity: gpus,
      allocatable: gpus,
      addresses: [
        { type: 'InternalIP', address: '198.18.200.1' },
        { type: 'Hostname', address: gpuNode },
      ],
    },
  });
  await waitFor(`node ${gpuNode} with 4 GPUs`, 30_000, async () => {
    const n = await user.get<KubeObject & { status?: { allocatable?: Record<string, string> } }>(
      nodeResource,
      undefined,
      gpuNode,
    );
    return n?.status?.allocatable?.['nvidia.com/gpu'] === '4' ? true : undefined;
  });
  plain = await createNamespace(admin, 'placement');
  baseline = await createNamespace(admin, 'placement-baseline', { 'pod-security.kubernetes.io/enforce': 'baseline' });
  restricted = await createNamespace(admin, 'placement-restricted', {
    'pod-security.kubernetes.io/enforce': 'restricted',
  });
  // The chart's defaults: the nvidia.com/gpu toleration (not set here), and a pull secret for every model pod.
  release = await installGatewayRelease([plain, baseline, restricted], 'shared', [
    'controller.config.models.imagePullSecrets[0]=cluster-registry',
  ]);
  controller = await runController([plain, baseline, restricted], { release });
}, 240_000);

afterAll(async () => {
  await controller?.stop();
  for (const ns of [plain, baseline, restricted]) if (ns) await deleteNamespace(admin, ns);
  if (release) await uninstallRelease(release);
  // Other files share the cluster: the node goes, and with it the pods bound to it.
  await user.delete(nodeResource, undefined, gpuNode).catch(() => undefined);
  await waitFor(`node ${gpuNode} gone`, 60_000, async () =>
    (await user.get(nodeResource, undefined, gpuNode)) ? undefined : true,
  );
}, 180_000);

describe('placement', () => {
  it("schedules a GPU variant on the tainted GPU node through the chart's default toleration, and keeps other variants off it", async () => {
    await applyModel(plain, 'gpu', model());
    await applyModel(plain, 'cpu', model());
    await applyConfig(plain, 'c', {
      models: [
        { model: 'gpu', gpus: 1, instances: 2, nodeSelector: { [poolLabel]: 'gpu' } },
        { model: 'cpu', instances: 4, weight: 1 },
      ],
    });
    await applyEndpoint(plain, 'e', { config: 'c', rollout: { drainSeconds: 1 } });
    const e = await waitForEndpoint(plain, 'e', 'InService', inService, 180_000);
    const gpuInstance = e.status!.traffic!.find((t) => t.variant === 'gpu')!.service;
    const cpuInstance = e.status!.traffic!.find((t) => t.variant === 'cpu')!.service;
    const gpuPods = await podsOf(plain, gpuInstance);
    const cpuPods = await podsOf(plain, cpuInstance);
    log(
      `placement: GPU pods on ${gpuPods.map((p) => p.spec.nodeName).join(', ')}; CPU pods on ${cpuPods.map((p) => p.spec.nodeName).join(', ')}`,
    );
    expect(gpuPods.map((p) => p.spec.nodeName)).toEqual([gpuNode, gpuNode]);
    expect(gpuPods[0].spec.tolerations).toContainEqual({
      key: 'nvidia.com/gpu',
      operator: 'Exists',
      effect: 'NoSchedule',
    });
    expect(cpuPods).toHaveLength(4);
    expect(cpuPods.filter((p) => p.spec.nodeName === gpuNode)).toEqual([]);
    // The default spread puts the CPU variant's 4 replicas on both untainted nodes.
    expect(new Set(cpuPods.map((p) => p.spec.nodeName)).size).toBe(2);
    // Every model pod carries the chart's pull secret.
    for (const p of [...gpuPods, ...cpuPods]) expect(p.spec.imagePullSecrets).toEqual([{ name: 'cluster-registry' }]);

    // Both variants run more than one replica: each has a disruption budget, owned by the endpoint.
    const budgets = await list(resources.podDisruptionBudget, plain);
    expect(budgets.map((b) => b.metadata.name).sort()).toEqual([cpuInstance, gpuInstance].sort());
    const budget = budgets.find((b) => b.metadata.name === gpuInstance)! as KubeObject & {
      spec: { maxUnavailable: number };
    };
    expect(budget.spec.maxUnavailable).toBe(1);
    expect(budget.metadata.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'MachineLearningEndpoint', name: 'e', controller: true }),
    ]);

    // Down to one replica (in place: instances is not part of the version), its budget goes.
    await applyConfig(plain, 'c', {
      models: [
        { model: 'gpu', gpus: 1, instances: 2, nodeSelector: { [poolLabel]: 'gpu' } },
        { model: 'cpu', instances: 1, weight: 1 },
      ],
    });
    await waitFor('the one-replica variant without a disruption budget', 60_000, async () => {
      const names = (await list(resources.podDisruptionBudget, plain)).map((b) => b.metadata.name);
      return names.length === 1 && names[0] === gpuInstance ? true : undefined;
    });
  });

  it('leaves a GPU variant without the toleration Pending, and the endpoint says why with the scheduler’s words', async () => {
    await applyModel(plain, 'untolerated', model());
    await applyConfig(plain, 'u', {
      models: [{ model: 'untolerated', gpus: 1, tolerations: [], nodeSelector: { [poolLabel]: 'gpu' } }],
    });
    await applyEndpoint(plain, 'u', { config: 'u' });
    const e = await waitForEndpoint(
      plain,
      'u',
      'PodsScheduled False, Unschedulable',
      (x) => condition(x, 'PodsScheduled')?.reason === 'Unschedulable',
      90_000,
    );
    const c = condition(e, 'PodsScheduled')!;
    log(`placement: ${c.reason}: ${c.message}`);
    expect(c.status).toBe('False');
    // 1.30 names the taint ({nvidia.com/gpu: present}), later releases count them: "untolerated taint(s)".
    expect(c.message).toMatch(/untolerated taint/);
    expect(e.status!.state).not.toBe('InService');
    const pods = (await list(resources.pod, plain)) as Pod[];
    const pending = pods.filter((p) => p.metadata.labels?.['app.kubernetes.io/name'] === 'untolerated');
    expect(pending.length).toBeGreaterThan(0);
    for (const p of pending) {
      expect(p.status?.phase).toBe('Pending');
      expect(p.spec.nodeName).toBeUndefined();
    }
  });
});

describe('identity', () => {
  it("adds a model's pull secrets to the chart's", async () => {
    await applyModel(plain, 'private', model({ imagePullSecrets: ['team-registry'] }));
    await applyConfig(plain, 'p', { models: [{ model: 'private' }] });
    await applyEndpoint(plain, 'p', { config: 'p' });
    const e = await waitForEndpoint(plain, 'p', 'InService', inService, 120_000);
    const pods = await podsOf(plain, servedInstance(e));
    expect(pods.length).toBe(1);
    expect(pods[0].spec.imagePullSecrets).toEqual([{ name: 'cluster-registry' }, { name: 'team-registry' }]);
  });

  const root = () => model({ securityContext: { pod: { runAsUser: 0, runAsNonRoot: false } } });

  it('runs a root model that says so where Pod Security is baseline', async () => {
    await applyModel(baseline, 'root', root());
    await applyConfig(baseline, 'r', { models: [{ model: 'root' }] });
    await applyEndpoint(baseline, 'r', { config: 'r' });
    const e = await waitForEndpoint(baseline, 'r', 'InService', inService, 120_000);
    const [pod] = (await podsOf(baseline, servedInstance(e))) as (Pod & {
      spec: { securityContext?: Record<string, unknown> };
    })[];
    expect(pod.spec.securityContext).toMatchObject({ runAsUser: 0, runAsNonRoot: false });
    expect(condition(e, 'PodsScheduled')).toBeUndefined();
  });

  it('shows the Pod Security refusal of a root model in a restricted namespace on the endpoint', async () => {
    await applyModel(restricted, 'root', root());
    await applyConfig(restricted, 'r', { models: [{ model: 'root' }] });
    await applyEndpoint(restricted, 'r', { config: 'r' });
    const e = await waitForEndpoint(
      restricted,
      'r',
      'PodsScheduled False, FailedCreate',
      (x) => condition(x, 'PodsScheduled')?.reason === 'FailedCreate',
      90_000,
    );
    const c = condition(e, 'PodsScheduled')!;
    log(`placement: ${c.reason}: ${c.message}`);
    expect(c.message).toMatch(/violates PodSecurity "restricted:/);
    expect(c.message).toMatch(/runAsNonRoot/);
    expect(await list(resources.pod, restricted)).toEqual([]);
  });
});
