// Archives: the listing is checked before anything is extracted, then the system tar or unzip
// extracts into the temporary directory.
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { FetchError } from './errors.ts';
import { markerName, tempPrefix } from './install.ts';
import { redactUri, type ArchiveKind } from './uri.ts';

/**
 * Checks an archive listing (one member name per element, as `tar -tzf` or `unzip -Z1` print it):
 * returns the non-empty names, or throws when a member would land outside the target (absolute
 * path, a `..` segment, a drive letter) or would overwrite the fetcher's own files.
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
    const shown = bad.slice(0, 5).map((e) => JSON.stringify(e)).join(', ');
    throw new FetchError(`unsafe archive: ${bad.length} member(s) would be written outside the target or over the fetcher's files (${shown}${bad.length > 5 ? ', ...' : ''}); nothing was extracted: rebuild the archive with relative paths`);
  }
  return entries;
}

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    execFile(cmd, args, { maxBuffer: 256 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new FetchError(`${cmd} is not installed in the fetcher image: it is needed to unpack this archive`));
        return;
      }
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolvePromise({ code, stdout, stderr });
    });
  });
}

const lastLines = (text: string) => text.trim().split('\n').slice(-3).join(' | ').slice(0, 500);

/** Lists the archive, refuses unsafe members, then extracts into `into`. Returns the member count. */
export async function unpack(kind: ArchiveKind, file: string, into: string, uri: string): Promise<number> {
  const list = kind === 'tar.gz' ? await run('tar', ['-tzf', file]) : await run('unzip', ['-Z1', file]);
  if (list.code !== 0) {
    if (kind === 'zip' && /empty/i.test(list.stdout + list.stderr)) throw new FetchError(`archive ${redactUri(uri)} is empty: check spec.artifact`);
    throw new FetchError(`${redactUri(uri)} is not a valid ${kind === 'zip' ? 'zip' : 'gzip-compressed tar'} archive (${lastLines(list.stderr || list.stdout)}): check spec.artifact or rename it so that its suffix matches its format`);
  }
  const entries = safeEntries(list.stdout.split('\n'));
  if (!entries.length) throw new FetchError(`archive ${redactUri(uri)} is empty: check spec.artifact`);
  await mkdir(into, { recursive: true });
  const x = kind === 'tar.gz' ? await run('tar', ['-xzf', file, '-C', into, '--no-same-owner']) : await run('unzip', ['-qq', '-o', file, '-d', into]);
  // unzip exits 1 on warnings after extracting everything.
  if (x.code !== 0 && !(kind === 'zip' && x.code === 1)) throw new FetchError(`unpacking ${redactUri(uri)} failed (${lastLines(x.stderr || x.stdout)}): check the archive and the free space on the model volume (spec size)`);
  return entries.length;
}
