// Archives: the listing is checked before anything is extracted (names, types, links, total size,
// entry count), then the system tar or unzip extracts into the temporary directory under watch, as
// the listing cannot be trusted alone: a zip's headers may understate what its data inflates to.
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { FetchError } from './errors.ts';
import { checkMembers, parseTarLine, parseZipLine, segmentsOf, type ArchiveMember } from './members.ts';
import { redactUri, type ArchiveKind } from './uri.ts';
import { measureTree, sizeAdvice, type Limits } from './verify.ts';

const lastLines = (text: string) => text.trim().split('\n').slice(-3).join(' | ').slice(0, 500);

const watchIntervalMs = 50;

/**
 * Runs an archive tool in the C locale, so that its listings quote names the same way on every
 * machine. `input` is piped into its stdin, `onLine` gets its stdout line by line, `watch` runs every
 * 50 ms while it works: when any of them fails, the tool is killed and that error thrown. Returns
 * the exit code and the end of its messages.
 */
async function runTool(
  cmd: string,
  args: string[],
  options: { input?: Readable[]; onLine?: (line: string) => void; watch?: () => Promise<void> } = {},
): Promise<{ code: number; output: string }> {
  const { input, onLine, watch } = options;
  const child = spawn(cmd, args, {
    env: { ...process.env, LC_ALL: 'C' },
    stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  let stopped: { error: unknown } | undefined;
  const stop = (error: unknown) => {
    stopped ??= { error };
    child.kill('SIGKILL');
  };
  let stdout = '';
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4096)));
  createInterface({ input: child.stdout!, crlfDelay: Infinity }).on('line', (line) => {
    stdout = `${stdout}${line}\n`.slice(-4096);
    try {
      if (!stopped) onLine?.(line);
    } catch (e) {
      stop(e);
    }
  });
  // EPIPE: the tool stopped reading (done, or failed), and its exit code says which.
  const feeding =
    input &&
    pipeline([...input, child.stdin!]).catch((e: unknown) => {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EPIPE' && code !== 'ERR_STREAM_PREMATURE_CLOSE') stop(e);
    });
  let watching = false;
  const timer = watch
    ? setInterval(() => {
        if (watching) return;
        watching = true;
        watch()
          .catch(stop)
          .finally(() => (watching = false));
      }, watchIntervalMs)
    : undefined;
  let code: number;
  try {
    code = await new Promise<number>((resolvePromise, reject) => {
      child.once('error', reject);
      child.once('close', (c) => resolvePromise(c ?? 128));
    });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT')
      throw new FetchError(`${cmd} is not installed in the fetcher image: it is needed to unpack this archive`);
    throw e;
  } finally {
    clearInterval(timer);
  }
  await feeding;
  if (stopped) throw stopped.error;
  return { code, output: lastLines(stderr || stdout) };
}

/** What the listing promises: the bytes of its files and the entries (with implied directories) it creates. */
export interface Listed {
  bytes: number;
  entries: number;
}

// What tar reads besides the files' bytes: each member's headers (pax records, long names), the end
// of the archive and what is on its way through the pipe before tar lists the member it belongs to.
// Generous: it only has to stop a stream that the listing does not account for.
const headerAllowance = 64 * 1024;
const streamSlack = 16 * 1024 * 1024;
const streamBudget = (listed: Listed) => listed.bytes + (listed.entries + 1) * headerAllowance + streamSlack;

/**
 * The decompressed tar stream of `file`, failing once it passes `budget()` bytes. Listing and
 * extraction both read through it, so tar lists exactly what it later extracts.
 */
function tarStream(file: string, budget: () => number, tooLong: (limit: number) => Error): Readable[] {
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      const limit = budget();
      cb(bytes > limit ? tooLong(limit) : null, chunk);
    },
  });
  // Large chunks: with the default 16 KiB ones, piping costs more than decompressing.
  return [createReadStream(file, { highWaterMark: 1 << 20 }), createGunzip({ chunkSize: 1 << 18 }), counter];
}

const isZlibError = (e: unknown) => /^Z_/.test(String((e as NodeJS.ErrnoException)?.code));

/** Lists the archive, stopping as soon as it passes the limits: a bomb is refused before it is expanded. */
async function listMembers(
  kind: ArchiveKind,
  file: string,
  uri: string,
  limits: Limits,
): Promise<{ members: ArchiveMember[]; listed: Listed }> {
  const shown = redactUri(uri);
  const invalid = (detail: string) =>
    new FetchError(
      `${shown} is not a valid ${kind === 'zip' ? 'zip' : 'gzip-compressed tar'} archive (${detail}): check spec.artifact or rename it so that its suffix matches its format`,
    );
  const unreadable = (detail: string) =>
    new FetchError(`could not read the listing of ${shown} (${detail}): nothing was extracted`);
  const members: ArchiveMember[] = [];
  const entries = new Set<string>();
  const listed = { bytes: 0, entries: 0 };
  let declared: number | undefined;
  const add = (m: ArchiveMember) => {
    members.push(m);
    listed.bytes += m.size;
    const segments = segmentsOf(m.name);
    segments.forEach((_, i) => entries.add(segments.slice(0, i + 1).join('/')));
    listed.entries = entries.size;
    if (limits.maxBytes !== undefined && listed.bytes > limits.maxBytes) {
      throw new FetchError(
        `archive ${shown} unpacks to more than --max-bytes=${limits.maxBytes}: its listing shows ${listed.bytes} bytes so far; nothing was extracted: ${sizeAdvice} to fit the unpacked artifact`,
      );
    }
    if (listed.entries > limits.maxEntries) {
      throw new FetchError(
        `archive ${shown} holds more than ${limits.maxEntries} entries (files, directories and links): ${listed.entries} so far; nothing was extracted: pack the model into fewer files`,
      );
    }
  };
  const onTarLine = (line: string) => {
    let member: ArchiveMember;
    try {
      member = parseTarLine(line);
    } catch (e) {
      throw unreadable((e as Error).message);
    }
    add(member);
  };
  // Lines that are not members (header, totals) are skipped; the count in the header proves none was missed.
  const onZipLine = (line: string) => {
    const m = parseZipLine(line);
    const count = /^Zip file size: \d+ bytes, number of entries: (\d+)$/.exec(line);
    if (m) add(m);
    else if (count) declared = Number(count[1]);
  };
  let run: { code: number; output: string };
  try {
    run =
      kind === 'tar.gz'
        ? // -P shows names and link targets as stored, not with a leading '/' stripped, which would hide it from the checks.
          await runTool('tar', ['-tv', '-P', '--quoting-style=c', '--numeric-owner', '-f', '-'], {
            input: tarStream(
              file,
              () => streamBudget(listed),
              (limit) =>
                unreadable(
                  `tar read more than ${limit} bytes of the decompressed archive for ${listed.bytes} bytes of files: its headers are out of proportion`,
                ),
            ),
            onLine: onTarLine,
          })
        : await runTool('unzip', ['-Z', '-s', '-T', file], { onLine: onZipLine });
  } catch (e) {
    throw isZlibError(e) ? invalid((e as Error).message) : e;
  }
  if (run.code !== 0) {
    if (kind === 'zip' && /empty/i.test(run.output))
      throw new FetchError(`archive ${shown} is empty: check spec.artifact`);
    throw invalid(run.output);
  }
  if (kind === 'zip' && declared !== members.length)
    throw unreadable(`read ${members.length} members of ${declared ?? 'an unknown number'}`);
  return { members, listed };
}

/**
 * Extracts into `into` (which exists) and stops the tool as soon as it writes more than the limits
 * allow, or (tar) reads more than the listing accounts for.
 */
export async function extract(
  kind: ArchiveKind,
  file: string,
  into: string,
  uri: string,
  limits: Limits,
  listed: Listed,
): Promise<void> {
  const shown = redactUri(uri);
  const mismatch = `its headers do not match its content; rebuild the archive`;
  const check = (tree: { bytes: number; entries: number }) => {
    if (limits.maxBytes !== undefined && tree.bytes > limits.maxBytes) {
      throw new FetchError(
        `unpacking ${shown} stopped: it wrote ${tree.bytes} bytes, more than --max-bytes=${limits.maxBytes}, although its listing shows ${listed.bytes} bytes: ${mismatch}, or ${sizeAdvice} if the artifact is that large`,
      );
    }
    if (tree.entries > limits.maxEntries) {
      throw new FetchError(
        `unpacking ${shown} stopped: it created ${tree.entries} entries, more than ${limits.maxEntries}, although its listing shows ${listed.entries}: ${mismatch}`,
      );
    }
  };
  const watch = async () => check(await measureTree(into));
  const budget = streamBudget(listed);
  const x =
    kind === 'tar.gz'
      ? await runTool('tar', ['-x', '-f', '-', '-C', into, '--no-same-owner'], {
          input: tarStream(
            file,
            () => budget,
            (limit) =>
              new FetchError(
                `unpacking ${shown} stopped: tar read more than ${limit} bytes of the decompressed archive, although its listing shows ${listed.bytes} bytes: ${mismatch}`,
              ),
          ),
          watch,
        })
      : await runTool('unzip', ['-qq', '-o', file, '-d', into], { watch });
  // unzip exits 1 on warnings after extracting everything.
  if (x.code !== 0 && !(kind === 'zip' && x.code === 1))
    throw new FetchError(
      `unpacking ${shown} failed (${x.output}): check the archive and the free space on the model volume (spec size)`,
    );
  // What the tool wrote after the last look of the watch.
  await watch();
}

/** Lists the archive, refuses unsafe members and archives past the limits, then extracts into `into`. Returns the member count. */
export async function unpack(
  kind: ArchiveKind,
  file: string,
  into: string,
  uri: string,
  limits: Limits,
): Promise<number> {
  const { members, listed } = await listMembers(kind, file, uri, limits);
  checkMembers(members);
  if (!members.length) throw new FetchError(`archive ${redactUri(uri)} is empty: check spec.artifact`);
  await mkdir(into, { recursive: true });
  await extract(kind, file, into, uri, limits, listed);
  return members.length;
}
