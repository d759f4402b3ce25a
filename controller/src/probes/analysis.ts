// The metric gates' probe: runs the PromQL of each check that is due while the new version takes
// traffic, and records what it measured for the pure decision (rollout/analysis.ts).
import type { AnalysisCheck, MachineLearningEndpointRollout, MachineLearningEndpointStatus } from '../api/generated.ts';
import type { VersionPlan } from '../desired/plan.ts';
import { iso } from '../desired/status.ts';
import type { OperatorConfig } from '../options/config.ts';
import {
  checkDefaults,
  due,
  evaluate,
  renderQuery,
  type CheckRecord,
  type Measurement,
  type MetricsSource,
} from '../rollout/analysis.ts';
import { planFingerprint } from '../rollout/strategies.ts';
import type { PrometheusClient } from './prometheus.ts';
import { agreementMeasurement, agreementSubjects } from './agreement.ts';
import { requestMeasurement, requestSubjects } from './agent-requests.ts';
import type { AgentAnswer } from './data-capture.ts';

/**
 * Evaluates the checks that are due while the new version takes traffic. The records live in
 * status.rollout.analysis; a new rollout (version or spec) starts with none.
 */
export async function runAnalysis(o: {
  status: MachineLearningEndpointStatus;
  rollout: MachineLearningEndpointRollout;
  checks: AnalysisCheck[];
  target: VersionPlan;
  serving: VersionPlan | undefined;
  namespace: string;
  endpoint: string;
  config: OperatorConfig;
  provider: 'istio' | 'gatewayAPI';
  prometheus: PrometheusClient | undefined;
  /**
   * Asks the agents of these model instances for their status, with their clients' requests over
   * the last windowSeconds (the source of agreement, and of errorRate and latencyP99 from Agents).
   */
  agents: (instances: readonly string[], windowSeconds?: number) => Promise<AgentAnswer[]>;
  now: Date;
}): Promise<CheckRecord[] | undefined> {
  const recorded = o.status.rollout;
  if (!recorded || recorded.version !== o.target.version || recorded.plan !== planFingerprint(o.rollout))
    return undefined;
  if (recorded.phase !== 'Progressing' || !recorded.weight || o.checks.length === 0) return recorded.analysis;
  const source: MetricsSource | undefined =
    o.config.prometheus.dataPlane || (o.provider === 'istio' ? 'istio' : undefined);
  let records = [...(recorded.analysis ?? [])];
  const ctx = {
    namespace: o.namespace,
    endpoint: o.endpoint,
    version: o.target.version,
    previousVersion: o.serving?.version ?? '',
    services: o.target.variants
      .map((v) => v.instance)
      .filter((s) => !o.serving?.variants.some((v) => v.instance === s)),
    previousServices: o.serving?.variants.map((v) => v.instance) ?? [],
  };
  for (const check of due(o.checks, records, o.now, recorded.stepStartedAt)) {
    let m: Measurement;
    let query: string | undefined;
    if (check.builtin === 'agreement') {
      const subjects = o.serving
        ? agreementSubjects(o.target, o.serving)
        : { measured: { empty: 'no version serves: there is nothing to compare with' } };
      try {
        m =
          'measured' in subjects
            ? subjects.measured
            : agreementMeasurement(check, recorded.plan ?? '', await o.agents(subjects.instances));
      } catch (err) {
        m = { error: `the new version's model agents could not be asked: ${(err as Error).message}` };
      }
    } else if (check.builtin && check.source === 'Agents') {
      const subjects = requestSubjects(o.target, o.serving);
      const window = check.intervalSeconds ?? checkDefaults.intervalSeconds;
      try {
        m =
          'measured' in subjects
            ? subjects.measured
            : requestMeasurement(check.builtin, window, await o.agents(subjects.instances, window));
      } catch (err) {
        m = { error: `the new version's model agents could not be asked: ${(err as Error).message}` };
      }
    } else if (!o.prometheus)
      m = {
        error: `no Prometheus is configured: set controller.config.prometheus.url${check.builtin ? ", or give the check source: Agents (the model agents' counts)" : ''}`,
      };
    else if (check.builtin && !source)
      m = {
        error:
          'built-in checks need to know whose metrics to read with the gatewayAPI provider: set controller.config.prometheus.dataPlane (istio or traefik), or give the check a query',
      };
    else m = await o.prometheus.query((query = renderQuery(check, source ?? 'istio', ctx)), o.now);
    const next = evaluate(
      check,
      records.find((r) => r.name === check.name),
      m,
      iso(o.now),
      query,
    );
    records = [...records.filter((r) => r.name !== check.name), next];
  }
  return records.sort((a, b) => a.name.localeCompare(b.name));
}

/** When the next check is due during a step (ms from now), to come back then. */
