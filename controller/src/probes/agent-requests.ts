// The built-in errorRate and latencyP99 checks when their source is Agents: the new version's model
// agents count the requests its clients send them (agent/window.ts), and the controller sums the
// counts of every running pod over the check's interval (a pod restarted or gone loses its own), with no Prometheus and whatever the
// data plane. The quantile is read from the summed buckets as Prometheus' histogram_quantile reads
// its own (linear within a bucket).
import { isShadow, type VersionPlan } from '../desired/plan.ts';
import type { Measurement } from '../rollout/analysis.ts';
import type { AgentAnswer } from './data-capture.ts';

/** The instances whose agents a check asks: the new version's serving instances, those the serving version does not serve from. */
export function requestSubjects(
  target: VersionPlan,
  serving: VersionPlan | undefined,
): { measured: Measurement } | { instances: string[] } {
  const answering = target.variants.filter((v) => !isShadow(v));
  const fresh = answering.filter((v) => !serving?.variants.some((s) => !isShadow(s) && s.instance === v.instance));
  // Every request is answered by instances the serving version answers from too: measure those.
  const subjects = fresh.length ? fresh : answering;
  const without = subjects.filter((v) => !v.agent);
  if (without.length)
    return {
      measured: {
        empty: `the new version's model instances (${without.map((v) => v.instance).join(', ')}) have no model agent, made before the check asked the agents: nothing counts their requests; set the check's source to DataPlane, or remove it, to roll this version out`,
      },
    };
  return { instances: subjects.map((v) => v.instance) };
}

/** The p-quantile of bucketed counts (the last bucket unbounded), in the buckets' unit; undefined with no count. */
export function bucketQuantile(p: number, boundsMs: readonly number[], counts: readonly number[]): number | undefined {
  const total = counts.reduce((a, b) => a + b, 0);
  if (!total) return undefined;
  const rank = p * total;
  let below = 0;
  for (let b = 0; b < counts.length; b++) {
    if (below + counts[b] >= rank && counts[b] > 0) {
      // Past the last bound nothing says how far: the last bound, as histogram_quantile answers.
      if (b >= boundsMs.length) return boundsMs[boundsMs.length - 1];
      const lower = b === 0 ? 0 : boundsMs[b - 1];
      return lower + ((boundsMs[b] - lower) * (rank - below)) / counts[b];
    }
    below += counts[b];
  }
  return boundsMs[boundsMs.length - 1];
}

/** The measure the agents' windows give: the share of answers that were 5xx or cut short, or the p99 in milliseconds. */
export function requestMeasurement(
  measure: 'errorRate' | 'latencyP99',
  windowSeconds: number,
  answers: readonly AgentAnswer[],
): Measurement {
  if (!answers.length) return { empty: 'no running pod of the new version yet' };
  // A pod left out could be the one whose requests failed: no value until every pod answers.
  const unreachable = answers.filter((a) => a.unreachable);
  if (unreachable.length)
    return {
      empty: `${unreachable.length} of the new version's ${answers.length} pod(s) did not say what they answered: ${unreachable.map((a) => a.unreachable).join('; ')}`,
    };
  const answered = answers;
  const silent = answered.filter((a) => !a.requests);
  if (silent.length)
    return {
      error: `the model agents of pods ${silent.map((a) => a.pod).join(', ')} do not count requests (an agent older than the controller's, kept for the model instance's life): roll out a new model version, or set the check's source to DataPlane`,
    };
  const windows = answered.map((a) => a.requests!);
  const byClass = (c: string) => windows.reduce((sum, w) => sum + (w.requests[c] ?? 0), 0);
  const total = windows.reduce((sum, w) => sum + Object.values(w.requests).reduce((a, b) => a + b, 0), 0);
  if (!total)
    return {
      empty: `no client request reached the new version's ${answered.length} pod(s) in the last ${windowSeconds}s`,
    };
  if (measure === 'errorRate') return { value: (byClass('5xx') + byClass('aborted')) / total };
  const boundsMs = windows[0].latency.boundsMs;
  if (windows.some((w) => w.latency.boundsMs.join() !== boundsMs.join()))
    return { error: "the new version's model agents report latency in different buckets: their versions differ" };
  const counts = boundsMs
    .map((_, i) => i)
    .concat(boundsMs.length)
    .map((i) => windows.reduce((sum, w) => sum + (w.latency.counts[i] ?? 0), 0));
  return { value: bucketQuantile(0.99, boundsMs, counts)! };
}
