import { describe, expect, it } from 'vitest';
import { safeEntries } from './unpack.ts';

describe('safeEntries', () => {
  it('accepts relative members', () => {
    expect(safeEntries(['./', './model.bin', 'sub/', 'sub/a..b', ''])).toEqual(['./', './model.bin', 'sub/', 'sub/a..b']);
  });
  it('refuses members that escape the target or hit the fetcher files', () => {
    for (const bad of ['../evil', '/etc/passwd', 'a/../../b', './..', 'a\\..\\..\\b', 'C:/x', '.ml-operator-artifact', './.fetch-x/y']) {
      expect(() => safeEntries(['ok', bad]), bad).toThrow(/unsafe archive/);
    }
  });
});
