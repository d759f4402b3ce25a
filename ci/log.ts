// Progress lines for long steps (tool builds, cluster start-up, the demo), on stderr so that they
// never mix with a command's real output.
export function log(message: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** Logs `scope: what ...`, then every 30 s while `work` runs, and how long it took. */
export async function withProgress<T>(scope: string, what: string, work: () => Promise<T>): Promise<T> {
  const started = Date.now();
  log(`${scope}: ${what} ...`);
  const timer = setInterval(
    () => log(`${scope}: still ${what} (${Math.round((Date.now() - started) / 1000)}s)`),
    30_000,
  );
  try {
    const result = await work();
    log(`${scope}: ${what}: done in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    return result;
  } finally {
    clearInterval(timer);
  }
}
