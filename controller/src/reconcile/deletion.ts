// What happens when a user deletes an endpoint. Owner references alone would take everything at
// once, in whatever order the garbage collector picks: a Service or its pods could go before the
// route that names them, and clients would get the gateway's 5xx (a route to a missing Service is a
// 500, one to no ready pod a 503) where a deleted endpoint should answer as any host that is not
// served (the gateway's 404). So the controller holds every endpoint with the drain finalizer: on
// deletion the route goes first, the model pods serve on for the endpoint's drainSeconds (counted
// from when the controller took the route away, never from the deletion: a controller that was down
// or backing off past drainSeconds would otherwise lift everything right after the route; the time is
// the `Deleting` condition's, in the status, so a controller restarted mid-drain goes on from it)
// while gateways drop the route and requests in flight finish, hostPath files are removed (storage
// finalizer), and only then are the finalizers lifted and the rest collected. An endpoint that never
// served (no route ever named its pods) goes without a drain.
import type { MachineLearningEndpoint } from '../api/generated.ts';
import { drainFinalizer, storageFinalizer } from '../desired/labels.ts';
import { KubeError } from '../kube/errors.ts';
import { resources } from '../kube/resources.ts';
import type { OperatorConfig } from '../options/config.ts';
import { defaults } from '../rollout/decision.ts';
import type { ReconcileResult } from '../runtime/queue.ts';
import type { Applier } from './apply.ts';
import type { ClusterClient } from './caches.ts';
import type { HostPathStorage } from './hostpath.ts';
import type { StatusWriter } from './status-writer.ts';

/** The condition of a deleted endpoint whose route is gone: its lastTransitionTime starts the drain. */
export const deletingCondition = 'Deleting';

export interface DeletionDeps {
  client: ClusterClient;
  config: OperatorConfig;
  applier: Applier;
  status: StatusWriter;
  hostPath: HostPathStorage;
  now: () => Date;
}

/** The finalizers the controller keeps on a live endpoint. */
export function finalizersFor(config: OperatorConfig): string[] {
  return [drainFinalizer, ...(config.storage.mode === 'hostPath' ? [storageFinalizer] : [])];
}

export class Deletion {
  private readonly deps: DeletionDeps;

  constructor(deps: DeletionDeps) {
    this.deps = deps;
  }

  /**
   * Puts the controller's finalizers on a live endpoint that lacks one. False when the endpoint is
   * no longer live, though the cache said so (deleted, or being deleted, before they were on):
   * then there is nothing to do until the deletion's event arrives.
   */
  async hold(endpoint: MachineLearningEndpoint): Promise<boolean> {
    const wanted = finalizersFor(this.deps.config);
    if (wanted.every((f) => endpoint.metadata.finalizers?.includes(f))) return true;
    try {
      await this.setFinalizers(endpoint, wanted);
      return true;
    } catch (err) {
      // The API server refuses a new finalizer on an object being deleted, and an apply to one that
      // is gone would create it without a spec: both 422. Look before calling it a failure.
      if (!(err instanceof KubeError && err.code === 422)) throw err;
      const live = await this.deps.client.get(resources.endpoint, endpoint.metadata.namespace, endpoint.metadata.name!);
      if (live && live.metadata.uid === endpoint.metadata.uid && !live.metadata.deletionTimestamp) throw err;
      return false;
    }
  }

  /**
   * A deleted endpoint: its route removed, its pods left to drain, its hostPath files removed, then
   * its finalizers lifted. Undefined when there is nothing more to do; else when to look again.
   */
  async finalize(endpoint: MachineLearningEndpoint): Promise<ReconcileResult> {
    const held = endpoint.metadata.finalizers ?? [];
    if (!held.includes(drainFinalizer) && !held.includes(storageFinalizer)) return;
    const removed = held.includes(drainFinalizer) ? await this.deps.applier.removeRouting(endpoint) : 0;
    // The drain starts when the route is gone and the status says so; a later pass (or a restarted
    // controller) counts from that condition. A route this pass still found (one the caches saw only
    // after the drain began: written just before the deletion) starts it again. An endpoint that
    // never served has nothing to drain: no route named its pods. That is asked of the API server,
    // not the caches, which may not have seen a route written just before the deletion.
    const started = endpoint.status?.conditions?.find((c) => c.type === deletingCondition);
    const served =
      removed > 0 ||
      started !== undefined ||
      endpoint.status?.endpointConfigVersion !== undefined ||
      (endpoint.status?.traffic?.length ?? 0) > 0 ||
      (held.includes(drainFinalizer) &&
        (await this.deps.applier.removeLiveRoute({ endpoint, config: this.deps.config })));
    if (held.includes(drainFinalizer) && served) {
      const drainSeconds = endpoint.spec.rollout?.drainSeconds ?? defaults.drainSeconds;
      const now = this.deps.now().getTime();
      const draining = endpoint.status?.state === 'Deleting' && removed === 0 ? started : undefined;
      const since = draining ? Date.parse(draining.lastTransitionTime) : now;
      if (!draining)
        await this.deps.status.write(endpoint, {
          ...endpoint.status,
          state: 'Deleting',
          conditions: [
            ...(endpoint.status?.conditions ?? []).filter((c) => c.type !== deletingCondition),
            {
              type: deletingCondition,
              status: 'True',
              reason: 'Draining',
              message: `The route is removed; the model pods serve on for drainSeconds (${drainSeconds}) while gateways drop it and requests in flight finish, then the endpoint goes.`,
              lastTransitionTime: new Date(now).toISOString(),
            },
          ],
        });
      const left = since + drainSeconds * 1000 - now;
      if (left > 0) return { requeueAfterMs: left };
    } else if (endpoint.status?.state !== 'Deleting')
      await this.deps.status.write(endpoint, { ...endpoint.status, state: 'Deleting' });
    if (held.includes(storageFinalizer)) {
      const later = await this.deps.hostPath.removeFiles(endpoint);
      if (later) return later;
    }
    await this.setFinalizers(endpoint, []);
    return undefined;
  }

  private async setFinalizers(endpoint: MachineLearningEndpoint, finalizers: string[]): Promise<void> {
    // Server-side apply owns just our entries of the finalizer list: applying without them removes only ours.
    await this.deps.client.apply(resources.endpoint, {
      apiVersion: 'ml-operator.dev/v1alpha1',
      kind: resources.endpoint.kind,
      metadata: { name: endpoint.metadata.name!, namespace: endpoint.metadata.namespace, finalizers },
    });
  }
}
