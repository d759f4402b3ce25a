// Container images the real node runs, built on this machine: a rootfs of Debian's static busybox
// (httpd, sh, sleep, wget, nslookup) and an /etc/passwd with the unprivileged user 65532, made into an image by
// podman (import, then save as an OCI archive). The archive is cached outside the repository, keyed
// by the busybox binary and the recipe, so a machine builds it once.
// Podman works in a storage of its own for each build (no shared state with other users of podman).
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheRoot } from '../cache.mjs';
import { log } from '../log.ts';
import { execOkSync } from '../exec.ts';

export interface ImageArchive {
  /** Image reference the archive holds, e.g. localhost/ml-operator/busybox:1.35.0. */
  name: string;
  /** OCI archive (podman save --format oci-archive). */
  archive: string;
}

const busybox = '/bin/busybox';
const applets = [
  'sh',
  'httpd',
  'sleep',
  'wget',
  'cat',
  'echo',
  'date',
  'mkdir',
  'ls',
  'id',
  'kill',
  'nslookup',
  'timeout',
];
/** The image's default command, which also makes it the node's sandbox image: sleep until killed. */
const defaultCommand = '["/bin/sleep","infinity"]';

/** Why this machine cannot build the images, or undefined when it can. */
export function imageToolsProblem(): string | undefined {
  if (!existsSync(busybox)) return `${busybox} is missing: apt-get install busybox-static`;
  // A dynamic busybox names its loader near the start of the file; the image has no libraries.
  if (readFileSync(busybox).subarray(0, 4096).includes('ld-linux'))
    return `${busybox} is linked dynamically: apt-get install busybox-static`;
  try {
    execOkSync('podman', ['--version']);
  } catch {
    return 'podman is missing: apt-get install podman';
  }
  return undefined;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): string {
  return execOkSync(command, args, { env }).stdout;
}

/** The busybox image (built, or from the cache). */
export function busyboxImage(): ImageArchive {
  const problem = imageToolsProblem();
  if (problem) throw new Error(problem);
  const version = run(busybox, ['--help']).match(/BusyBox v(\d+\.\d+\.\d+)/)?.[1] ?? 'unknown';
  const name = `localhost/ml-operator/busybox:${version}`;
  const key = createHash('sha256')
    .update(readFileSync(busybox))
    .update(applets.join(','))
    .update(defaultCommand)
    .digest('hex')
    .slice(0, 10);
  const dir = join(cacheRoot(), 'images');
  const archive = join(dir, `busybox-${version}-${key}.oci.tar`);
  if (existsSync(archive)) return { name, archive };
  const started = Date.now();
  log(`images: building ${name} with podman`);
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'ml-operator-image-'));
  try {
    const rootfs = join(work, 'rootfs');
    for (const d of ['bin', 'etc', 'tmp', 'proc', 'sys', 'dev', 'www']) mkdirSync(join(rootfs, d), { recursive: true });
    chmodSync(join(rootfs, 'tmp'), 0o1777);
    writeFileSync(join(rootfs, 'bin', 'busybox'), readFileSync(busybox), { mode: 0o755 });
    for (const applet of applets) symlinkSync('busybox', join(rootfs, 'bin', applet));
    writeFileSync(
      join(rootfs, 'etc', 'passwd'),
      'root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/sh\n',
    );
    writeFileSync(join(rootfs, 'etc', 'group'), 'root:x:0:\nnonroot:x:65532:\n');
    writeFileSync(join(rootfs, 'www', 'index.html'), 'busybox\n');
    const tarball = join(work, 'rootfs.tar');
    // Fixed owners and times: the same busybox gives the same layer.
    run('tar', [
      '--numeric-owner',
      '--owner=0',
      '--group=0',
      '--mtime=1970-01-01',
      '--sort=name',
      '-C',
      rootfs,
      '-cf',
      tarball,
      '.',
    ]);
    const podman = ['--root', join(work, 'storage'), '--runroot', join(work, 'run'), '--storage-driver', 'vfs'];
    // Podman reads containers.conf even to import; one of its own keeps the host's settings out.
    const conf = join(work, 'containers.conf');
    writeFileSync(
      conf,
      '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n',
    );
    const env = { ...process.env, CONTAINERS_CONF: conf };
    run('podman', [...podman, 'import', '--change', `CMD ${defaultCommand}`, tarball, name], env);
    const tmp = `${archive}.tmp-${process.pid}`;
    run('podman', [...podman, 'save', '--format', 'oci-archive', '-o', tmp, name], env);
    renameSync(tmp, archive);
    log(`images: ${name} built in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  } finally {
    // vfs layers may hold read-only directories; podman's own reset removes them.
    rmSync(work, { recursive: true, force: true });
  }
  return { name, archive };
}
