// The controller's Prometheus metrics, in a registry of its own (with the default process metrics),
// so that tests can create as many as they like.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly reconcileTotal = new Counter({
    name: 'ml_operator_reconcile_total',
    help: 'Reconciles, by result: success, error (retried with backoff), requeue (asked to look again later) or fenced (stopped because this replica no longer leads).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly reconcileDuration = new Histogram({
    name: 'ml_operator_reconcile_duration_seconds',
    help: 'How long one reconcile takes.',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly reconcileErrors = new Counter({
    name: 'ml_operator_reconcile_errors_total',
    help: 'Reconciles that failed.',
    registers: [this.registry],
  });
  readonly workqueueDepth = new Gauge({
    name: 'ml_operator_workqueue_depth',
    help: 'Keys waiting in the work queue.',
    registers: [this.registry],
  });
  readonly workqueueAdds = new Counter({
    name: 'ml_operator_workqueue_adds_total',
    help: 'Keys added to the work queue.',
    registers: [this.registry],
  });
  readonly apiWrites = new Counter({
    name: 'ml_operator_api_writes_total',
    help: 'Write requests sent to the Kubernetes API, by verb (apply, create, update, delete) and resource (with /status for status writes).',
    labelNames: ['verb', 'resource'] as const,
    registers: [this.registry],
  });
  readonly apiThrottled = new Counter({
    name: 'ml_operator_api_throttled_total',
    help: 'Answers of the Kubernetes API asking to retry later (429 Too Many Requests, or Retry-After), each retried after the wait it asked for.',
    registers: [this.registry],
  });
  readonly rolloutStep = new Gauge({
    name: 'ml_operator_rollout_step',
    help: 'Step of the rollout in progress (0: the new version takes no traffic yet), by endpoint.',
    labelNames: ['namespace', 'endpoint'] as const,
    registers: [this.registry],
  });
  readonly rolloutWeight = new Gauge({
    name: 'ml_operator_rollout_weight_percent',
    help: 'Share of the traffic (percent) the version rolling out takes, by endpoint.',
    labelNames: ['namespace', 'endpoint'] as const,
    registers: [this.registry],
  });
  readonly routeWeight = new Gauge({
    name: 'ml_operator_route_weight_percent',
    help: "Share of the endpoint's traffic (percent) its route sends to each Service, by config version.",
    labelNames: ['namespace', 'endpoint', 'version', 'service'] as const,
    registers: [this.registry],
  });
  private readonly routeLabels = new Map<
    string,
    { namespace: string; endpoint: string; version: string; service: string }[]
  >();
  readonly analysisValue = new Gauge({
    name: 'ml_operator_analysis_value',
    help: 'Last value a metric gate measured, by endpoint and check.',
    labelNames: ['namespace', 'endpoint', 'check'] as const,
    registers: [this.registry],
  });
  readonly analysisEvaluations = new Counter({
    name: 'ml_operator_analysis_evaluations_total',
    help: 'Evaluations of metric gates, by result (Passed, Failed, Inconclusive).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly rollbacks = new Counter({
    name: 'ml_operator_rollbacks_total',
    help: 'Rollouts that ended without promotion, by endpoint and reason (AnalysisFailed, CanaryUnavailable, Aborted, SmokeTestFailed).',
    labelNames: ['namespace', 'endpoint', 'reason'] as const,
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: 'ml_operator_leader',
    help: '1 while this replica holds the leader lease (or runs without leader election), else 0.',
    registers: [this.registry],
  });

  /** The weights an endpoint's route carries now; Services it no longer names drop out. */
  setRoute(
    namespace: string,
    endpoint: string,
    backends: readonly { version: string; service: string; weight: number }[] | undefined,
  ): void {
    const key = `${namespace}/${endpoint}`;
    for (const labels of this.routeLabels.get(key) ?? []) this.routeWeight.remove(labels);
    const now = (backends ?? []).map((b) => ({ namespace, endpoint, version: b.version, service: b.service }));
    (backends ?? []).forEach((b, i) => this.routeWeight.set(now[i], b.weight));
    if (now.length) this.routeLabels.set(key, now);
    else this.routeLabels.delete(key);
  }

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    // Present from the start, so that rate() and absent() queries see zeros rather than nothing.
    for (const result of ['success', 'error', 'requeue', 'fenced'] as const) this.reconcileTotal.inc({ result }, 0);
    this.reconcileErrors.inc(0);
    this.workqueueAdds.inc(0);
    this.leader.set(0);
    for (const result of ['Passed', 'Failed', 'Inconclusive'] as const) this.analysisEvaluations.inc({ result }, 0);
  }
}
