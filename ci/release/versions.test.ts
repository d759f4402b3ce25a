import { describe, expect, it } from 'vitest';
import { invalidVersion } from './versions.ts';

describe('invalidVersion', () => {
  it.each(['0.1.0', '1.0.0', '10.20.30', '1.0.0-rc.1', '1.0.0-alpha-2.x'])('accepts %s', (version) => {
    expect(invalidVersion(version)).toBeUndefined();
  });

  it.each([
    ['v1.2.3', 'no "v" prefix (use 1.2.3)'],
    ['1.2', 'is not a semantic version'],
    ['01.2.3', 'is not a semantic version'],
    ['1.2.3-', 'is not a semantic version'],
    ['1.2.3+build', 'build metadata'],
  ])('refuses %s', (version, reason) => {
    expect(invalidVersion(version)).toContain(reason);
  });
});
