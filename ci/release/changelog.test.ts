import { describe, expect, it } from 'vitest';
import { changesOf, releases, releaseUnreleased } from './changelog.ts';

const changelog = `# Changelog

## [Unreleased]

### Fixed

- A bug that spans
  two lines.

## [0.2.0] - 2026-01-02

### Added

- Canary rollouts.

### Security

- Pin the base image.

## [0.1.0] - 2025-12-01

### Added

- First release.
`;

describe('changesOf', () => {
  it("lists a release's changes with Artifact Hub's kinds", () => {
    expect(changesOf(changelog, '0.2.0')).toEqual([
      { kind: 'added', description: 'Canary rollouts.' },
      { kind: 'security', description: 'Pin the base image.' },
    ]);
  });

  it('joins continued bullets', () => {
    expect(changesOf(changelog, 'Unreleased')).toEqual([{ kind: 'fixed', description: 'A bug that spans two lines.' }]);
  });

  it('is undefined for a version without a section', () => {
    expect(changesOf(changelog, '9.9.9')).toBeUndefined();
  });

  it('refuses a section Keep a Changelog does not know', () => {
    expect(() => changesOf('## [1.0.0] - 2026-01-01\n\n### Improved\n\n- x\n', '1.0.0')).toThrow(
      /"### Improved" is not a Keep a Changelog section/,
    );
  });
});

describe('releaseUnreleased', () => {
  it('turns Unreleased into the release, under a new empty Unreleased', () => {
    const released = releaseUnreleased(changelog, '0.3.0', '2026-02-03');
    expect(releases(released)).toEqual([
      { name: 'Unreleased', date: undefined },
      { name: '0.3.0', date: '2026-02-03' },
      { name: '0.2.0', date: '2026-01-02' },
      { name: '0.1.0', date: '2025-12-01' },
    ]);
    expect(changesOf(released, '0.3.0')).toEqual([{ kind: 'fixed', description: 'A bug that spans two lines.' }]);
    expect(changesOf(released, 'Unreleased')).toEqual([]);
  });

  it('leaves a changelog that already has the version alone', () => {
    expect(releaseUnreleased(changelog, '0.2.0', '2026-02-03')).toBe(changelog);
  });
});
