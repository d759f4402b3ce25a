import { describe, expect, it } from 'vitest';
import { canonicalJson, contentVersion, versionedName } from './names.ts';

const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

describe('contentVersion', () => {
  it('does not depend on key order', () => {
    expect(contentVersion({ a: 1, b: { c: 2, d: 3 } })).toBe(contentVersion({ b: { d: 3, c: 2 }, a: 1 }));
  });
  it('changes with the content', () => {
    expect(contentVersion({ image: 'a:1' })).not.toBe(contentVersion({ image: 'a:2' }));
  });
  it('ignores undefined fields, as JSON does', () => {
    expect(canonicalJson({ a: 1, b: undefined })).toBe('{"a":1}');
  });
});

describe('versionedName', () => {
  it('joins a short base and the version', () => {
    expect(versionedName('titanic', '0123456789')).toBe('titanic-0123456789');
  });
  it('keeps long names a DNS label of at most 63 characters, with the version whole', () => {
    const name = versionedName('a'.repeat(60) + '-model', 'abcdef0123');
    expect(name.length).toBeLessThanOrEqual(63);
    expect(name).toMatch(dnsLabel);
    expect(name.endsWith('-abcdef0123')).toBe(true);
  });
  it('gives two long bases with a common prefix different names', () => {
    const prefix = 'x'.repeat(70);
    expect(versionedName(`${prefix}-one`, 'v')).not.toBe(versionedName(`${prefix}-two`, 'v'));
  });
  it('never ends the cut base with a dash', () => {
    const name = versionedName(`${'a'.repeat(46)}-----------------b`, '0123456789');
    expect(name).toMatch(dnsLabel);
    expect(name).not.toContain('--');
  });
});
