// The route of an endpoint as data, computed once and written by whichever provider the chart
// chose: the host, and the weighted backends (a Service per variant of each version that takes
// traffic), weights being integer percentages that sum to exactly 100. Pure: no I/O.
import { servicePort } from '../desired/objects.ts';
import type { VersionPlan } from '../desired/plan.ts';
import { percentages } from '../desired/weights.ts';

export interface RouteBackend {
  /** The config version (ec_version) the backend belongs to. */
  version: string;
  variant: string;
  modelVersion: string;
  service: string;
  port: number;
  weight: number;
}

export interface RouteSpec {
  host: string;
  backends: RouteBackend[];
}

/** A version and the share of the endpoint's traffic (percent) it takes. */
export interface VersionShare {
  plan: VersionPlan;
  percent: number;
}

/**
 * The weighted backends of versions that split the traffic: inside each version, the variants keep
 * their relative weights. The result's weights sum to 100 (largest remainder).
 */
export function backends(shares: readonly VersionShare[]): RouteBackend[] {
  const entries = shares.flatMap((s) => {
    const variantWeights = s.plan.variants.map((v) => v.variant.weight ?? 1);
    const total = variantWeights.reduce((a, b) => a + b, 0);
    return s.plan.variants.map((v, i) => ({ share: s, v, exact: total > 0 ? (s.percent * variantWeights[i]) / total : 0 }));
  });
  // Whole numbers that sum to 100, each as close to its exact share as the sum allows.
  const scaled = entries.map((e) => Math.round(e.exact * 1000));
  const weights = scaled.some((w) => w > 0) ? percentages(scaled) : entries.map(() => 0);
  return entries.map((e, i) => ({
    version: e.share.plan.version,
    variant: e.v.variant.model,
    modelVersion: e.v.version,
    service: e.v.instance,
    port: servicePort,
    weight: weights[i],
  }));
}

/** Percent of the traffic each config version receives in a route. */
export function versionWeights(route: readonly RouteBackend[]): Map<string, number> {
  const byVersion = new Map<string, number>();
  for (const b of route) byVersion.set(b.version, (byVersion.get(b.version) ?? 0) + b.weight);
  return byVersion;
}

/** Annotation on the route object naming the config versions it routes to, `v1=90,v2=10`: the route is the truth of what serves. */
export const routeVersionsAnnotation = 'ml-operator.dev/route-versions';

export function encodeVersions(route: readonly RouteBackend[]): string {
  return [...versionWeights(route)].map(([v, w]) => `${v}=${w}`).join(',');
}

export function decodeVersions(value: string | undefined): Map<string, number> | undefined {
  if (!value) return undefined;
  const result = new Map<string, number>();
  for (const part of value.split(',')) {
    const m = part.match(/^([0-9a-f]+)=(\d+)$/);
    if (!m) return undefined;
    result.set(m[1], Number(m[2]));
  }
  return result;
}
