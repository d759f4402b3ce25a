import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../../wait.ts';
import { refreshEvery } from './refresh.ts';

describe('a configMap volume kept up to date', () => {
  it('never writes what an older read found after what a newer one found', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'refresh-test-'));
    const file = join(dir, 'config.json');
    try {
      // The source changes once; the first read was made before the change and its answer is slow.
      let version = 'old';
      let reads = 0;
      const read = async () => {
        const seen = version;
        const slow = reads++ === 0;
        await new Promise((r) => setTimeout(r, slow ? 120 : 1));
        return seen;
      };
      const written: string[] = [];
      const abort = new AbortController();
      refreshEvery(
        20,
        async () => {
          const text = await read();
          writeFileSync(file, text);
          written.push(text);
        },
        abort.signal,
      );
      setTimeout(() => (version = 'new'), 40);
      await waitFor('the new version written', 5000, async () => (written.includes('new') ? true : undefined));
      // Once the new version is written, nothing older follows it.
      await new Promise((r) => setTimeout(r, 200));
      abort.abort();
      expect(written.slice(written.indexOf('new'))).not.toContain('old');
      expect(readFileSync(file, 'utf8')).toBe('new');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
