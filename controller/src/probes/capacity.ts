// The capacity probe: whether the namespace's quotas and the nodes can hold a new version beside the
// serving one, checked before anything of it is created.
import { quantityValue } from '../desired/compare.ts';
import { defaultGpuResource } from '../desired/objects.ts';
import type { VersionPlan } from '../desired/plan.ts';
import { KubeError, type KubeClient } from '../kube/client.ts';
import type { KubeObject } from '../kube/resources.ts';

type Reader = Pick<KubeClient, 'get' | 'list'>;

const resourceQuotaResource = {
  group: '',
  version: 'v1',
  kind: 'ResourceQuota',
  plural: 'resourcequotas',
  namespaced: true,
} as const;
const nodeResource = { group: '', version: 'v1', kind: 'Node', plural: 'nodes', namespaced: false } as const;

/**
 * Lists shared by the reconciles that ask while one is in flight: a burst of new endpoints checks
 * capacity against fewer lists of nodes and quotas. A list is never kept once answered, so a quota
 * created just before an endpoint is always seen.
 */
export class SharedLists {
  private readonly inFlight = new Map<string, Promise<KubeObject[]>>();
  private readonly client: Reader;

  constructor(client: Reader) {
    this.client = client;
  }

  list<T extends KubeObject>(
    r: { plural: string; group: string; version: string; kind: string; namespaced: boolean },
    namespace: string | undefined,
  ): Promise<T[]> {
    const key = `${r.plural}.${r.group}/${namespace ?? ''}`;
    const pending = this.inFlight.get(key);
    if (pending) return pending as Promise<T[]>;
    // The watch cache's copy: an estimate made before each new version, stale by moments at most.
    const items = this.client.list<T>(r, namespace, { resourceVersion: '0' }).then((l) => l.items);
    this.inFlight.set(key, items);
    const done = () => this.inFlight.delete(key);
    items.then(done, done);
    return items;
  }
}

/**
 * Whether the namespace's ResourceQuotas and the nodes can hold what the new version adds beside the
 * serving one: quota headroom for its pods, CPUs, memory and GPUs, and for each of its variants a
 * node whose allocatable resources fit one replica.
 */
export async function checkCapacity(
  lists: SharedLists,
  namespace: string,
  target: VersionPlan,
  serving: VersionPlan | undefined,
): Promise<{ ok: boolean; message: string }> {
  const shared = new Set(serving?.variants.map((v) => v.instance) ?? []);
  const added = target.variants.filter((v) => !shared.has(v.instance));
  if (added.length === 0) return { ok: true, message: 'nothing to add' };
  const per = (v: (typeof added)[number]) => ({
    cpu: quantityValue(v.variant.cpus ?? 0) ?? 0,
    memory: quantityValue(v.variant.memory ?? 0) ?? 0,
    gpu: v.variant.gpus ?? 0,
    gpuResource: v.variant.gpuResource ?? defaultGpuResource,
  });
  // GPUs count per resource name: a variant may ask for amd.com/gpu, another for nvidia.com/gpu.
  const gpus = new Map<string, number>();
  for (const v of added)
    if (v.variant.gpus)
      gpus.set(per(v).gpuResource, (gpus.get(per(v).gpuResource) ?? 0) + (v.variant.instances ?? 1) * v.variant.gpus);
  const total = added.reduce(
    (t, v) => {
      const n = v.variant.instances ?? 1;
      const p = per(v);
      return { pods: t.pods + n, cpu: t.cpu + n * p.cpu, memory: t.memory + n * p.memory, gpu: t.gpu + n * p.gpu };
    },
    { pods: 0, cpu: 0, memory: 0, gpu: 0 },
  );
  type Node = KubeObject & { spec?: { unschedulable?: boolean }; status?: { allocatable?: Record<string, string> } };
  // Both lists at once: one round trip.
  const nodesListed = lists.list<Node>(nodeResource, undefined);
  nodesListed.catch(() => undefined);
  const quotas = await lists.list<
    KubeObject & { status?: { hard?: Record<string, string>; used?: Record<string, string> } }
  >(resourceQuotaResource, namespace);
  for (const q of quotas) {
    const hard = q.status?.hard ?? {};
    const used = q.status?.used ?? {};
    for (const [key, need] of [
      ['pods', total.pods],
      ['requests.cpu', total.cpu],
      ['cpu', total.cpu],
      ['limits.cpu', total.cpu],
      ['requests.memory', total.memory],
      ['memory', total.memory],
      ['limits.memory', total.memory],
      ...[...gpus].map(([resource, n]) => [`requests.${resource}`, n] as const),
    ] as const) {
      if (hard[key] === undefined || need === 0) continue;
      const left = (quantityValue(hard[key]) ?? 0) - (quantityValue(used[key] ?? '0') ?? 0);
      if (need > left)
        return {
          ok: false,
          message: `ResourceQuota ${namespace}/${q.metadata.name} leaves ${formatAmount(key, left)} of ${key}, and the new version needs ${formatAmount(key, need)} beside the serving one`,
        };
    }
  }
  let nodes: Node[];
  try {
    nodes = await nodesListed;
  } catch (err) {
    // Installed with global.rbac.create=false and no right to list nodes: the quota check still holds.
    if (err instanceof KubeError && err.code === 403)
      return {
        ok: true,
        message: `the quota can hold ${total.pods} more pod(s); nodes not checked (no right to list them)`,
      };
    throw err;
  }
  const schedulable = nodes.filter((n) => !n.spec?.unschedulable);
  for (const v of added) {
    const p = per(v);
    // Only the nodes its nodeSelector picks can hold it.
    const selected = schedulable.filter((n) =>
      Object.entries(v.variant.nodeSelector ?? {}).every(([k, want]) => n.metadata.labels?.[k] === want),
    );
    const fits = selected.some((n) => {
      const a = n.status?.allocatable ?? {};
      return (
        (quantityValue(a.cpu ?? '0') ?? 0) >= p.cpu &&
        (quantityValue(a.memory ?? '0') ?? 0) >= p.memory &&
        (quantityValue(a[p.gpuResource] ?? '0') ?? 0) >= p.gpu
      );
    });
    if (!fits) {
      const which =
        v.variant.nodeSelector && Object.keys(v.variant.nodeSelector).length
          ? `the ${selected.length} schedulable node(s) its nodeSelector picks`
          : `the ${schedulable.length} schedulable node(s)`;
      return {
        ok: false,
        message: `no node can hold a replica of ${v.variant.model} (${p.cpu} CPUs, ${formatAmount('memory', p.memory)} memory${p.gpu ? `, ${p.gpu} ${p.gpuResource}` : ''}): ${which} allocate less`,
      };
    }
  }
  return { ok: true, message: `the quota and the nodes can hold ${total.pods} more pod(s)` };
}

function formatAmount(key: string, n: number): string {
  return key.includes('memory') ? `${Math.round(n / 2 ** 20)}Mi` : String(Math.round(n * 1000) / 1000);
}
