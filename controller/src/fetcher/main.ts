// The artifact fetcher: the init container of every model server pod.
//   node /app/dist/fetcher/main.js [--max-bytes=N] [--sha256=HEX] <artifact-uri> <target-dir>
//   node /app/dist/fetcher/main.js --remove <dir>     (hostPath storage: clears a model directory)
// Fetches a model artifact (http(s)://, s3://, gs://, azure://, pvc://) into the model volume, unpacking
// .tar.gz/.tgz/.zip archives, so that the server finds it at /opt/ml/model (see fetch.ts).
//
// Logs: one JSON line per step on stderr; credentials are never logged. Exit codes: 0 done (or
// already there), 1 failure, 2 bad usage.
import { existsSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { isAbsolute, normalize, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FetchError, UsageError } from './errors.ts';
import { fetchArtifact, type FetchRequest, type Options } from './fetch.ts';
import { makeLog, masker, type Env } from './log.ts';
import { parseArtifactUri, redactUri } from './uri.ts';

export const usage = [
  'usage: fetcher [--max-bytes=N] [--sha256=HEX] <artifact-uri> <target-dir>',
  '  artifact-uri: http(s)://..., s3://<bucket>/<key>, gs://<bucket>/<object>, azure://<account>/<container>/<blob> or pvc://<claim>/<path>',
  "  --max-bytes=N: the most bytes the download, and then the unpacked artifact, may take (the variant's volume size)",
  '  --sha256=HEX: the SHA-256 digest (64 hexadecimal characters) the downloaded file must have',
  '   or: fetcher --remove <dir>   removes a model directory the fetcher filled (hostPath storage clean-up)',
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
  if (operands.length !== 2 || !operands[0] || !operands[1])
    throw new UsageError('expected two arguments: <artifact-uri> <target-dir>');
  const request: FetchRequest = { source: parseArtifactUri(operands[0]), target: resolve(operands[1]) };
  const sha256 = options.get('--sha256');
  if (sha256 !== undefined) {
    if (!/^[0-9a-f]{64}$/i.test(sha256))
      throw new UsageError(
        `--sha256 must be 64 hexadecimal characters (the artifact's SHA-256 digest), not ${JSON.stringify(sha256.slice(0, 100))}`,
      );
    request.sha256 = sha256.toLowerCase();
  }
  const maxBytes = options.get('--max-bytes');
  if (maxBytes !== undefined) {
    if (!/^[1-9][0-9]*$/.test(maxBytes) || !Number.isSafeInteger(Number(maxBytes))) {
      throw new UsageError(
        `--max-bytes must be a positive whole number of bytes (the variant's volume size), not ${JSON.stringify(maxBytes.slice(0, 100))}`,
      );
    }
    request.maxBytes = Number(maxBytes);
  }
  return request;
}

/**
 * Removes a model directory (hostPath storage keeps models on the nodes, so a version that goes
 * takes its files along). The directory must be absolute and at least two levels deep, so that a
 * mistaken argument cannot clear a mount point; a directory that is already gone is success.
 */
async function removeDirectory(args: readonly string[], log: ReturnType<typeof makeLog>): Promise<number> {
  const dir = args[0];
  if (
    args.length !== 1 ||
    !dir ||
    !isAbsolute(dir) ||
    normalize(dir) !== dir.replace(/\/+$/, '') ||
    dir.split('/').filter(Boolean).length < 3
  ) {
    log(
      'error',
      `--remove takes one absolute, normalised directory at least three levels deep, not ${JSON.stringify(args)}\n${usage}`,
    );
    return 2;
  }
  try {
    await rm(dir, { recursive: true, force: true });
    log('info', 'removed', { dir });
    return 0;
  } catch (e) {
    log('error', `removing ${dir} failed: ${(e as Error).message}`, { dir });
    return 1;
  }
}

/** Entry point: `argv` without node and the script. Returns the exit code: 0 done, 1 failure, 2 bad usage. */
export async function main(argv: readonly string[], env: Env, options: Options = {}): Promise<number> {
  const out = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const log = makeLog(env, out);
  if (argv.some((a) => a === '-h' || a === '--help')) {
    log('error', usage);
    return 2;
  }
  if (argv[0] === '--remove') return removeDirectory(argv.slice(1), log);
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
    const message =
      e instanceof FetchError ? e.message : `fetching ${shown} failed: ${(e as Error)?.message ?? String(e)}`;
    log('error', message, { uri: shown });
    // The kubelet mounts this file; its content becomes the container's termination message, read
    // by the controller for the endpoint's ArtifactsFetched condition. The log line stays the record.
    const terminationLog = options.terminationLog ?? '/dev/termination-log';
    if (existsSync(terminationLog)) {
      try {
        writeFileSync(terminationLog, masker(env)(message));
      } catch {
        // not writable here: the log line says it
      }
    }
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
