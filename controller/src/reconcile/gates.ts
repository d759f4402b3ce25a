// The rollout's gates that need the world, run before the decision when they are due: the metric
// gates (Prometheus), the smoke test (requests to the new version's pods, before it takes traffic)
// and the capacity check (ResourceQuotas and nodes, before anything of the new version is created).
// The probes (probes/) do the I/O; each returns facts for the pure decision.
import type { MachineLearningEndpoint } from '../api/generated.ts';
import { iso } from '../desired/status.ts';
import type { OperatorConfig } from '../options/config.ts';
import { agentAdminPortName, agentContainerName } from '../desired/agent.ts';
import { labels } from '../desired/labels.ts';
import { runAnalysis } from '../probes/analysis.ts';
import { askAgents } from '../probes/data-capture.ts';
import { checkCapacity, type SharedLists } from '../probes/capacity.ts';
import type { PrometheusClient } from '../probes/prometheus.ts';
import { runSmokeTest } from '../probes/smoke-test.ts';
import { instanceReplicas, type RolloutInput } from '../rollout/decide.ts';
import { planFingerprint } from '../rollout/strategies.ts';
import type { RoutingProvider } from '../routing/provider.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { Caches, ClusterClient } from './caches.ts';

export interface GateDeps {
  client: Pick<ClusterClient, 'get' | 'list'>;
  caches: Caches;
  config: OperatorConfig;
  provider: RoutingProvider;
  metrics?: Metrics;
  prometheus?: PrometheusClient;
  sharedLists: SharedLists;
}

/** What the gates found this round, for the decision (RolloutInput's fields of the same names). */
export type GateResults = Pick<RolloutInput, 'analysis' | 'smokeTest' | 'capacity'>;

/**
 * The gates that need the world, run before the decision when they are due: the metric gates while
 * the new version takes traffic, the capacity check before anything of it exists, and the smoke
 * test once it is Available and before it takes traffic.
 */
export async function runGates(
  deps: GateDeps,
  endpoint: MachineLearningEndpoint,
  input: RolloutInput,
): Promise<GateResults> {
  const results: GateResults = {};
  const { caches, client, config, provider, metrics, prometheus, sharedLists } = deps;
  const { target } = input;
  const rollout = endpoint.spec.rollout ?? {};
  const namespace = endpoint.metadata.namespace!;
  const serving = (() => {
    const v = input.status.endpointConfigVersion;
    return v ? (v === target?.version ? target : input.snapshot(v)) : undefined;
  })();
  if (!target || target.version === serving?.version || input.routeBlocked) return results;
  const newInstances = target.variants.filter((v) => !serving?.variants.some((s) => s.instance === v.instance));
  const checks = rollout.analysis?.checks ?? [];
  if (checks.length) {
    results.analysis = await runAnalysis({
      status: input.status,
      rollout,
      checks,
      target,
      serving,
      namespace,
      endpoint: endpoint.metadata.name!,
      config,
      provider: provider.name,
      prometheus,
      agents: (instances, windowSeconds) =>
        askAgents(
          client,
          namespace,
          instances,
          agentContainerName,
          agentAdminPortName,
          labels.modelInstance,
          windowSeconds,
        ),
      now: input.now,
    });
    for (const r of results.analysis ?? []) {
      if (r.evaluatedAt === iso(input.now)) metrics?.analysisEvaluations.inc({ result: r.result ?? 'Inconclusive' });
      if (r.value !== undefined)
        metrics?.analysisValue.set({ namespace, endpoint: endpoint.metadata.name!, check: r.name }, Number(r.value));
    }
  }
  if (
    !rollout.dryRun &&
    newInstances.length &&
    newInstances.every((v) => !caches.deployments.get(namespace, v.instance))
  ) {
    results.capacity = await checkCapacity(sharedLists, namespace, target, serving);
  }
  const recorded = input.status.rollout;
  const smokeDone =
    recorded?.version === target.version &&
    recorded.plan === planFingerprint(rollout) &&
    recorded.smokeTest !== undefined;
  const takesTraffic = (input.route?.versions.get(target.version) ?? 0) > 0;
  // The instances it tests are the new ones, asked for with the counts the decision uses (an
  // instance shared with the serving version runs the larger count of the two, and is not tested).
  const starting = instanceReplicas(target);
  if (
    rollout.smokeTest &&
    !smokeDone &&
    !takesTraffic &&
    newInstances.every((v) => input.workload(v, starting.get(v.instance)!).available)
  ) {
    results.smokeTest = await runSmokeTest(
      client,
      namespace,
      rollout.smokeTest.configMap,
      newInstances.map((v) => v.instance),
      rollout.smokeTest.timeoutSeconds ?? 10,
    );
  }
  return results;
}
