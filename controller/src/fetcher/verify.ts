// Checks on what was fetched: its byte count and digest, and a tree that is safe to serve.
import { createHash } from 'node:crypto';
import { chmod, lstat, readdir, readlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { Transform } from 'node:stream';
import { FetchError } from './errors.ts';
import { redactUri } from './uri.ts';

export interface DownloadResult {
  bytes: number;
  sha256: string;
}

/** A pass-through stream that counts and hashes what flows through it. */
export function digestingStream(): { stream: Transform; result(): DownloadResult } {
  const hash = createHash('sha256');
  let bytes = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      bytes += chunk.length;
      cb(null, chunk);
    },
  });
  return { stream, result: () => ({ bytes, sha256: hash.digest('hex') }) };
}

/** Throws unless the download has the expected digest; runs before anything is unpacked or installed. */
export function checkDigest(result: DownloadResult, expected: string, uri: string): void {
  if (result.sha256 !== expected) {
    throw new FetchError(`sha256 mismatch for ${redactUri(uri)}: expected ${expected}, got ${result.sha256}; nothing was installed: check spec.artifactSha256 and that the artifact is the one it was computed from`);
  }
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
        const target = await readlink(p);
        const resolved = resolve(dirname(p), target);
        if (isAbsolute(target) || (resolved !== root && !resolved.startsWith(root + sep))) {
          throw new FetchError(`unsafe artifact: symbolic link ${rel} points outside the artifact (${target}): use relative links inside it`);
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
