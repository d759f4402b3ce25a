import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkProperty, propertySeed } from './property.ts';

const options = { numRuns: 300, shrinkMs: 5000, replay: 'SEED=1', log: () => undefined };

describe('checkProperty', () => {
  it('runs exactly the samples it is asked for', async () => {
    let tried = 0;
    const r = await checkProperty(
      fc.asyncProperty(fc.integer(), async () => {
        tried++;
      }),
      { ...options, seed: 1 },
    );
    expect(r.numRuns).toBe(300);
    expect(tried).toBe(300);
  });

  it('fails on a failure that its replay reproduces, with the shrunk example', async () => {
    const property = fc.asyncProperty(fc.integer({ min: 0, max: 1000 }), async (n) => {
      if (n > 100) throw new Error(`${n} is over 100`);
    });
    await expect(checkProperty(property, { ...options, seed: 7 })).rejects.toThrow(
      /the property failed on sample \d+ of seed 7 \(replay: SEED=1\):\n\d+ is over 100\n\nits replay failed again, shrunk to:\n[\s\S]*Counterexample: \[101\]/,
    );
  });

  it('fails on a failure that its replay does not reproduce', async () => {
    // Fails once, on the 5th sample: as a race in the system under test would.
    let calls = 0;
    const property = fc.asyncProperty(fc.integer(), async () => {
      if (++calls === 5) throw new Error('failed once');
    });
    await expect(checkProperty(property, { ...options, seed: 3 })).rejects.toThrow(
      /failed once\n\nits replay passed: the failure did not reproduce/,
    );
  });

  it('draws a new seed unless one is given', () => {
    const seeds = new Set(Array.from({ length: 5 }, () => propertySeed(undefined)));
    expect(seeds.size).toBeGreaterThan(1);
    expect(propertySeed('42')).toBe(42);
    expect(() => propertySeed('x')).toThrow('property seed "x": expected an integer');
  });
});
