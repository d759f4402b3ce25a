// A real OCI registry on loopback (a free port of 127.0.0.1), for the chart's publishing tests and
// the controller image's push: the `registry` server of Debian's docker-registry package (the
// reference implementation, distribution), storing into a directory of the caller's or a temporary
// one that stop() removes. .ci/run installs the package.
// With `inNetwork`, it runs in a local cluster's network namespace (nsenter --net) on the
// namespace's address instead: the real node's containerd pulls from there, and the host reaches
// the same address over the namespace's veth pair (podman push, helm push).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alive, freePort } from '../processes.ts';
import { waitFor } from '../wait.ts';

export const registryBinary = '/usr/bin/docker-registry';

export interface Registry {
  /** `127.0.0.1:PORT` */
  host: string;
  pid: number;
  logs(): string;
  /** SIGTERM, wait for the exit, and make sure the process is gone (and its temporary storage). */
  stop(): Promise<void>;
}

/** Fails with the command that installs the registry when it is missing (never skips). */
export function requireRegistryBinary(): void {
  if (!existsSync(registryBinary)) {
    throw new Error(
      `${registryBinary} is missing: the publishing tests need a local OCI registry. ` +
        'Install it with `apt-get update && apt-get install -y docker-registry` (Debian; .ci/run does this in CI).',
    );
  }
}

/**
 * Starts a registry storing into `dir` (default: a temporary directory, removed by stop()). With
 * `htpasswd` (lines `user:bcrypt-hash`), it requires HTTP basic authentication.
 */
export async function startRegistry(
  dir?: string,
  { htpasswd, inNetwork }: { htpasswd?: string; inNetwork?: { namespace: string; address: string } } = {},
): Promise<Registry> {
  requireRegistryBinary();
  const temporary = dir === undefined;
  const home = dir ?? mkdtempSync(join(tmpdir(), 'ml-operator-registry-'));
  mkdirSync(join(home, 'storage'), { recursive: true });
  // The namespace's ports are its own: a fixed one there.
  const host = inNetwork ? `${inNetwork.address}:5000` : `127.0.0.1:${await freePort()}`;
  const auth = htpasswd ? `auth:\n  htpasswd:\n    realm: ml-operator-test\n    path: ${join(home, 'htpasswd')}\n` : '';
  if (htpasswd) writeFileSync(join(home, 'htpasswd'), htpasswd);
  writeFileSync(
    join(home, 'config.yml'),
    `version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${join(home, 'storage')}\n` +
      `http:\n  addr: ${host}\n  secret: ml-operator-test\n${auth}`,
  );
  // nsenter execs the registry: the child's pid is the registry's.
  const [program, args] = inNetwork
    ? ['nsenter', [`--net=/run/netns/${inNetwork.namespace}`, registryBinary, 'serve', join(home, 'config.yml')]]
    : [registryBinary, ['serve', join(home, 'config.yml')]];
  const child: ChildProcess = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const pid = child.pid!;
  const registry: Registry = {
    host,
    pid,
    logs: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const ended = async () => (child.exitCode !== null || child.signalCode !== null ? true : undefined);
        await waitFor(`the registry (pid ${pid}) to exit on SIGTERM`, 10_000, ended).catch(async () => {
          child.kill('SIGKILL');
          await exited;
        });
      }
      if (alive(pid)) throw new Error(`the registry (pid ${pid}) is still running`);
      if (temporary) rmSync(home, { recursive: true, force: true });
    },
  };
  try {
    await waitFor(
      `the registry to answer on ${host}`,
      15_000,
      async () => {
        if (child.exitCode !== null) throw new Error(`the registry exited with ${child.exitCode}`);
        const response = await fetch(`http://${host}/v2/`);
        return response.status === 200 || response.status === 401 ? true : undefined;
      },
      () => output,
    );
  } catch (err) {
    await registry.stop();
    throw err;
  }
  return registry;
}
