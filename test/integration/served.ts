// What a test means by "0 failed requests", in one place (the rule itself: ci/traffic/load.ts,
// servedProblems). Apart from traffic.ts so that tests with a cluster of their own can use it.
import { expect } from 'vitest';
import { servedProblems, type LoadRun, type Sample, type ServedRule } from '../../ci/traffic/load.ts';
import { waitFor } from '../../ci/wait.ts';
import type { MachineLearningEndpoint } from '../../controller/src/api/generated.ts';

/**
 * The most a request may take beyond what it asked the model server to take, through anything a
 * test puts an endpoint through (a switch, a rollback, a controller killed or upgraded, the control
 * plane down): a few milliseconds' request measures a few at rest, and a loaded 2-core machine
 * running two test files at once adds some hundreds at worst; a stall of seconds stands out.
 */
export const maxExtraMs = 1000;

/** The model instances (Service names) the endpoints' statuses route to. */
export const backendsOf = (...endpoints: MachineLearningEndpoint[]): string[] => [
  ...new Set(endpoints.flatMap((e) => (e.status?.traffic ?? []).map((t) => t.service))),
];

/**
 * Every request of the run was answered with a 2xx, by a backend of the endpoint under test (one of
 * `backends`, in `namespace`), within `maxExtraMs` of what it asked for, with what `answer` requires,
 * and the run stayed open loop (never held back by its cap). Call it once the run is done.
 */
export function expectServed(run: LoadRun, rule: Omit<ServedRule, 'maxExtraMs'> & { maxExtraMs?: number }): void {
  const problems = servedProblems(run.samples, { maxExtraMs, ...rule }, run.capped);
  expect(
    problems.slice(0, 20),
    `${problems.length} of ${run.samples.length} requests not served as they should be (the first 20)`,
  ).toEqual([]);
}

/** The requests of a run not answered with a 2xx. */
export const failedOf = (samples: readonly Sample[]) => samples.filter((s) => s.status < 200 || s.status >= 300);

/** Failed requests that are not a 500 answered by a candidate (an instance outside `serving`), described. */
export const notCandidateErrors = (failed: readonly Sample[], serving: readonly string[]) =>
  failed
    .filter((s) => !(s.status === 500 && s.backend?.instance !== undefined && !serving.includes(s.backend.instance)))
    .map(
      (s) => `${s.status} from ${s.backend?.instance ?? 'no backend'} at ${s.start} ms${s.error ? `: ${s.error}` : ''}`,
    );

/** Waits until the load run has run `at` ms. */
export async function untilElapsed(run: LoadRun, at: number): Promise<void> {
  await waitFor(`the load to run until ${(at / 1000).toFixed(1)} s`, at - run.elapsed() + 10_000, async () =>
    run.elapsed() >= at ? true : undefined,
  );
}
