import { describe, expect, it } from 'vitest';
import { contains, quantityValue, upToDate } from './compare.ts';
import { desiredHashAnnotation } from './labels.ts';

describe('quantityValue', () => {
  it('reads the suffixes the API server uses', () => {
    expect(quantityValue('500m')).toBe(0.5);
    expect(quantityValue('2Gi')).toBe(2 * 2 ** 30);
    expect(quantityValue('1k')).toBe(1000);
    expect(quantityValue('1e3')).toBe(1000);
    expect(quantityValue(2)).toBe(2);
    expect(quantityValue('web')).toBeUndefined();
  });
  it('reads E as exa, and only E followed by digits as an exponent', () => {
    expect(quantityValue('2E')).toBe(2e18);
    expect(quantityValue('7.6031E')).toBeCloseTo(7.6031e18, -6);
    expect(quantityValue('2E3')).toBe(2000);
    expect(contains({ cpu: '7603100T' }, { cpu: '7.6031E' })).toBe(true);
  });
});

describe('contains', () => {
  it('accepts fields the server added', () => {
    expect(contains({ a: 1, b: 2, c: { d: 3, e: 4 } }, { a: 1, c: { d: 3 } })).toBe(true);
  });
  it('sees a changed or missing field', () => {
    expect(contains({ a: 1 }, { a: 2 })).toBe(false);
    expect(contains({}, { a: 1 })).toBe(false);
  });
  it('compares quantities by value, as the server canonicalises them', () => {
    expect(contains({ cpu: '1' }, { cpu: '1000m' })).toBe(true);
    expect(contains({ memory: '1Gi' }, { memory: '1024Mi' })).toBe(true);
    expect(contains({ cpu: '2' }, { cpu: '1' })).toBe(false);
  });
  it('sees a resource quantity as the server stores it: rounded up to thousandths', () => {
    expect(contains({ cpu: '286m' }, { cpu: '.28511' })).toBe(true);
    expect(contains({ memory: '1m' }, { memory: '97n' })).toBe(true);
    expect(contains({ memory: '1m' }, { memory: '.01n' })).toBe(true);
    expect(contains({ storage: '419860317m' }, { storage: '0.40041Mi' })).toBe(true);
    expect(contains({ cpu: '483291194983m' }, { cpu: '.4501Gi' })).toBe(true);
    expect(contains({ cpu: '483291194984m' }, { cpu: '.4501Gi' })).toBe(false);
    expect(contains({ storage: '6149m' }, { storage: '6.1486' })).toBe(true);
    expect(contains({ cpu: '501m' }, { cpu: '500m' })).toBe(false);
    expect(contains({ cpu: '1' }, { cpu: '999m' })).toBe(false);
  });
  it('needs arrays of the same length', () => {
    expect(contains([{ a: 1, b: 2 }], [{ a: 1 }])).toBe(true);
    expect(contains([{ a: 1 }, { a: 2 }], [{ a: 1 }])).toBe(false);
  });
});

describe('upToDate', () => {
  const desired = {
    metadata: { name: 'x', annotations: { [desiredHashAnnotation]: 'h1' }, labels: { a: 'b' } },
    spec: { replicas: 2 },
  };
  it('is true for a live object with our hash and every field', () => {
    expect(
      upToDate(
        {
          metadata: { name: 'x', annotations: { [desiredHashAnnotation]: 'h1' }, labels: { a: 'b' }, uid: 'u' },
          spec: { replicas: 2, paused: false },
        },
        desired,
      ),
    ).toBe(true);
  });
  it('is false when the hash differs (we changed what we want)', () => {
    expect(
      upToDate(
        {
          metadata: { name: 'x', annotations: { [desiredHashAnnotation]: 'h0' }, labels: { a: 'b' } },
          spec: { replicas: 2 },
        },
        desired,
      ),
    ).toBe(false);
  });
  it('is false when someone else changed a field we set', () => {
    expect(
      upToDate(
        {
          metadata: { name: 'x', annotations: { [desiredHashAnnotation]: 'h1' }, labels: { a: 'b' } },
          spec: { replicas: 5 },
        },
        desired,
      ),
    ).toBe(false);
  });
  it('is false when the object does not exist', () => {
    expect(upToDate(undefined, desired)).toBe(false);
  });
});
