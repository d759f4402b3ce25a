// The container engine of the image build: Debian's podman (with runc), configured by files of its
// own under the project's cache (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF), so that its settings and
// its image store never depend on, or change, the machine's.
//
// The settings are those that work in a sandbox with cgroups v1 and without the right to set
// resource limits: no default ulimits (runc's `error setting rlimit type 7: operation not permitted`
// otherwise: containers.conf's default RLIMIT_NOFILE is refused), runc with cgroupfs (no systemd),
// and builds isolated by chroot.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheRoot } from '../cache.mjs';
import { ensureDebianPackages, requireDebianPackages, type DebianPackage } from '../debian.ts';

export const podmanPackages: readonly DebianPackage[] = [
  { name: 'podman', file: '/usr/bin/podman' },
  { name: 'runc', file: '/usr/sbin/runc' },
];

export const containersDir = () => join(cacheRoot(), 'containers');

/** The environment podman runs with: its configuration and image store under the project's cache. */
export function podmanEnv(): NodeJS.ProcessEnv {
  const dir = containersDir();
  mkdirSync(dir, { recursive: true });
  const containersConf = join(dir, 'containers.conf');
  const storageConf = join(dir, 'storage.conf');
  writeAtomically(
    containersConf,
    [
      '# Written by ci/image/podman.ts.',
      '[containers]',
      '# Setting a resource limit (the default RLIMIT_NOFILE) is refused in a sandbox without the right to.',
      'default_ulimits = []',
      '[engine]',
      "# Debian's runc (installed with podman), with cgroups v1 managed without systemd.",
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      '',
    ].join('\n'),
  );
  writeAtomically(
    storageConf,
    [
      '# Written by ci/image/podman.ts.',
      '[storage]',
      'driver = "overlay"',
      `graphroot = "${join(dir, 'storage')}"`,
      `runroot = "${join(dir, 'run')}"`,
      '',
    ].join('\n'),
  );
  return { ...process.env, CONTAINERS_CONF: containersConf, CONTAINERS_STORAGE_CONF: storageConf };
}

/**
 * Replaces a file in one step (a new file renamed over it), and only when its text changes: podman
 * reads these while other podman commands of the same run start, and a reader that found the file
 * truncated mid-write ran with podman's default RLIMIT_NOFILE, refused here (`error setting rlimit
 * type 7: operation not permitted`, seen once in CI on c066af6).
 */
function writeAtomically(path: string, text: string): void {
  try {
    if (readFileSync(path, 'utf8') === text) return;
  } catch {
    // Not there yet.
  }
  const next = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(next, text);
  renameSync(next, path);
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface PodmanOptions {
  /** Called with each line of output (stdout and stderr) as it comes. */
  onLine?: (line: string) => void;
  /** Kill podman after this long (default: 20 minutes). */
  timeoutMs?: number;
}

/** Runs podman with the project's configuration; resolves with its exit code and output. */
export function podman(
  args: readonly string[],
  { onLine, timeoutMs = 20 * 60_000 }: PodmanOptions = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('podman', args, { env: podmanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let pending = '';
    const lines = (chunk: string) => {
      if (!onLine) return;
      pending += chunk;
      const parts = pending.split('\n');
      pending = parts.pop()!;
      for (const line of parts) onLine(line);
    };
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      lines(c.toString());
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
      lines(c.toString());
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (pending && onLine) onLine(pending);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

/** Runs podman and fails with its output when it exits non-zero. */
export async function podmanOk(args: readonly string[], options?: PodmanOptions): Promise<string> {
  const result = await podman(args, options);
  if (result.code !== 0) {
    throw new Error(
      `podman ${args.join(' ')} exited with ${result.code}:\n${(result.stdout + result.stderr).trim().split('\n').slice(-40).join('\n')}`,
    );
  }
  return result.stdout;
}

/** Installs podman and runc when missing (root), or fails with the command that does. */
export function ensurePodman(): void {
  ensureDebianPackages(podmanPackages, 'the image build');
}

export function requirePodman(): void {
  requireDebianPackages(podmanPackages, 'the image build');
}
