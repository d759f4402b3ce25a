import { describe, expect, it } from 'vitest';
import type { MachineLearningEndpoint } from '../api/generated.ts';
import { compareResourceVersions, WrittenStatuses } from './read-your-writes.ts';

const at = (resourceVersion: string, state: 'Updating' | 'InService' = 'Updating') =>
  ({
    metadata: { name: 'e', namespace: 'n', resourceVersion },
    spec: { config: 'c' },
    status: { state },
  }) as MachineLearningEndpoint;

describe('compareResourceVersions', () => {
  it('orders integers by value, however long', () => {
    expect(compareResourceVersions('9', '10')).toBe(-1);
    expect(compareResourceVersions('123456789012345678901', '99')).toBe(1);
    expect(compareResourceVersions('42', '42')).toBe(0);
  });
  it('does not compare what is not a canonical integer', () => {
    for (const [a, b] of [
      ['0', '1'],
      ['01', '2'],
      ['abc', '1'],
      ['', '1'],
    ])
      expect(compareResourceVersions(a, b)).toBeUndefined();
  });
});

describe('WrittenStatuses', () => {
  it('overlays the last write on any older cached object, and lets go once the cache has it', () => {
    const w = new WrittenStatuses();
    w.remember('n/e', '10', '11', { state: 'InService' });
    w.remember('n/e', '10', '12', { state: 'RollingBack' });
    expect(w.view('n/e', at('10')).status?.state).toBe('RollingBack');
    expect(w.view('n/e', at('11')).status?.state).toBe('RollingBack');
    expect(w.view('n/e', at('12', 'InService')).status?.state).toBe('InService');
    // Forgotten once caught up: a later older view (a re-list) is not overlaid any more.
    expect(w.view('n/e', at('11')).status?.state).toBe('Updating');
  });
  it('trusts a cached object newer than the write (someone changed the endpoint since)', () => {
    const w = new WrittenStatuses();
    w.remember('n/e', '10', '11', { state: 'RollingBack' });
    expect(w.view('n/e', at('13', 'InService')).status?.state).toBe('InService');
  });
  it('with versions that do not compare, overlays only the versions the writes were based on or produced before', () => {
    const w = new WrittenStatuses();
    w.remember('n/e', 'a', 'b', { state: 'InService' });
    w.remember('n/e', 'a', 'c', { state: 'RollingBack' });
    expect(w.view('n/e', at('b')).status?.state).toBe('RollingBack');
    expect(w.view('n/e', at('a')).status?.state).toBe('RollingBack');
    expect(w.view('n/e', at('z')).status?.state).toBe('Updating');
  });
});
