// Installing into the target: every entry moved into place with one rename(2), the marker written
// last, and the temporary directories of runs that died cleaned up.
import { randomUUID } from 'node:crypto';
import { chmod, lstat, readFile, readdir, rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Log } from './log.ts';
import type { ArchiveKind } from './uri.ts';

export const markerName = '.ml-operator-artifact';
export const tempPrefix = '.fetch-';
const staleTempMs = 60 * 60 * 1000;

const isReserved = (name: string) => name === markerName || name.startsWith(tempPrefix) || name === 'lost+found';

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

async function moveAside(path: string, trash: string): Promise<void> {
  try {
    await rename(path, join(trash, randomUUID()));
  } catch (e) {
    if (errno(e) !== 'ENOENT') throw e;
  }
}

/**
 * Moves the tree `src` into `dest`, each entry with one rename(2): files replace files atomically,
 * directories are merged, entries of `dest` that `src` lacks are removed (at the top level, the
 * fetcher's own files are kept). Safe when another replica installs the same tree at once.
 */
export async function install(src: string, dest: string, trash: string, top = true): Promise<void> {
  const names = await readdir(src);
  for (const name of names) {
    const s = join(src, name);
    const d = join(dest, name);
    for (let tries = 0; ; tries++) {
      const [ss, ds] = await Promise.all([
        lstat(s),
        lstat(d).catch((e: unknown) => {
          if (errno(e) === 'ENOENT') return null;
          throw e;
        }),
      ]);
      if (ss.isDirectory() && ds?.isDirectory()) {
        await install(s, d, trash, false);
        break;
      }
      if (ds && (ds.isDirectory() || ss.isDirectory())) await moveAside(d, trash);
      try {
        await rename(s, d);
        break;
      } catch (e) {
        if (tries >= 5 || !['EEXIST', 'ENOTEMPTY', 'EISDIR', 'ENOTDIR'].includes(errno(e) ?? '')) throw e;
      }
    }
  }
  const keep = new Set(names);
  for (const name of await readdir(dest)) {
    if (keep.has(name) || (top && isReserved(name))) continue;
    await moveAside(join(dest, name), trash);
  }
}

/** Removes a tree even when it holds directories without write permission (as a non-root user). */
export async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
  } catch {
    const open = async (p: string): Promise<void> => {
      const st = await lstat(p).catch(() => null);
      if (!st?.isDirectory()) return;
      await chmod(p, 0o700).catch(() => {});
      for (const n of await readdir(p).catch(() => [] as string[])) await open(join(p, n));
    };
    await open(path);
    await rm(path, { recursive: true, force: true });
  }
}

/** Removes `.fetch-*` directories left by runs that died more than `maxAgeMs` ago. */
export async function removeStaleTemps(
  target: string,
  log: Log,
  maxAgeMs = staleTempMs,
  now = Date.now(),
): Promise<void> {
  for (const name of await readdir(target)) {
    if (!name.startsWith(tempPrefix)) continue;
    const p = join(target, name);
    const st = await lstat(p).catch(() => null);
    if (!st || now - st.mtimeMs <= maxAgeMs) continue;
    await removeTree(p).then(
      () => log('info', 'removed stale temporary directory', { path: p }),
      (e: unknown) =>
        log('warn', 'could not remove stale temporary directory', { path: p, error: (e as Error).message }),
    );
  }
}

export interface Marker {
  uri: string;
  sha256: string | null;
  bytes: number;
  kind: ArchiveKind | 'file' | 'directory';
  fetchedAt: string;
}

/** Whether the marker names this artifact: the same URI and, when a digest is expected, that digest. */
export function markerMatches(marker: Marker | null, uri: string, sha256: string | undefined): marker is Marker {
  return marker?.uri === uri && (sha256 === undefined || marker.sha256 === sha256);
}

export async function readMarker(target: string): Promise<Marker | null> {
  try {
    const m = JSON.parse(await readFile(join(target, markerName), 'utf8')) as Marker;
    return typeof m?.uri === 'string' ? m : null;
  } catch {
    return null;
  }
}

/** The name of a plain file in the target: the path's last segment unless it is one of the fetcher's own. */
export function safeBasename(path: string): string {
  const name = basename(path.replace(/\/+$/, ''));
  return name && name !== '.' && name !== '..' && !isReserved(name) ? name : 'artifact';
}
