// How the project runs a fast-check property: a new seed each run unless one is given (printed, so
// that any run can be replayed), a fixed number of samples (never cut short by a time budget, so
// that a run tries as many as it claims), and a verdict that stands on the failure that was seen:
// the failing sample is replayed and shrunk for a smaller example, but the run fails whether or not
// the replay fails again (a failure that does not reproduce is still a failure, and a flaky one).
import { randomInt } from 'node:crypto';
import fc from 'fast-check';

/** The seed in `value` (an environment variable's), or a new random one. */
export function propertySeed(value: string | undefined): number {
  if (value === undefined || value.trim() === '') return randomInt(2 ** 31);
  const seed = Number(value);
  if (!Number.isInteger(seed)) throw new Error(`property seed ${JSON.stringify(value)}: expected an integer`);
  return seed;
}

export interface PropertyRunOptions {
  seed: number;
  numRuns: number;
  /** Time to shrink a failing sample to a smaller one. */
  shrinkMs: number;
  /** How to replay the run, for messages: e.g. `ML_OPERATOR_PROPERTY_SEED=123`. */
  replay: string;
  log: (line: string) => void;
}

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * Checks `property` on `numRuns` samples from `seed`. On a failure, replays the failing sample and
 * shrinks it, then throws an error with the failure seen first and what the replay found.
 */
export async function checkProperty<T>(
  property: fc.IAsyncPropertyWithHooks<T> | fc.IAsyncProperty<T>,
  o: PropertyRunOptions,
): Promise<{ numRuns: number }> {
  const result = await fc.check(property, { seed: o.seed, numRuns: o.numRuns, endOnFailure: true });
  if (!result.failed) return { numRuns: result.numRuns };
  const first =
    result.errorInstance !== null
      ? messageOf(result.errorInstance)
      : `interrupted or skipped (${result.interrupted ? 'interrupted' : 'too many skipped samples'})`;
  o.log(
    `property: sample ${result.counterexamplePath} of seed ${o.seed} failed; replaying and shrinking it (replay: ${o.replay})`,
  );
  let replayed: string;
  try {
    await fc.assert(property, {
      seed: o.seed,
      path: result.counterexamplePath ?? undefined,
      endOnFailure: false,
      plugins: [fc.interruptAfterTimeLimit(o.shrinkMs)],
    });
    replayed = 'its replay passed: the failure did not reproduce (a flaky failure, which counts as one)';
  } catch (err) {
    replayed = `its replay failed again, shrunk to:\n${messageOf(err)}`;
  }
  throw new Error(
    `the property failed on sample ${result.numRuns} of seed ${o.seed} (replay: ${o.replay}):\n${first}\n\n${replayed}`,
  );
}
