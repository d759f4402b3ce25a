// The agent's Prometheus metrics, labelled with the pod's namespace, endpoint, variant and version so
// that metric gates read the same series whatever the data plane.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Identity } from './config.ts';
import { RequestWindow } from './window.ts';

export interface AgentMetrics {
  registry: Registry;
  requests: Counter<'code_class'>;
  duration: Histogram<'code_class'>;
  inFlight: Gauge;
  captureRecords: Counter<'result'>;
  modelErrors: Counter;
  shadowRequests: Counter<'shadow' | 'result'>;
  shadowPredictions: Counter<'shadow' | 'result'>;
  shadowDuration: Histogram<'shadow'>;
  /** Clients' requests (not other agents' copies) over the last seconds: the Agents source of the built-in checks. */
  clients: RequestWindow;
}

/** Seconds: the request's and a shadow copy's durations, so that the two compare bucket for bucket. */
const durationBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export function agentMetrics(identity: Identity): AgentMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({
    namespace: identity.namespace,
    endpoint: identity.endpoint,
    variant: identity.variant,
    version: identity.modelVersion,
  });
  const registers = [registry];
  const captureRecords = new Counter({
    name: 'ml_agent_capture_records_total',
    help: 'Captured records, by result: written to the sink, or dropped (buffer full, or unwritten at shutdown).',
    labelNames: ['result'] as const,
    registers,
  });
  // Both series exist from the start, so that a rate over them is 0 rather than absent.
  captureRecords.inc({ result: 'written' }, 0);
  captureRecords.inc({ result: 'dropped' }, 0);
  return {
    registry,
    requests: new Counter({
      name: 'ml_agent_requests_total',
      help: 'Requests answered through the agent, by status class (2xx, 4xx, 5xx...).',
      labelNames: ['code_class'] as const,
      registers,
    }),
    duration: new Histogram({
      name: 'ml_agent_request_duration_seconds',
      help: 'Time from a request’s arrival to the end of its answer, as the agent saw it.',
      labelNames: ['code_class'] as const,
      buckets: durationBuckets,
      registers,
    }),
    inFlight: new Gauge({ name: 'ml_agent_in_flight', help: 'Requests being answered now.', registers }),
    captureRecords,
    modelErrors: new Counter({
      name: 'ml_agent_model_errors_total',
      help: 'Requests the model could not be reached for (connection refused or reset before an answer): answered 502 by the agent.',
      registers,
    }),
    shadowRequests: new Counter({
      name: 'ml_agent_shadow_requests_total',
      help: 'Requests mirrored to a shadow, by result: compared, serving_error or shadow_error (not compared), dropped (the in-flight cap, or the back-off from a shadow that refuses connections), skipped (a body or answer larger than the agent keeps, or an encoded answer).',
      labelNames: ['shadow', 'result'] as const,
      registers,
    }),
    shadowPredictions: new Counter({
      name: 'ml_agent_shadow_predictions_total',
      help: "Predictions compared with a shadow's (an array answer counts each element), by result: agree or disagree.",
      labelNames: ['shadow', 'result'] as const,
      registers,
    }),
    shadowDuration: new Histogram({
      name: 'ml_agent_shadow_duration_seconds',
      help: 'Time from sending a copy to a shadow to the end of its answer (or its failure).',
      labelNames: ['shadow'] as const,
      buckets: durationBuckets,
      registers,
    }),
    clients: new RequestWindow(),
  };
}
