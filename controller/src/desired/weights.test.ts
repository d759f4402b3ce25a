import { describe, expect, it } from 'vitest';
import { percentages } from './weights.ts';

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

describe('percentages', () => {
  it('keeps exact shares', () => {
    expect(percentages([80, 20])).toEqual([80, 20]);
    expect(percentages([4, 1])).toEqual([80, 20]);
  });
  it('gives the only positive weight everything', () => {
    expect(percentages([0, 5, 0])).toEqual([0, 100, 0]);
  });
  it('sums to exactly 100 when shares are fractions', () => {
    expect(percentages([1, 1, 1])).toEqual([34, 33, 33]);
    expect(percentages([2, 1])).toEqual([67, 33]);
    for (const weights of [
      [1, 1, 1, 1, 1, 1, 1],
      [3, 7, 11],
      [1, 999],
      [13, 17, 19, 23],
    ]) {
      expect(sum(percentages(weights))).toBe(100);
    }
  });
  it('never gives a zero weight a share', () => {
    expect(percentages([0, 1, 1, 1])).toEqual([0, 34, 33, 33]);
  });
  it('lets a tiny weight round to zero rather than break the sum', () => {
    const result = percentages([1, 1000]);
    expect(sum(result)).toBe(100);
    expect(result).toEqual([0, 100]);
  });
  it('rejects weights that route nothing or are not integers', () => {
    expect(() => percentages([0, 0])).toThrow(/greater than 0/);
    expect(() => percentages([1.5])).toThrow(/integers/);
    expect(() => percentages([-1, 2])).toThrow(/integers/);
  });
});
