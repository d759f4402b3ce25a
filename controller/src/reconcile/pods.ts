// Why a model version's pods do not run, for the endpoint's PodsScheduled and ArtifactsFetched
// conditions: what a Deployment's status cannot say (the scheduler's reason, the artifact fetcher's
// termination message) is read from its pods, at most every podCheckMs while it lacks ready ones.
// Its memory (when each instance's pods were last listed, and what they said) is soft: a restarted
// controller lists them again.
import type { ConditionInput } from '../desired/status.ts';
import * as desired from '../desired/objects.ts';
import { labels } from '../desired/labels.ts';
import { resources, type KubeObject } from '../kube/resources.ts';
import type { Logger } from '../log.ts';
import type { Caches, ClusterClient } from './caches.ts';

/** How often the pods of a Deployment short of ready replicas are looked at, at most, for why. */
const podCheckMs = 10_000;

export class PodDiagnostics {
  private readonly deps: { client: ClusterClient; caches: Caches; logger: Logger };
  /** Per model instance: when its pods were last listed, and the scheduler's message about them if one could not be placed. */
  private readonly checks = new Map<string, { at: number; message: string | undefined; fetchFailure?: string }>();

  constructor(deps: { client: ClusterClient; caches: Caches; logger: Logger }) {
    this.deps = deps;
  }

  /**
   * Why pods of the deployed instances do not run, for the endpoint's PodsScheduled condition: a
   * ReplicaSet that cannot create them (its Deployment's ReplicaFailure: a refusal by Pod Security
   * admission, a quota), or a scheduler that cannot place them (the PodScheduled condition of a
   * Pending pod: no node with the GPUs, an untolerated taint, a nodeSelector no node matches).
   * The endpoint's ArtifactsFetched condition, likewise: the termination message of a model pod's
   * artifact fetcher that failed (a refused download, a wrong digest, a role it could not assume).
   * Pods are listed only for a Deployment that lacks ready replicas, at most every podCheckMs; while
   * one does, the endpoint is looked at again, since a pending pod changes no Deployment.
   */
  async problems(
    namespace: string,
    instances: string[],
    now: Date,
  ): Promise<{ conditions: ConditionInput[]; recheckMs?: number }> {
    const { caches, client, logger } = this.deps;
    type Live = KubeObject & {
      spec?: { replicas?: number };
      status?: {
        readyReplicas?: number;
        conditions?: { type: string; status: string; reason?: string; message?: string }[];
      };
    };
    type Terminated = { exitCode?: number; reason?: string; message?: string };
    type ContainerStatus = {
      name: string;
      state?: { terminated?: Terminated };
      lastState?: { terminated?: Terminated };
    };
    type PodStatus = {
      status?: {
        phase?: string;
        conditions?: { type: string; status: string; reason?: string; message?: string }[];
        initContainerStatuses?: ContainerStatus[];
      };
    };
    const problems: { reason: string; text: string }[] = [];
    const fetchFailures: string[] = [];
    let waiting = false;
    for (const instance of instances) {
      const live = caches.deployments.get(namespace, instance) as Live | undefined;
      if (!live) continue;
      const failure = live.status?.conditions?.find((c) => c.type === 'ReplicaFailure' && c.status === 'True');
      if (failure) {
        problems.push({
          reason: failure.reason || 'FailedCreate',
          text: `${instance}: ${failure.message ?? 'its ReplicaSet cannot create pods'}`,
        });
        continue;
      }
      if ((live.status?.readyReplicas ?? 0) >= (live.spec?.replicas ?? 1)) {
        this.checks.delete(`${namespace}/${instance}`);
        continue;
      }
      waiting = true;
      const key = `${namespace}/${instance}`;
      let checked = this.checks.get(key);
      if (!checked || now.getTime() - checked.at >= podCheckMs) {
        let items: (KubeObject & PodStatus)[] = [];
        try {
          items = (
            await client.list<KubeObject & PodStatus>(resources.pod, namespace, {
              labelSelector: `${labels.modelInstance}=${instance}`,
              // The watch cache's copy: read again within podCheckMs, a diagnosis needs no read of etcd.
              resourceVersion: '0',
            })
          ).items;
        } catch (err) {
          // No right to list pods (installed without the chart's RBAC): the status just says less.
          logger.debug({ err, instance: key }, 'pods not listed');
        }
        const unschedulable = items
          .flatMap((p) => (p.status?.phase === 'Pending' ? (p.status.conditions ?? []) : []))
          .find((c) => c.type === 'PodScheduled' && c.status === 'False' && c.reason === 'Unschedulable');
        // The artifact fetcher's last failure: its termination message says what to fix.
        const fetcher = items
          .flatMap((p) => p.status?.initContainerStatuses ?? [])
          .find(
            (c) =>
              c.name === desired.fetcherContainerName &&
              ((c.state?.terminated?.exitCode ?? 0) !== 0 || (c.lastState?.terminated?.exitCode ?? 0) !== 0),
          );
        const failed =
          fetcher &&
          ((fetcher.state?.terminated?.exitCode ?? 0) !== 0
            ? fetcher.state!.terminated!
            : fetcher.lastState!.terminated!);
        checked = {
          at: now.getTime(),
          message: unschedulable?.message,
          fetchFailure: failed
            ? failed.message?.trim() ||
              `the fetcher exited with ${failed.exitCode}${failed.reason ? ` (${failed.reason})` : ''}; see its log`
            : undefined,
        };
        this.checks.set(key, checked);
      }
      if (checked.message) problems.push({ reason: 'Unschedulable', text: `${instance}: ${checked.message}` });
      if (checked.fetchFailure) fetchFailures.push(`${instance}: ${checked.fetchFailure}`);
    }
    const conditions: ConditionInput[] = [
      ...(problems.length
        ? [
            {
              type: 'PodsScheduled',
              status: 'False' as const,
              reason: problems[0].reason,
              message: problems.map((p) => p.text).join('; '),
            },
          ]
        : []),
      ...(fetchFailures.length
        ? [
            {
              type: 'ArtifactsFetched',
              status: 'False' as const,
              reason: 'FetchFailed',
              message: fetchFailures.join('; '),
            },
          ]
        : []),
    ];
    return { conditions, ...(waiting || problems.length ? { recheckMs: podCheckMs } : {}) };
  }
}
