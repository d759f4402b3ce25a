// Which of the endpoints that claim one host holds it. Hosts are cluster-wide: two endpoints must
// never route one. The holder is the one already serving it (status.host, a serving version, and not
// itself refused the host), else the oldest claimant; every other claimant routes nothing. Pure.
import type { MachineLearningEndpoint } from '../api/generated.ts';

export function hostHolder(
  host: string,
  claimants: readonly MachineLearningEndpoint[],
): MachineLearningEndpoint | undefined {
  const live = claimants.filter((e) => !e.metadata.deletionTimestamp);
  const refused = (e: MachineLearningEndpoint) =>
    e.status?.conditions?.some((c) => c.type === 'Ready' && c.reason === 'HostConflict');
  const byAge = (a: MachineLearningEndpoint, b: MachineLearningEndpoint) =>
    String(a.metadata.creationTimestamp ?? '').localeCompare(String(b.metadata.creationTimestamp ?? '')) ||
    `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`);
  const serving = live
    .filter((e) => e.status?.host === host && e.status.endpointConfigVersion && !refused(e))
    .sort(byAge);
  return serving[0] ?? [...live].sort(byAge)[0];
}
