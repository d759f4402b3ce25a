// What a reconcile's decision tells beyond the cluster's objects: its Events, its metrics and its
// debug log line.
import type { MachineLearningEndpoint } from '../api/generated.ts';
import type { Logger } from '../log.ts';
import type { RolloutDecision } from '../rollout/decide.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Metrics } from '../runtime/metrics.ts';
import { involved } from './caches.ts';
import type { DesiredStateInputs } from './desired-state.ts';

/** The decision's Events and metrics. */
export function recordOutcome(
  { events, metrics }: { events: EventRecorder; metrics?: Metrics },
  endpoint: MachineLearningEndpoint,
  decision: RolloutDecision,
): void {
  const labels = { namespace: endpoint.metadata.namespace!, endpoint: endpoint.metadata.name! };
  for (const e of decision.outcome.events) events.record(involved(endpoint), e.type, e.reason, e.message);
  if (decision.outcome.ended) metrics?.rollbacks.inc({ ...labels, reason: decision.outcome.ended });
  const rollout = decision.outcome.rollout;
  const active = rollout && (rollout.phase === 'Progressing' || rollout.phase === 'Paused');
  metrics?.rolloutStep.set(labels, active ? (rollout.step ?? 0) : 0);
  metrics?.rolloutWeight.set(labels, active ? (rollout.weight ?? 0) : 0);
  if (decision.route) metrics?.setRoute(labels.namespace, labels.endpoint, decision.route);
  const { switched, serving } = decision.outcome;
  if (switched && serving) {
    const message = switched.from
      ? `traffic switched from config version ${switched.from} to ${serving.version} (${serving.instance})`
      : `serving config version ${serving.version} (${serving.instance})`;
    events.record(involved(endpoint), 'Normal', 'VersionSwitched', message);
  }
}

/** The decision, in one debug line. */
export function logDecision(
  logger: Logger,
  endpoint: MachineLearningEndpoint,
  inputs: DesiredStateInputs,
  target: string | undefined,
  decision: RolloutDecision,
  statusDeferredMs: number | undefined,
): void {
  if (!logger.isLevelEnabled('debug')) return;
  const { outcome } = decision;
  const route = inputs.rollout.route ? Object.fromEntries(inputs.rollout.route.versions) : undefined;
  logger.debug(
    {
      endpoint: `${endpoint.metadata.namespace}/${endpoint.metadata.name}`,
      target,
      serving: outcome.serving?.version,
      unreadable: outcome.unreadable,
      pending: outcome.pending?.version,
      keepInstances: [...decision.keepInstances],
      switched: !!outcome.switched,
      route,
      statusDeferredMs,
    },
    'decided',
  );
}
