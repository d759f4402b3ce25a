import { describe, expect, it } from 'vitest';
import * as first from './netns.ts';

describe('createNetworkNamespace', () => {
  it('gives distinct namespaces and veth addresses to two copies of this module in one process', async () => {
    // A test runner may evaluate the module once per project (vitest's global setups of the
    // integration and oldest projects): each copy has its own counter, the process id is the same.
    const copy = new URL('netns.ts?copy', import.meta.url).href;
    const second = (await import(/* @vite-ignore */ copy)) as typeof first;
    expect(second.createNetworkNamespace).not.toBe(first.createNetworkNamespace);
    const a = first.createNetworkNamespace();
    try {
      const b = second.createNetworkNamespace();
      try {
        expect(b.name).not.toBe(a.name);
        expect(b.address).not.toBe(a.address);
      } finally {
        b.remove();
      }
    } finally {
      a.remove();
    }
  });
});
