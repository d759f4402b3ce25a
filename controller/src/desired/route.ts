// The route of an endpoint as data, computed once and written by whichever provider the chart
// chose: the host, and the weighted backends (a Service per variant of each version that takes
// traffic), weights being integer percentages that sum to exactly 100. Pure: no I/O.
import { servicePort } from './ports.ts';
import { isShadow, shadowMirror, type VariantPlan, type VersionPlan } from './plan.ts';
import { apportion } from './weights.ts';

export interface RouteBackend {
  /** The config version (ec_version) the backend belongs to. */
  version: string;
  variant: string;
  modelVersion: string;
  service: string;
  port: number;
  weight: number;
}

/** A shadow variant that receives a mirror of `percent` of the requests; its answers are discarded. */
export interface RouteMirror {
  version: string;
  variant: string;
  service: string;
  port: number;
  percent: number;
}

/** Requests with the header `x-ml-variant: <variant>` go to that variant of the serving version, whatever the weights. */
export interface RouteTarget {
  variant: string;
  service: string;
  port: number;
}

export const variantHeader = 'x-ml-variant';

export interface RouteSpec {
  host: string;
  backends: RouteBackend[];
  mirrors?: RouteMirror[];
  targets?: RouteTarget[];
  /** Whether the data plane has loaded a primary Service's auxiliary object, which the route may then name. */
  loaded?: (service: string) => boolean;
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
  // Each version gets exactly its share, which the live route is read back as (the step a rollout
  // is at), split among its variants by their weights in whole numbers as close to exact as that
  // sum allows. Rounded across all backends at once, two equal variants of a 25% canary got 12 each.
  return shares.flatMap((s) => {
    const primaries = s.plan.variants.filter((v) => !isShadow(v));
    const weights = apportion(
      Math.round(s.percent),
      primaries.map((v) => v.variant.weight ?? 1),
    );
    return primaries.map((v, i) => ({
      version: s.plan.version,
      variant: v.variant.model,
      modelVersion: v.version,
      service: v.instance,
      port: servicePort,
      weight: weights[i],
    }));
  });
}

/**
 * One backend per Service: two versions that share a model version (a config change that kept it)
 * share its instance, so a split between them names that Service twice. What the data plane and the
 * status table get: the Service once, with the shares summed (the first backend's version and
 * variant). The versions annotation keeps each version's share.
 */
export function byService(route: readonly RouteBackend[]): RouteBackend[] {
  const merged = new Map<string, RouteBackend>();
  for (const b of route) {
    const seen = merged.get(b.service);
    merged.set(b.service, seen ? { ...seen, weight: seen.weight + b.weight } : { ...b });
  }
  return [...merged.values()];
}

/**
 * The mirrors of a version's shadow variants that can take them (their workloads are Available): by
 * the route (`Gateway`), or by the agents of its serving variants (`Agent`).
 */
export function mirrorsOf(
  plan: VersionPlan,
  available: (v: VariantPlan) => boolean,
  by: 'Agent' | 'Gateway' = 'Gateway',
): RouteMirror[] {
  return plan.variants
    .filter((v) => isShadow(v) && shadowMirror(v.variant.shadow!) === by && available(v))
    .map((v) => ({
      version: plan.version,
      variant: v.variant.model,
      service: v.instance,
      port: servicePort,
      percent: v.variant.shadow!.percent,
    }));
}

/** The header targets of a version: each of its primary variants, whatever its weight. */
export function targetsOf(plan: VersionPlan): RouteTarget[] {
  return plan.variants
    .filter((v) => !isShadow(v))
    .map((v) => ({ variant: v.variant.model, service: v.instance, port: servicePort }));
}

/** Annotation on the route object naming the Services it mirrors to, `svc=25,...` (what must not be deleted). */
export const routeMirrorsAnnotation = 'ml-operator.dev/route-mirrors';

export function encodeMirrors(mirrors: readonly RouteMirror[] | undefined): string | undefined {
  return mirrors?.length ? mirrors.map((m) => `${m.service}=${m.percent}`).join(',') : undefined;
}

export function decodeMirrors(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((p) => p.split('=')[0])
    .filter(Boolean);
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
