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
import { markerName, tempPrefix } from './install.ts';
import { redactUri, type ArchiveKind } from './uri.ts';
import { measureTree, sizeAdvice, type Limits } from './verify.ts';

/**
 * Checks the member names of an archive: returns the non-empty names, or throws when a member would
 * land outside the target (absolute path, a `..` segment, a drive letter) or would overwrite the
 * fetcher's own files.
 */
export function safeEntries(list: readonly string[]): string[] {
  const entries = list.map((e) => e.replace(/\r$/, '')).filter((e) => e !== '');
  const bad = entries.filter((e) => {
    if (e.startsWith('/') || e.startsWith('\\') || /^[A-Za-z]:/.test(e) || e.includes('\0')) return true;
    const segments = e.split(/[\\/]+/).filter((s) => s !== '' && s !== '.');
    if (segments.includes('..')) return true;
    const top = segments[0] ?? '';
    return top === markerName || top.startsWith(tempPrefix);
  });
  if (bad.length) {
    const shown = bad
      .slice(0, 5)
      .map((e) => JSON.stringify(e))
      .join(', ');
    throw new FetchError(
      `unsafe archive: ${bad.length} member(s) would be written outside the target or over the fetcher's files (${shown}${bad.length > 5 ? ', ...' : ''}); nothing was extracted: rebuild the archive with relative paths`,
    );
  }
  return entries;
}

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

export type MemberType =
  'file' | 'directory' | 'symlink' | 'hardlink' | 'character device' | 'block device' | 'fifo' | 'socket' | 'unknown';

/** A member as the archive tool itself lists it, so that what is checked is what it will extract. */
export interface ArchiveMember {
  name: string;
  type: MemberType;
  size: number;
  /** A link's target; tar lists it, a zip listing does not (checkTree checks those once extracted). */
  link?: string;
}

/** The type letters of `tar -tv` and zipinfo; zipinfo's '?' is a member without type bits, which unzip writes as a file. */
const tarTypes: Record<string, MemberType> = {
  '-': 'file',
  d: 'directory',
  l: 'symlink',
  h: 'hardlink',
  c: 'character device',
  b: 'block device',
  p: 'fifo',
  s: 'socket',
};
const zipTypes: Record<string, MemberType> = {
  '-': 'file',
  '?': 'file',
  d: 'directory',
  l: 'symlink',
  c: 'character device',
  b: 'block device',
  p: 'fifo',
  s: 'socket',
};

/** Reads a C-quoted string (`--quoting-style=c`) at `at`; returns it and the index after it. */
function unquote(line: string, at: number): [string, number] {
  if (line[at] !== '"') throw new Error('expected a quoted name');
  const bytes: number[] = [];
  const simple: Record<string, number> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '\\': 92, '"': 34, '?': 63 };
  let i = at + 1;
  while (i < line.length && line[i] !== '"') {
    if (line[i] !== '\\') {
      bytes.push(...Buffer.from(line[i++], 'utf8'));
      continue;
    }
    const octal = /^[0-7]{1,3}/.exec(line.slice(i + 1, i + 4))?.[0];
    if (octal) {
      bytes.push(parseInt(octal, 8));
      i += 1 + octal.length;
    } else if (line[i + 1] in simple) {
      bytes.push(simple[line[i + 1]]);
      i += 2;
    } else throw new Error(`unknown escape \\${line[i + 1]}`);
  }
  if (line[i] !== '"') throw new Error('unterminated quoted name');
  return [Buffer.from(bytes).toString('utf8'), i + 1];
}

/** One line of `tar -tv --quoting-style=c --numeric-owner`: `-rw-r--r-- 0/0 5 2024-01-01 00:00 "name"`, links with ` -> "target"` or ` link to "target"`. */
export function parseTarLine(line: string): ArchiveMember {
  const q = line.indexOf('"');
  const fields = line.slice(0, q).trim().split(/\s+/);
  if (q < 0 || fields.length < 3) throw new Error(`unexpected listing line ${JSON.stringify(line.slice(0, 200))}`);
  const [name, end] = unquote(line, q);
  const type = tarTypes[fields[0][0]] ?? 'unknown';
  // Devices list "major,minor" where the size goes.
  const size = /^\d+$/.test(fields[2]) ? Number(fields[2]) : 0;
  const rest = line.slice(end);
  const linkAt = rest.startsWith(' -> "') ? 4 : rest.startsWith(' link to "') ? 9 : -1;
  return { name, type, size, ...(linkAt >= 0 ? { link: unquote(rest, linkAt)[0] } : {}) };
}

// zipinfo -s -T: `-rw-r--r--  3.0 unx  11 tx stor 20240101.000000 name`.
const zipLine = /^(\S)\S*\s+\S+\s+\S+\s+(\d+)\s+\S+\s+\S+\s+\d{8}\.\d{6} (.*)$/;

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
    const m = zipLine.exec(line);
    const count = /^Zip file size: \d+ bytes, number of entries: (\d+)$/.exec(line);
    if (m) add({ name: m[3], type: zipTypes[m[1]] ?? 'unknown', size: Number(m[2]) });
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

const segmentsOf = (path: string) => path.split(/[\\/]+/).filter((s) => s !== '' && s !== '.');

/** Whether `target`, read from the directory of the link `name`, stays inside the root at every step. */
function linkStaysInside(name: string, target: string): boolean {
  if (target.startsWith('/')) return false;
  const at = segmentsOf(name).slice(0, -1);
  for (const s of segmentsOf(target)) {
    if (s !== '..') at.push(s);
    else if (at.pop() === undefined) return false;
  }
  return true;
}

/**
 * Refuses members that extraction would turn against the node, with every reason found. Symbolic
 * links stay allowed (model repositories use them: Hugging Face snapshots link to their blobs,
 * "latest" aliases) as long as they point inside the artifact; what makes them dangerous is refused
 * here: a member written through a link (link -> /etc, then link/passwd), a target that leaves the
 * artifact, and checkTree resolves the extracted links for real (chains of links, zip links).
 */
export function checkMembers(members: readonly ArchiveMember[]): void {
  safeEntries(members.map((m) => m.name));
  const links = new Set(members.filter((m) => m.type === 'symlink').map((m) => segmentsOf(m.name).join('/')));
  const files = new Set<string>();
  const problems: string[] = [];
  for (const m of members) {
    // Named as checkTree names what it finds, so that a problem reads the same before and after extraction.
    const segments = segmentsOf(m.name);
    const shown = segments.join('/');
    const through = segments.slice(0, -1).findIndex((_, i) => links.has(segments.slice(0, i + 1).join('/')));
    if (through >= 0)
      problems.push(`${shown} would be written through the symbolic link ${segments.slice(0, through + 1).join('/')}`);
    if (m.type === 'symlink' && m.link !== undefined && !linkStaysInside(m.name, m.link))
      problems.push(`symbolic link ${shown} points outside the artifact (${m.link})`);
    if (m.type === 'hardlink' && !files.has(segmentsOf(m.link ?? '').join('/')))
      problems.push(`hard link ${shown} points to ${m.link}, which is not a file of the archive`);
    if (m.type === 'file') files.add(segments.join('/'));
    if (m.type === 'unknown') problems.push(`${shown} has a type that tar or unzip cannot extract safely`);
    else if (!['file', 'directory', 'symlink', 'hardlink'].includes(m.type)) problems.push(`${shown} is a ${m.type}`);
  }
  if (problems.length) {
    const more = problems.length > 5 ? `; and ${problems.length - 5} more` : '';
    throw new FetchError(
      `unsafe archive: ${problems.slice(0, 5).join('; ')}${more}; nothing was extracted: rebuild the archive from regular files, directories and relative links that stay inside it`,
    );
  }
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
