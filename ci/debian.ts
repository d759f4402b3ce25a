// Debian packages that a step of the project needs (the container engine of the image build, the
// rootfs builder of its base image): checked by the file each installs, and installed with apt-get
// when missing and this process may (root, apt-get present). .ci/run installs the same list before
// the tests, so that CI on a fresh machine never depends on what was installed by hand.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { log } from './log.ts';

export interface DebianPackage {
  name: string;
  /** A file the package installs: its presence says the package is there. */
  file: string;
}

export function missingDebianPackages(packages: readonly DebianPackage[]): DebianPackage[] {
  return packages.filter((p) => !existsSync(p.file));
}

function installCommand(packages: readonly DebianPackage[]): string {
  return `apt-get update && apt-get install -y --no-install-recommends ${packages.map((p) => p.name).join(' ')}`;
}

/** Fails with the command that installs what is missing (for tests: they never install). */
export function requireDebianPackages(packages: readonly DebianPackage[], why: string): void {
  const missing = missingDebianPackages(packages);
  if (missing.length) {
    throw new Error(
      `${why} needs ${missing.map((p) => `${p.name} (${p.file})`).join(', ')}: install with \`${installCommand(missing)}\` (.ci/run does this in CI)`,
    );
  }
}

/** Installs what is missing with apt-get as root; elsewhere fails with the command to run. */
export function ensureDebianPackages(packages: readonly DebianPackage[], why: string): void {
  const missing = missingDebianPackages(packages);
  if (!missing.length) return;
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) requireDebianPackages(packages, why);
  log(`${why}: installing the Debian packages ${missing.map((p) => p.name).join(' ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [
    ['update', '-qq'],
    ['install', '-y', '-qq', '--no-install-recommends', ...missing.map((p) => p.name)],
  ]) {
    const run = spawnSync('apt-get', args, { env, stdio: ['ignore', 'inherit', 'inherit'] });
    if (run.status !== 0) throw new Error(`apt-get ${args.join(' ')} exited with ${run.status ?? run.signal}`);
  }
  requireDebianPackages(packages, why);
}
