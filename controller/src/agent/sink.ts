// Where captured files go: a directory (file://, a mounted claim) or an object store (stores.ts).
// A sink writes whole files: the capture buffer rotates them by size and time, then hands each over once.
import { access, constants, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Env, Log } from '../fetcher/log.ts';

export interface Sink {
  /** The destination as configured, for status and messages. */
  readonly destination: string;
  /** Throws, with what to check, when the destination cannot be written (tried at start and while unhealthy). */
  check(): Promise<void>;
  /** Writes one file at `key` (relative to the destination's prefix). */
  put(key: string, body: Buffer): Promise<void>;
  close(): void;
}

export type SinkOpener = (destination: string, env: Env, log: Log, timeoutMs: number) => Promise<Sink>;

/** A directory on a mounted volume. Each file appears whole: written beside, then renamed. */
export function fileSink(destination: string): Sink {
  const root = normalize(fileURLToPath(destination));
  let seq = 0;
  return {
    destination,
    async check() {
      try {
        await mkdir(root, { recursive: true });
        await access(root, constants.W_OK);
      } catch (e) {
        throw new Error(
          `cannot write to ${root} (${(e as Error).message}): check that the claim is mounted and writable by the agent's user`,
          { cause: e },
        );
      }
    },
    async put(key, body) {
      const path = join(root, key);
      if (!path.startsWith(`${root}/`)) throw new Error(`capture key ${key} leaves ${root}`);
      const temporary = join(dirname(path), `.${process.pid}-${++seq}.tmp`);
      try {
        await mkdir(dirname(path), { recursive: true });
        await writeFile(temporary, body);
        await rename(temporary, path);
      } catch (e) {
        await rm(temporary, { force: true }).catch(() => {});
        throw new Error(
          `writing ${path} failed (${(e as Error).message}): check that the claim is mounted, writable and not full`,
          { cause: e },
        );
      }
    },
    close() {},
  };
}
