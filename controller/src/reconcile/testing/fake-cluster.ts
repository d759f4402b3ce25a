// An in-memory API server and informer caches for the reconciler's unit tests. The server assigns
// resourceVersions, uids and generations and applies as a single field manager would (the applied
// fields replace ours; status only through the status subresource). The caches see a write only
// when the test delivers it, in order, as a watch would: so a test can hold an object's events back
// and reproduce exactly the interleavings a slow watch makes.
import { configIndexers, endpointIndexers, modelIndexers, ownedIndexers } from '../indexes.ts';
import type { Indexers } from '../../kube/informer.ts';
import { resources, type KubeObject, type Resource } from '../../kube/resources.ts';
import { KubeError } from '../../kube/errors.ts';
import type { OperatorConfig } from '../../options/config.ts';
import type { Caches, ClusterClient, Store } from '../caches.ts';

type Key = string;
const nodeResource: Resource = { group: '', version: 'v1', kind: 'Node', plural: 'nodes', namespaced: false };
const keyOf = (r: Resource, namespace: string | undefined, name: string): Key =>
  `${r.group}/${r.plural}/${namespace ?? ''}/${name}`;

interface PendingEvent {
  key: Key;
  resource: Resource;
  object: KubeObject | undefined;
}

class FakeStore<T extends KubeObject> implements Store<T> {
  readonly objects = new Map<string, T>();
  private readonly indexers: Indexers<T>;
  constructor(indexers: Indexers<T>) {
    this.indexers = indexers;
  }
  get(namespace: string | undefined, name: string): T | undefined {
    return this.objects.get(`${namespace ?? ''}/${name}`);
  }
  list(namespace?: string): T[] {
    return [...this.objects.values()].filter((o) => namespace === undefined || o.metadata.namespace === namespace);
  }
  byIndex(index: string, value: string): T[] {
    const indexer = this.indexers[index];
    return indexer ? this.list().filter((o) => indexer(o).includes(value)) : [];
  }
  put(o: T | undefined, namespace: string | undefined, name: string): void {
    if (o) this.objects.set(`${namespace ?? ''}/${name}`, structuredClone(o));
    else this.objects.delete(`${namespace ?? ''}/${name}`);
  }
}

export class FakeCluster implements ClusterClient {
  private readonly objects = new Map<Key, KubeObject>();
  private pending: PendingEvent[] = [];
  private revision = 100;
  private uids = 0;
  /** Every write, in order: verb, resource and name. */
  readonly writes: { verb: 'apply' | 'status' | 'delete'; plural: string; name: string }[] = [];
  /** Every status write to an endpoint, in order: what a watch on it would see. */
  readonly endpointStatusWrites: { resourceVersion: string; status: unknown }[] = [];
  readonly stores: Record<string, FakeStore<KubeObject>>;
  readonly caches: Caches;
  /** An apply the test makes the API server refuse (an admission webhook, say). */
  refuse?: (r: Resource, applied: KubeObject, live: KubeObject | undefined) => KubeError | undefined;
  /** Resources whose events stay pending until the test delivers them on purpose. */
  readonly held = new Set<string>();
  now: () => Date = () => new Date();

  constructor(config: OperatorConfig) {
    this.stores = {
      endpoints: new FakeStore(endpointIndexers(config) as Indexers<KubeObject>),
      configs: new FakeStore(configIndexers as Indexers<KubeObject>),
      models: new FakeStore(modelIndexers),
      deployments: new FakeStore(ownedIndexers),
      services: new FakeStore(ownedIndexers),
      claims: new FakeStore(ownedIndexers),
      gateways: new FakeStore(ownedIndexers),
      routes: new FakeStore(ownedIndexers),
      disruptionBudgets: new FakeStore(ownedIndexers),
      autoscalers: new FakeStore(ownedIndexers),
      auxiliary: new FakeStore(ownedIndexers),
      pods: new FakeStore(ownedIndexers),
      volumes: new FakeStore(ownedIndexers),
    };
    this.caches = this.stores as unknown as Caches;
    // One node with room for the tests' model pods, for the capacity check.
    this.objects.set(keyOf(nodeResource, undefined, 'node-1'), {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'node-1', uid: 'uid-node-1', resourceVersion: '1' },
      status: {
        allocatable: { cpu: '64', memory: '256Gi', pods: '110' },
        conditions: [{ type: 'Ready', status: 'True' }],
      },
    });
  }

  private storeOf(r: Resource): FakeStore<KubeObject> | undefined {
    const byPlural: Record<string, string> = {
      machinelearningendpoints: 'endpoints',
      machinelearningendpointconfigs: 'configs',
      machinelearningmodels: 'models',
      deployments: 'deployments',
      services: 'services',
      persistentvolumeclaims: 'claims',
      gateways: 'gateways',
      virtualservices: 'routes',
      httproutes: 'routes',
      poddisruptionbudgets: 'disruptionBudgets',
      horizontalpodautoscalers: 'autoscalers',
      scaledobjects: 'autoscalers',
      traefikservices: 'auxiliary',
      pods: 'pods',
      persistentvolumes: 'volumes',
    };
    return this.stores[byPlural[r.plural]];
  }

  private commit(r: Resource, o: KubeObject | undefined, namespace: string | undefined, name: string): void {
    const key = keyOf(r, namespace, name);
    if (o) this.objects.set(key, o);
    else this.objects.delete(key);
    this.pending.push({ key, resource: r, object: o && structuredClone(o) });
    if (!this.held.has(r.plural)) this.deliver((e) => e.key === key);
  }

  /** Delivers pending watch events to the caches, in the order they happened (all, or those `which` picks). */
  deliver(which: (e: PendingEvent) => boolean = () => true): number {
    const now = this.pending.filter(which);
    this.pending = this.pending.filter((e) => !now.includes(e));
    for (const e of now) {
      const [, , namespace, name] = e.key.split('/');
      this.storeOf(e.resource)?.put(e.object, namespace || undefined, name);
    }
    return now.length;
  }

  /** Delivers only the oldest pending event of a resource (a watch that is one write behind). */
  deliverOldest(r: Resource): boolean {
    const first = this.pending.find((e) => e.resource.plural === r.plural);
    if (!first) return false;
    this.deliver((e) => e === first);
    return true;
  }

  pendingOf(r: Resource): number {
    return this.pending.filter((e) => e.resource.plural === r.plural).length;
  }

  read<T extends KubeObject>(r: Resource, namespace: string | undefined, name: string): T | undefined {
    const o = this.objects.get(keyOf(r, namespace, name));
    return o && (structuredClone(o) as T);
  }

  list_<T extends KubeObject>(r: Resource): T[] {
    return [...this.objects.entries()]
      .filter(([k]) => k.startsWith(`${r.group}/${r.plural}/`))
      .map(([, o]) => structuredClone(o) as T);
  }

  // The client's API, as the reconciler uses it.

  async get<T extends KubeObject>(r: Resource, namespace: string | undefined, name: string): Promise<T | undefined> {
    return this.read<T>(r, namespace, name);
  }

  /** List requests made (a reconcile lists only what its caches cannot answer). */
  lists = 0;
  /** Of those, the ones that asked for the API server's cached copy (resourceVersion 0). */
  cachedLists = 0;

  async list<T extends KubeObject>(
    r: Resource,
    namespace: string | undefined,
    opts: { labelSelector?: string; resourceVersion?: '0' } = {},
  ): Promise<{ items: T[]; resourceVersion: string }> {
    this.lists++;
    if (opts.resourceVersion === '0') this.cachedLists++;
    const [key, value] = opts.labelSelector?.split('=') ?? [];
    const items = this.list_<T>(r).filter(
      (o) =>
        (namespace === undefined || o.metadata.namespace === namespace) &&
        (key === undefined || o.metadata.labels?.[key] === value),
    );
    return { items, resourceVersion: String(this.revision) };
  }

  /** Objects someone else made (no owner reference of the endpoint's), straight into the server and the caches. */
  async create(r: Resource, obj: KubeObject): Promise<KubeObject> {
    const o = {
      ...structuredClone(obj),
      metadata: {
        uid: `uid-${++this.uids}`,
        generation: 1,
        creationTimestamp: this.now().toISOString(),
        ...structuredClone(obj.metadata),
        resourceVersion: String(++this.revision),
      },
    };
    this.commit(r, o, o.metadata.namespace, o.metadata.name);
    return o;
  }

  async apply<T extends KubeObject>(r: Resource, obj: KubeObject): Promise<T> {
    const { namespace, name } = obj.metadata;
    const live = this.read(r, namespace, name);
    const refused = this.refuse?.(r, obj, live);
    if (refused) throw refused;
    // What the API server refuses: a new finalizer on an object being deleted, and (from the CRDs'
    // schemas) an object of ours created without a spec.
    const added = (obj.metadata.finalizers ?? []).filter((f) => !live?.metadata.finalizers?.includes(f));
    if (live?.metadata.deletionTimestamp && added.length > 0)
      throw new KubeError(
        `${r.kind} ${namespace}/${name} is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{${added.map((f) => JSON.stringify(f)).join(', ')}}`,
        422,
        'Invalid',
      );
    if (!live && r.group === 'ml-operator.dev' && obj.spec === undefined)
      throw new KubeError(`${r.kind} ${namespace}/${name} is invalid: spec: Required value`, 422, 'Invalid');
    this.writes.push({ verb: 'apply', plural: r.plural, name });
    const { status: _ignored, ...applied } = structuredClone(obj);
    const metadata = {
      ...(live?.metadata ?? { uid: `uid-${++this.uids}`, creationTimestamp: this.now().toISOString(), generation: 1 }),
      ...applied.metadata,
      resourceVersion: String(++this.revision),
    };
    if (live && JSON.stringify(live.spec) !== JSON.stringify(applied.spec) && applied.spec !== undefined)
      metadata.generation = (live.metadata.generation ?? 1) + 1;
    const next: KubeObject = {
      ...live,
      ...applied,
      apiVersion: obj.apiVersion,
      kind: obj.kind ?? r.kind,
      metadata,
      ...(live?.status !== undefined ? { status: live.status } : {}),
    };
    if (applied.spec === undefined && live?.spec !== undefined) next.spec = live.spec;
    // An object being deleted goes once its last finalizer is lifted.
    if (next.metadata.deletionTimestamp && !next.metadata.finalizers?.length) {
      this.commit(r, undefined, namespace, name);
      return structuredClone(next) as T;
    }
    this.commit(r, next, namespace, name);
    return structuredClone(next) as T;
  }

  /** What a user's delete does: an object with finalizers is marked (deletionTimestamp), one without goes. */
  async requestDelete(r: Resource, namespace: string | undefined, name: string): Promise<void> {
    const live = this.read(r, namespace, name);
    if (!live) return;
    if (!live.metadata.finalizers?.length) {
      await this.delete(r, namespace, name);
      return;
    }
    this.writes.push({ verb: 'delete', plural: r.plural, name });
    const next = {
      ...live,
      metadata: {
        ...live.metadata,
        deletionTimestamp: this.now().toISOString() as never,
        resourceVersion: String(++this.revision),
      },
    };
    this.commit(r, next, namespace, name);
  }

  async applyStatus<T extends KubeObject>(r: Resource, obj: KubeObject): Promise<T> {
    const { namespace, name } = obj.metadata;
    const live = this.read(r, namespace, name);
    if (!live) throw Object.assign(new Error(`${r.kind} ${namespace}/${name} not found`), { code: 404 });
    this.writes.push({ verb: 'status', plural: r.plural, name });
    const next = {
      ...live,
      status: structuredClone(obj.status),
      metadata: { ...live.metadata, resourceVersion: String(++this.revision) },
    };
    if (r.plural === resources.endpoint.plural)
      this.endpointStatusWrites.push({
        resourceVersion: next.metadata.resourceVersion,
        status: structuredClone(obj.status),
      });
    this.commit(r, next, namespace, name);
    return structuredClone(next) as T;
  }

  async delete(r: Resource, namespace: string | undefined, name: string): Promise<boolean> {
    const live = this.read(r, namespace, name);
    if (!live) return false;
    this.writes.push({ verb: 'delete', plural: r.plural, name });
    this.revision++;
    // An object with finalizers is only marked, as the API server does, until they are lifted.
    if (live.metadata.finalizers?.length) {
      if (live.metadata.deletionTimestamp) return true;
      const marked = {
        ...live,
        metadata: {
          ...live.metadata,
          deletionTimestamp: this.now().toISOString() as never,
          resourceVersion: String(this.revision),
        },
      };
      this.commit(r, marked, namespace, name);
      return true;
    }
    this.commit(r, undefined, namespace, name);
    return true;
  }

  /** What the user does: creates or changes a template (spec only). */
  async put(r: Resource, obj: KubeObject): Promise<KubeObject> {
    return this.apply(r, obj);
  }

  /** What the Deployment controller does: every Deployment runs its latest spec with every replica ready. */
  async rollOutDeployments(): Promise<void> {
    for (const d of this.list_<KubeObject & { spec: { replicas?: number } }>(resources.deployment)) {
      const replicas = d.spec.replicas ?? 1;
      const status = {
        observedGeneration: d.metadata.generation,
        replicas,
        updatedReplicas: replicas,
        readyReplicas: replicas,
        availableReplicas: replicas,
      };
      if (JSON.stringify(d.status) === JSON.stringify(status)) continue;
      await this.applyStatus(resources.deployment, { ...d, status });
    }
  }
}
