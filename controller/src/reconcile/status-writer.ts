// Writes what a reconcile found to the endpoint's status and its snapshots' statuses: only when it
// says something new, a first version's progress at most every couple of seconds, an Event for each
// condition that turns bad, and with read-your-writes (read-your-writes.ts), so that a reconcile
// never decides from a status older than one it wrote. Its memory is soft: a restarted controller
// re-lists the caches at the newest state and, at worst, writes a status once more.
import type { Condition, MachineLearningEndpoint, MachineLearningEndpointStatus } from '../api/generated.ts';
import { canonicalJson } from '../desired/names.ts';
import * as desired from '../desired/objects.ts';
import type { VersionPlan } from '../desired/plan.ts';
import { resources, type KubeObject, type Resource } from '../kube/resources.ts';
import { progressOnly } from '../rollout/status.ts';
import type { EventRecorder } from '../runtime/events.ts';
import { involved, type Caches, type ClusterClient } from './caches.ts';
import { keyOf } from './indexes.ts';
import { waitingReason } from './missing-templates.ts';
import { WrittenStatuses } from './read-your-writes.ts';

/** How often the progress of an endpoint's first version is written to its status, at most. */
const progressStatusMs = 2000;

export interface StatusWriterDeps {
  client: ClusterClient;
  caches: Caches;
  events: EventRecorder;
  now: () => Date;
}

export class StatusWriter {
  private readonly deps: StatusWriterDeps;
  /** The statuses written that the endpoint cache may not show yet. */
  private readonly written = new WrittenStatuses();
  /** When an endpoint's status was last written, and since when a progress-only write has been put off. */
  private readonly writtenAt = new Map<string, number>();
  private readonly pending = new Map<string, number>();
  /** Per endpoint: the status last written to each of its snapshots (by resource/name), and the uid of the object it went to. */
  private readonly snapshotStatuses = new Map<string, Map<string, { uid: string | undefined; json: string }>>();

  constructor(deps: StatusWriterDeps) {
    this.deps = deps;
  }

  /** The endpoint as the cache shows it, with the status last written if the cache does not show that write yet. */
  view<T extends MachineLearningEndpoint>(key: string, cached: T): T {
    return this.written.view(key, cached);
  }

  /** The endpoint is gone: its snapshots go with it (owner references), and what was written to them is forgotten. */
  forget(key: string): void {
    this.written.forget(key);
    this.writtenAt.delete(key);
    this.pending.delete(key);
    this.snapshotStatuses.delete(key);
  }

  /** A snapshot was deleted: a namesake made later gets its status written again. */
  forgetSnapshot(endpointKey: string, r: Resource, name: string): void {
    this.snapshotStatuses.get(endpointKey)?.delete(`${r.plural}/${name}`);
  }

  /**
   * Writes the status when it says something new. While an endpoint brings up its first version,
   * its progress (Creating, then RoutePending: ready counts, the gateway's report) is written at most
   * once per `progressStatusMs`, the latest state at the end of the window: most endpoints then
   * go from nothing to InService in one write. Anything else (serving, a failure, a rollout's step,
   * which a later pass reads back) is written at once. Returns how long a write was put off, if it was.
   */
  async write(endpoint: MachineLearningEndpoint, next: MachineLearningEndpointStatus): Promise<number | undefined> {
    const key = keyOf(endpoint.metadata.namespace, endpoint.metadata.name!);
    if (canonicalJson(endpoint.status ?? {}) === canonicalJson(next)) {
      this.pending.delete(key);
      return undefined;
    }
    if (progressOnly(endpoint.status, next, !!endpoint.metadata.deletionTimestamp)) {
      const now = this.deps.now().getTime();
      let since = this.pending.get(key);
      if (since === undefined) {
        // The window opens with the first status ever wanted, or with the last write.
        since = this.writtenAt.get(key) ?? now;
        this.pending.set(key, since);
      }
      const left = since + progressStatusMs - now;
      if (left > 0) return left;
    }
    this.pending.delete(key);
    this.writtenAt.set(key, this.deps.now().getTime());
    const written = await this.deps.client.applyStatus(resources.endpoint, {
      apiVersion: 'ml-operator.dev/v1alpha1',
      kind: resources.endpoint.kind,
      metadata: { name: endpoint.metadata.name!, namespace: endpoint.metadata.namespace },
      status: next,
    });
    this.written.remember(key, endpoint.metadata.resourceVersion, written.metadata.resourceVersion, next);
    // Once the status says it: whoever sees an Event reads the status that explains it, and a
    // refused write records none (its retry does, once).
    this.recordTransitions(endpoint, endpoint.status?.conditions, next.conditions ?? []);
    return undefined;
  }

  /** One Event per condition that turns bad, so `kubectl describe` and `kubectl get events` tell the story. */
  private recordTransitions(
    endpoint: MachineLearningEndpoint,
    before: readonly Condition[] | undefined,
    after: readonly Condition[],
  ): void {
    for (const c of after) {
      const old = before?.find((b) => b.type === c.type);
      // A shadow test's passed verdict is news too.
      if (c.type === 'ShadowTested' && c.status === 'True' && !(old?.status === 'True' && old.reason === c.reason)) {
        this.deps.events.record(involved(endpoint), 'Normal', c.reason, c.message);
        continue;
      }
      if (c.status !== 'False' || (old?.status === 'False' && old.reason === c.reason)) continue;
      // Bringing up a first version, waiting for the gateway to take a route, and waiting for
      // templates applied along with the endpoint are not warnings.
      if (c.reason === 'Creating' || c.reason === 'RoutePending' || c.reason === waitingReason) continue;
      this.deps.events.record(involved(endpoint), 'Warning', c.reason, c.message);
    }
  }

  /** Records the model versions in each config snapshot and the config version in each model snapshot. */
  async writeSnapshotStatuses(endpointKey: string, namespace: string, plans: VersionPlan[]): Promise<void> {
    const { caches, client } = this.deps;
    const writes: Promise<unknown>[] = [];
    const modelVersion = new Map<string, string>();
    // A status just written may not be in the cache yet: what was written (to that very object) counts.
    let memory = this.snapshotStatuses.get(endpointKey);
    if (!memory)
      this.snapshotStatuses.set(endpointKey, (memory = new Map<string, { uid: string | undefined; json: string }>()));
    const remembered = memory;
    const write = (r: Resource, live: KubeObject | undefined, name: string, status: Record<string, unknown>) => {
      const key = `${r.plural}/${name}`;
      const json = canonicalJson(status);
      const written = remembered.get(key);
      // Only the fields written here count: the status may hold others (an older release's).
      const liveStatus = (live?.status ?? {}) as Record<string, unknown>;
      if (live && canonicalJson(Object.fromEntries(Object.keys(status).map((k) => [k, liveStatus[k]]))) === json)
        return;
      if (written?.json === json && (!live || live.metadata.uid === written.uid)) return;
      writes.push(
        client
          .applyStatus(r, {
            apiVersion: 'ml-operator.dev/v1alpha1',
            kind: r.kind,
            metadata: { name, namespace },
            status,
          })
          .then((o) => remembered.set(key, { uid: o.metadata.uid, json })),
      );
    };
    for (const plan of plans) {
      write(
        resources.endpointConfig,
        caches.configs.get(namespace, plan.instance),
        plan.instance,
        desired.configInstanceStatus(plan),
      );
      for (const v of plan.variants) modelVersion.set(v.instance, plan.version);
    }
    for (const [instance, version] of modelVersion)
      write(resources.model, caches.models.get(namespace, instance), instance, { endpointConfigVersion: version });
    await Promise.all(writes);
  }
}
