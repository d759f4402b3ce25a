// The artifact fetcher: the init container of every model server pod.
//   node /app/dist/fetcher/main.js <artifact-uri> <target-dir>
// Fetches a model artifact (http(s)://, s3://, gs://, pvc://) into the model volume, unpacking
// .tar.gz/.tgz/.zip archives, so that the server finds it at /opt/ml/model (see fetch.ts).
//
// Logs: one JSON line per step on stderr; credentials are never logged. Exit codes: 0 done (or
// already there), 1 failure, 2 bad usage.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FetchError, UsageError } from './errors.ts';
import { fetchArtifact, type Options } from './fetch.ts';
import { makeLog, type Env } from './log.ts';
import { redactUri } from './uri.ts';

export const usage = 'usage: fetcher <artifact-uri> <target-dir>\n  artifact-uri: http(s)://..., s3://<bucket>/<key>, gs://<bucket>/<object> or pvc://<claim>/<path>';

/** Entry point: `argv` without node and the script. Returns the exit code: 0 done, 1 failure, 2 bad usage. */
export async function main(argv: readonly string[], env: Env, options: Options = {}): Promise<number> {
  const out = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const log = makeLog(env, out);
  if (argv.length !== 2 || argv.some((a) => a === '-h' || a === '--help') || !argv[1]) {
    log('error', usage);
    return 2;
  }
  const [uri, target] = argv;
  try {
    await fetchArtifact(uri, resolve(target), env, { ...options, log: out });
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      log('error', `${e.message}\n${usage}`);
      return 2;
    }
    const message = e instanceof FetchError ? e.message : `fetching ${redactUri(uri)} failed: ${(e as Error)?.message ?? String(e)}`;
    log('error', message, { uri: redactUri(uri) });
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // As a container's first process, node gets no default SIGTERM handling: end at once so a pod
  // deleted mid-fetch does not wait out its grace period. A half-done fetch leaves only a .fetch-*
  // directory, which the next run removes.
  process.once('SIGTERM', () => process.exit(143));
  process.exitCode = await main(process.argv.slice(2), process.env);
}
