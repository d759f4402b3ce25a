// The local cluster's network: a network namespace of its own, so that pods get real addresses that
// the API server accepts in EndpointSlices (it refuses loopback) and that processes can listen on.
// Inside it, 198.18.0.0/16 (RFC 2544's range for network tests) is local on the loopback device, so
// every pod address of that range can be bound; a veth pair joins it to the host, so that a shell on
// the host reaches the API server and the gateway at the namespace's side of the pair.
// Removing the namespace removes the veth pair with it; namespaces whose owner died are reaped.
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { alive } from '../processes.ts';
import { execOkSync } from '../exec.ts';

const prefix = 'mlop-';
/** Pod addresses: local on the namespace's loopback, one /24 per node. */
export const podRange = '198.18.0.0/16';
/** Addresses of the veth pairs: one /30 per namespace, the host side .1, the namespace side .2. */
const linkRange = [198, 19] as const;
/** The /30 blocks of the link range's last /24 are never taken: the real node's pods have it (real-node.ts). */
const linkBlocks = 16384 - 64;

export interface NetworkNamespace {
  readonly name: string;
  /** The namespace's side of the veth pair: the API server and the gateway listen here, reachable from the host. */
  readonly address: string;
  /** The host's side of the veth pair. */
  readonly hostAddress: string;
  /** argv that runs `command args...` inside the namespace (with its own /etc/hosts). */
  command(command: string, args: string[]): [string, string[]];
  /**
   * argv that runs `command args...` in the namespace's network only, in the host's mount namespace:
   * its mounts are seen by every other process, and /sys (cgroups) is the host's. `ip netns exec`
   * gives each process a mount namespace of its own and a /sys without the cgroup mounts.
   */
  hostMountsCommand(command: string, args: string[]): [string, string[]];
  /** Sets the namespace's /etc/hosts (names that processes started in it resolve). */
  setHosts(entries: Record<string, string>): void;
  remove(): void;
}

function ip(args: string[]): string {
  return execOkSync('ip', args).stdout;
}

/** Why this machine cannot make a network namespace, or undefined when it can. */
export function networkNamespaceProblem(): string | undefined {
  if (process.platform !== 'linux')
    return `the local cluster needs Linux network namespaces; this is ${process.platform}`;
  if (process.getuid?.() !== 0) {
    return 'the local cluster runs in a network namespace of its own (ip netns add, a veth pair), which needs root: run it as root (or in a container with CAP_NET_ADMIN and CAP_SYS_ADMIN)';
  }
  try {
    ip(['-V']);
  } catch {
    return 'the local cluster needs the `ip` command (Debian package iproute2) to create its network namespace: apt-get install iproute2';
  }
  return undefined;
}

function ownerOf(name: string): number | undefined {
  const m = name.match(/^mlop-(\d+)-\d+$/);
  return m ? Number(m[1]) : undefined;
}

function namespaces(): string[] {
  return ip(['netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => n.startsWith(prefix));
}

function removeNamespace(name: string): void {
  try {
    ip(['netns', 'delete', name]);
  } catch {
    // Already gone.
  }
  rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
}

/** Removes namespaces (and their veth pairs and hosts files) whose owner process is gone. */
export function reapOrphanNamespaces(): void {
  for (const name of namespaces()) {
    const owner = ownerOf(name);
    if (owner !== undefined && !alive(owner)) removeNamespace(name);
  }
  if (!existsSync('/etc/netns')) return;
  for (const name of readdirSync('/etc/netns')) {
    const owner = ownerOf(name);
    if (owner !== undefined && !alive(owner)) rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
  }
}

/** A free /30 of the link range, chosen from the host's current addresses. */
function freeLinkBlock(): number {
  const used = new Set(
    [...ip(['-o', '-4', 'addr', 'show']).matchAll(/inet (\d+)\.(\d+)\.(\d+)\.(\d+)\//g)]
      .filter((m) => Number(m[1]) === linkRange[0] && Number(m[2]) === linkRange[1])
      .map((m) => Number(m[3]) * 64 + Math.floor(Number(m[4]) / 4)),
  );
  const start = process.pid % linkBlocks;
  for (let i = 0; i < linkBlocks; i++) {
    const block = (start + i) % linkBlocks;
    if (!used.has(block)) return block;
  }
  throw new Error(`no free /30 left in ${linkRange.join('.')}.0.0/16 for the local cluster's veth pair`);
}

let created = 0;

export function createNetworkNamespace(): NetworkNamespace {
  const problem = networkNamespaceProblem();
  if (problem) throw new Error(problem);
  reapOrphanNamespaces();
  // The counter is this module's own, and a test runner may load the module more than once in one
  // process (vitest's global setups of two projects): skip names this process holds already.
  const taken = new Set(namespaces());
  while (taken.has(`${prefix}${process.pid}-${created}`)) created++;
  const name = `${prefix}${process.pid}-${created++}`;
  const id = `${process.pid.toString(36)}${created}`;
  const hostLink = `mlop${id}h`;
  const nsLink = `mlop${id}n`;
  const block = freeLinkBlock();
  const base = `${linkRange[0]}.${linkRange[1]}.${Math.floor(block / 64)}`;
  const low = (block % 64) * 4;
  const hostAddress = `${base}.${low + 1}`;
  const address = `${base}.${low + 2}`;
  try {
    ip(['netns', 'add', name]);
    ip(['-n', name, 'link', 'set', 'lo', 'up']);
    // Every address of the pod range is local: a process may bind any of them.
    ip(['-n', name, 'route', 'add', 'local', podRange, 'dev', 'lo']);
    ip(['link', 'add', hostLink, 'type', 'veth', 'peer', 'name', nsLink, 'netns', name]);
    ip(['addr', 'add', `${hostAddress}/30`, 'dev', hostLink]);
    ip(['link', 'set', hostLink, 'up']);
    ip(['-n', name, 'addr', 'add', `${address}/30`, 'dev', nsLink]);
    ip(['-n', name, 'link', 'set', nsLink, 'up']);
  } catch (err) {
    removeNamespace(name);
    throw new Error(`cannot create the local cluster's network namespace ${name}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  let removed = false;
  return {
    name,
    address,
    hostAddress,
    command: (command, args) => ['ip', ['netns', 'exec', name, command, ...args]],
    hostMountsCommand: (command, args) => ['nsenter', [`--net=/run/netns/${name}`, '--', command, ...args]],
    setHosts(entries) {
      mkdirSync(`/etc/netns/${name}`, { recursive: true });
      const lines = [
        '127.0.0.1 localhost',
        '::1 localhost',
        ...Object.entries(entries).map(([host, addr]) => `${addr} ${host}`),
      ];
      writeFileSync(`/etc/netns/${name}/hosts`, lines.join('\n') + '\n');
    },
    remove() {
      if (removed) return;
      removed = true;
      removeNamespace(name);
    },
  };
}
