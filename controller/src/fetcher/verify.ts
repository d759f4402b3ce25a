// Checks on what was fetched: its size and digest, and a tree that is safe to serve.
import { createHash } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { chmod, lstat, readdir, readlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import { Transform } from 'node:stream';
import { FetchError } from './errors.ts';
import { redactUri } from './uri.ts';

/** Bounds on what one fetch may write to the model volume. */
export interface Limits {
  /** The download, and then the unpacked artifact, in bytes (--max-bytes: the variant's volume size); unbounded when absent. */
  maxBytes?: number;
  /** Files, directories and links that an archive or a pvc:// directory may create: a volume runs out of inodes too. */
  maxEntries: number;
}

/** Far above any model's file count (a Hugging Face repository holds tens), far below a volume's inodes. */
export const defaultMaxEntries = 100_000;

export const sizeAdvice = "raise the variant's size (spec.models[].size in the endpoint config)";

/** The artifact itself (the download, the pvc:// file or directory) is larger than the limit. */
export function tooLarge(uri: string, maxBytes: number, seen: string, done = 'nothing was installed'): FetchError {
  return new FetchError(
    `${redactUri(uri)} is larger than --max-bytes=${maxBytes}: ${seen}; ${done}: ${sizeAdvice} to fit the artifact`,
  );
}

export interface DownloadResult {
  bytes: number;
  sha256: string;
}

/** A pass-through stream that counts and hashes what flows through it, and fails once it passes `limit.maxBytes`. */
export function digestingStream(limit?: { maxBytes: number; uri: string }): {
  stream: Transform;
  result(): DownloadResult;
} {
  const hash = createHash('sha256');
  let bytes = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      if (limit && bytes > limit.maxBytes) {
        cb(tooLarge(limit.uri, limit.maxBytes, `the download was stopped after more than ${limit.maxBytes} bytes`));
        return;
      }
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  return { stream, result: () => ({ bytes, sha256: hash.digest('hex') }) };
}

/**
 * The bytes of the files under `dir` (a file with hard links once) and its entry count, without
 * following links; what vanishes meanwhile is skipped.
 */
export async function measureTree(dir: string): Promise<{ bytes: number; entries: number }> {
  let bytes = 0;
  let entries = 0;
  const linked = new Set<string>();
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true }).catch(() => [] as Dirent[])) {
      entries++;
      const p = join(d, entry.name);
      if (entry.isDirectory()) await walk(p);
      else if (entry.isFile()) {
        const st = await lstat(p).catch(() => null);
        const id = `${st?.dev}:${st?.ino}`;
        if (!st || (st.nlink > 1 && linked.has(id))) continue;
        if (st.nlink > 1) linked.add(id);
        bytes += st.size;
      }
    }
  };
  await walk(dir);
  return { bytes, entries };
}

/** Throws unless the download has the expected digest; runs before anything is unpacked or installed. */
export function checkDigest(result: DownloadResult, expected: string, uri: string): void {
  if (result.sha256 !== expected) {
    throw new FetchError(
      `sha256 mismatch for ${redactUri(uri)}: expected ${expected}, got ${result.sha256}; nothing was installed: check spec.artifactSha256 and that the artifact is the one it was computed from`,
    );
  }
}

/**
 * Follows the link at `path` as the server's open(2) would, through every further link, each one
 * read from the directory it really is in; false as soon as a step leaves `root`. Reading each
 * link alone is not enough: with a/b -> .., the link x -> a/b/.. reads as a/ but is root's parent.
 * `path` must lie under `root` through directories only (checkTree descends into no link).
 */
async function linkStaysInside(root: string, path: string): Promise<boolean> {
  const at = relative(root, dirname(path))
    .split(sep)
    .filter((s) => s !== '');
  const first = await readlink(path);
  if (isAbsolute(first)) return false;
  let pending = first.split('/');
  // Past the kernel's own limit open(2) fails with ELOOP, which reaches nothing.
  for (let hops = 0; pending.length && hops <= 40;) {
    const segment = pending.shift()!;
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (at.pop() === undefined) return false;
      continue;
    }
    const next = join(root, ...at, segment);
    if ((await lstat(next).catch(() => null))?.isSymbolicLink()) {
      const target = await readlink(next);
      if (isAbsolute(target)) return false;
      pending = [...target.split('/'), ...pending];
      hops++;
    } else at.push(segment);
  }
  return true;
}

/**
 * Walks the fetched tree: refuses symbolic links that point outside it and special files, and makes
 * everything readable by the server (which may run as another user): directories 0755, files 0644
 * (0755 when executable).
 */
export async function checkTree(root: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, entry.name);
      const rel = relative(root, p);
      if (entry.isSymbolicLink()) {
        if (!(await linkStaysInside(root, p))) {
          throw new FetchError(
            `unsafe artifact: symbolic link ${rel} points outside the artifact (${await readlink(p)}): use relative links inside it`,
          );
        }
      } else if (entry.isDirectory()) {
        await chmod(p, 0o755);
        await walk(p);
      } else if (entry.isFile()) {
        const st = await lstat(p);
        await chmod(p, st.mode & 0o111 ? 0o755 : 0o644);
        files++;
        bytes += st.size;
      } else {
        throw new FetchError(`unsupported entry ${rel} in the artifact (device, socket or pipe)`);
      }
    }
  };
  await walk(root);
  return { files, bytes };
}
