// An archive's members as its tool lists them, and the checks made on that listing before anything
// is extracted: names that stay inside the target, types that are safe to write, links that point
// inside the artifact.
import { FetchError } from './errors.ts';
import { markerName, tempPrefix } from './install.ts';

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

/** One line of `zipinfo -s -T`, or undefined for a line that is not a member (the header, the totals). */
export function parseZipLine(line: string): ArchiveMember | undefined {
  const m = zipLine.exec(line);
  return m ? { name: m[3], type: zipTypes[m[1]] ?? 'unknown', size: Number(m[2]) } : undefined;
}

/** A member's path as segments, without empty and `.` ones. */
export const segmentsOf = (path: string) => path.split(/[\\/]+/).filter((s) => s !== '' && s !== '.');

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
