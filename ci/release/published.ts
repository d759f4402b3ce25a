// The last published release and the commit it was built from, in one place: the upgrade test
// (test/integration/chart-upgrade.test.ts) rebuilds that release from git, chart and controller,
// and upgrades it to the working tree. The annotated tag `v<version>` marks the same commit, but
// tags are not in every clone (CI checkouts often fetch none, and `git fetch` brings only tags that
// point into fetched history), while every full clone has the commit: so the commit is what counts,
// and ci/release/published.test.ts checks that the tag, where present, agrees with it.
// After publishing a release: `git tag -a vX.Y.Z <commit> -m ...`, push the tag, and update this.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execOkSync } from '../exec.ts';

export interface PublishedRelease {
  /** The chart version (also the CRDs' and the controller image's). */
  version: string;
  /** The full id of the commit the release was packaged from. */
  commit: string;
}

export const lastPublished: PublishedRelease = { version: '0.1.0', commit: 'f3a805a37e9fb7e10aab1691e608037695abbb74' };

const repositoryRoot = dirname(dirname(dirname(fileURLToPath(import.meta.url))));

function git(args: string[], root = repositoryRoot): string {
  return execOkSync('git', args, { cwd: root }).stdout;
}

/** Throws, saying how to get it, when the clone lacks the commit (a shallow clone, say). */
export function requireCommit(commit: string, root = repositoryRoot): void {
  try {
    git(['cat-file', '-e', `${commit}^{commit}`], root);
  } catch {
    throw new Error(
      `commit ${commit} is not in this clone: the release it was published from needs the full history (git fetch --unshallow, or a clone without --depth)`,
    );
  }
}

/** The content of `path` at `commit`. */
export function fileAt(commit: string, path: string, root = repositoryRoot): string {
  requireCommit(commit, root);
  return git(['show', `${commit}:${path}`], root);
}

/** The entries of `paths` that exist at `commit`. */
export function pathsAt(commit: string, paths: readonly string[], root = repositoryRoot): string[] {
  requireCommit(commit, root);
  const present = new Set(
    git(['ls-tree', '--name-only', commit, ...paths], root)
      .split('\n')
      .filter(Boolean),
  );
  return paths.filter((p) => present.has(p));
}

/** Writes `paths` as they were at `commit` into `dest` (created when missing), with `git archive` (a binary pipe). */
export function extractAt(commit: string, paths: readonly string[], dest: string, root = repositoryRoot): void {
  requireCommit(commit, root);
  mkdirSync(dest, { recursive: true });
  const archive = execFileSync('git', ['archive', '--format=tar', commit, '--', ...paths], {
    cwd: root,
    maxBuffer: 256 << 20,
  });
  execFileSync('tar', ['-x', '-C', dest], { input: archive });
}

/** The commit an annotated or lightweight tag points at, or undefined when the clone has no such tag. */
export function tagCommit(tag: string, root = repositoryRoot): string | undefined {
  try {
    return git(['rev-parse', '--verify', '--quiet', `refs/tags/${tag}^{commit}`], root).trim() || undefined;
  } catch {
    return undefined;
  }
}
