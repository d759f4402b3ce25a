// Base images made at most one at a time in a process, each once: the upgrade test builds the
// release's and the working tree's controller images at once, on the same base.
import { describe, expect, it } from 'vitest';
import { serially } from './base-builds.ts';

describe('base image builds in one process', () => {
  it('makes an image asked for twice at once only once, and never two images at the same time', async () => {
    let running = 0;
    let most = 0;
    const made: string[] = [];
    const make = (name: string) => async () => {
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, 20));
      running--;
      made.push(name);
      return name;
    };
    const results = await Promise.all([
      serially('a-test', make('a')),
      serially('a-test', make('a again')),
      serially('b-test', make('b')),
    ]);
    expect(results).toEqual(['a', 'a', 'b']);
    expect(made).toEqual(['a', 'b']);
    expect(most).toBe(1);
  });

  it('tries a failed build again when asked again, and lets the next one run', async () => {
    await expect(serially('c-test', () => Promise.reject(new Error('mmdebstrap failed')))).rejects.toThrow(
      'mmdebstrap failed',
    );
    await expect(serially('c-test', () => Promise.resolve('c'))).resolves.toBe('c');
  });
});
