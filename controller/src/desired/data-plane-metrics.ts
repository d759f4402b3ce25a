// The data plane's own metrics of the requests a model Service gets: the label selectors that find
// them, in the one place the metric gates, the request-rate autoscaler and the dashboard take them
// from. A selector must match every name the data plane gives a Service, whichever way a route
// reaches it, or a gate measures nothing and rolls a healthy version back.
import { servicePort } from './ports.ts';

export type DataPlane = 'traefik' | 'istio';

/**
 * Traefik names a Service by the provider of the configuration that routes to it: an HTTPRoute's
 * backend is `<namespace>-<service>-<port name>-<port>@kubernetesgateway`; a Service reached through
 * a TraefikService (the mirroring one each primary Service gets, see routing/gateway-api.ts) is
 * `<namespace>-<service>-<port>@kubernetescrd`.
 */
export const traefikServiceNames = (namespace: string, service: string): string[] => [
  `${namespace}-${service}-http-${servicePort}@kubernetesgateway`,
  `${namespace}-${service}-${servicePort}@kubernetescrd`,
];

/** A PromQL regular expression over Traefik's `service` label: the Services matched by `services` (itself a regular expression) in the namespace, by every route. */
export function traefikServicePattern(namespace: string, services: string): string {
  return `${namespace}-(${services})-(http-${servicePort}@kubernetesgateway|${servicePort}@kubernetescrd)`;
}

/** The label matchers of a data plane's request metrics for the Services matched by the regular expression `services`. */
export function serviceMatchers(dataPlane: DataPlane, namespace: string, services: string): string {
  return dataPlane === 'traefik'
    ? `service=~"${traefikServicePattern(namespace, services)}"`
    : `reporter="destination",destination_service_namespace="${namespace}",destination_service_name=~"${services}"`;
}

/** The request counter and the latency histogram of a data plane (seconds or milliseconds). */
export const requestMetrics: Record<
  DataPlane,
  { requests: string; status: string; latencyBuckets: string; latencyToMs: string }
> = {
  traefik: {
    requests: 'traefik_service_requests_total',
    status: 'code',
    latencyBuckets: 'traefik_service_request_duration_seconds_bucket',
    latencyToMs: '1000 * ',
  },
  istio: {
    requests: 'istio_requests_total',
    status: 'response_code',
    latencyBuckets: 'istio_request_duration_milliseconds_bucket',
    latencyToMs: '',
  },
};

/** Escapes a name for use inside a PromQL regular expression. */
export const regexEscaped = (name: string) => name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
