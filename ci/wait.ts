import { setTimeout as delay } from 'node:timers/promises';

/**
 * Polls `probe` until it returns a value other than undefined, or fails after `timeoutMs` with the
 * last error the probe threw and, if given, what `explain` says (a log tail, the object's state).
 */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
  explain?: () => string | Promise<string>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  let interval = 50;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    await delay(interval);
    interval = Math.min(interval * 2, 500);
  }
  const reason = lastError instanceof Error ? `: ${lastError.message}` : '';
  const detail = explain ? `\n${await explain()}` : '';
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${reason}${detail}`);
}
