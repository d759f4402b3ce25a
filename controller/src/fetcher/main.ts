// The artifact fetcher: the init container of every model server pod.
//   node /app/dist/fetcher/main.js [--max-bytes=N] [--sha256=HEX] <artifact-uri> <target-dir>
// Fetches a model artifact (http(s)://, s3://, gs://, pvc://) into the model volume, unpacking
// .tar.gz/.tgz/.zip archives, so that the server finds it at /opt/ml/model (see fetch.ts).
//
// Logs: one JSON line per step on stderr; credentials are never logged. Exit codes: 0 done (or
// already there), 1 failure, 2 bad usage.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FetchError, UsageError } from './errors.ts';
import { fetchArtifact, type FetchRequest, type Options } from './fetch.ts';
import { makeLog, type Env } from './log.ts';
import { parseArtifactUri, redactUri } from './uri.ts';

export const usage = [
  'usage: fetcher [--max-bytes=N] [--sha256=HEX] <artifact-uri> <target-dir>',
  '  artifact-uri: http(s)://..., s3://<bucket>/<key>, gs://<bucket>/<object> or pvc://<claim>/<path>',
  '  --max-bytes=N: the most bytes the download, and then the unpacked artifact, may take (the variant\'s volume size)',
  '  --sha256=HEX: the SHA-256 digest (64 hexadecimal characters) the downloaded file must have',
].join('\n');

/** Reads the command line: options (`--name=value`, anywhere) and the two operands. */
export function parseArgs(argv: readonly string[]): FetchRequest {
  const operands: string[] = [];
  const options = new Map<string, string>();
  for (const arg of argv) {
    if (!arg.startsWith('-')) {
      operands.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg : arg.slice(0, eq);
    if (name !== '--sha256' && name !== '--max-bytes') throw new UsageError(`unknown option ${name}`);
    if (options.has(name)) throw new UsageError(`${name} is given twice`);
    options.set(name, eq < 0 ? '' : arg.slice(eq + 1));
  }
  if (operands.length !== 2 || !operands[0] || !operands[1]) throw new UsageError('expected two arguments: <artifact-uri> <target-dir>');
  const request: FetchRequest = { source: parseArtifactUri(operands[0]), target: resolve(operands[1]) };
  const sha256 = options.get('--sha256');
  if (sha256 !== undefined) {
    if (!/^[0-9a-f]{64}$/i.test(sha256)) throw new UsageError(`--sha256 must be 64 hexadecimal characters (the artifact's SHA-256 digest), not ${JSON.stringify(sha256.slice(0, 100))}`);
    request.sha256 = sha256.toLowerCase();
  }
  const maxBytes = options.get('--max-bytes');
  if (maxBytes !== undefined) {
    if (!/^[1-9][0-9]*$/.test(maxBytes) || !Number.isSafeInteger(Number(maxBytes))) {
      throw new UsageError(`--max-bytes must be a positive whole number of bytes (the variant's volume size), not ${JSON.stringify(maxBytes.slice(0, 100))}`);
    }
    request.maxBytes = Number(maxBytes);
  }
  return request;
}

/** Entry point: `argv` without node and the script. Returns the exit code: 0 done, 1 failure, 2 bad usage. */
export async function main(argv: readonly string[], env: Env, options: Options = {}): Promise<number> {
  const out = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const log = makeLog(env, out);
  if (argv.some((a) => a === '-h' || a === '--help')) {
    log('error', usage);
    return 2;
  }
  let request: FetchRequest;
  try {
    request = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    log('error', `${e.message}\n${usage}`);
    return 2;
  }
  const shown = redactUri(request.source.uri);
  try {
    await fetchArtifact(request, env, { ...options, log: out });
    return 0;
  } catch (e) {
    const message = e instanceof FetchError ? e.message : `fetching ${shown} failed: ${(e as Error)?.message ?? String(e)}`;
    log('error', message, { uri: shown });
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
