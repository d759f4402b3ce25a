import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { releases } from './changelog.ts';
import { fileAt, lastPublished, requireCommit, tagCommit } from './published.ts';

describe('the last published release', () => {
  const { version, commit } = lastPublished;

  it('is a commit of this clone whose chart has that version', () => {
    requireCommit(commit);
    expect(parse(fileAt(commit, 'Chart.yaml')).version).toBe(version);
    expect(JSON.parse(fileAt(commit, 'package.json')).version).toBe(version);
  });

  it('is a release of CHANGELOG.md, dated in that commit', () => {
    const changelog = readFileSync(new URL('../../CHANGELOG.md', import.meta.url), 'utf8');
    const entry = releases(changelog).find((r) => r.name === version);
    expect(entry?.date, `CHANGELOG.md has no "## [${version}] - DATE"`).toBeDefined();
    // The release's own CHANGELOG already named it and its date.
    expect(releases(fileAt(commit, 'CHANGELOG.md')).find((r) => r.name === version)?.date).toEqual(entry!.date);
  });

  it('agrees with its tag wherever the clone has the tag', () => {
    const tagged = tagCommit(`v${version}`);
    if (tagged !== undefined) expect(tagged).toBe(commit);
    expect(tagCommit('v0.0.0-never-tagged')).toBeUndefined();
  });
});
