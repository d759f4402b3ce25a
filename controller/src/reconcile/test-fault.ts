// A fault for testing the tests, never set by the chart: with ML_OPERATOR_TEST_FAULT_UNREADY_ROUTE_MS=300
// the controller sends an endpoint's traffic to a new version's Services while they have no ready pod,
// for that long, once per version, before it writes the route it decided. The chaos soak's route
// watcher must report it (ci/chaos/route-watcher.ts); a watcher that confirms by a later read did not.
import type { KubeObject } from '../kube/resources.ts';
import type { VersionPlan } from '../desired/plan.ts';

export function unreadyRouteFaultMs(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const ms = Number(env.ML_OPERATOR_TEST_FAULT_UNREADY_ROUTE_MS);
  return ms > 0 ? ms : undefined;
}

/** The route with every Service backend of its rules replaced by the pending version's primary Services (Gateway API shape). */
export function routeToPending(route: KubeObject, pending: VersionPlan): KubeObject | undefined {
  const services = pending.variants.filter((v) => !v.variant.shadow).map((v) => v.instance);
  const spec = (route as { spec?: { rules?: { backendRefs?: { kind?: string; name: string; weight?: number }[] }[] } }).spec;
  if (!services.length || !spec?.rules?.some((r) => r.backendRefs?.length)) return undefined;
  const rules = spec.rules.map((r) =>
    r.backendRefs?.length ? { ...r, backendRefs: services.map((name, i) => ({ ...r.backendRefs![0], kind: 'Service', name, weight: i === 0 ? 1 : 0 })) } : r,
  );
  return { ...route, spec: { ...spec, rules } } as KubeObject;
}
