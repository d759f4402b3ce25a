// The controller's layers (docs/architecture.md): every file imports only from its own folder or
// from folders below it, folders of one level do not import each other, the two programs of model
// pods stand apart (the fetcher imports nothing of the rest; the agent only the fetcher's object-store
// clients and log, and the pure comparison of compare/), and there is no import cycle. A reader following one endpoint key never climbs back up.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const src = dirname(fileURLToPath(import.meta.url));

/** The level of each folder (or top-level file), lowest first; one level may hold several folders. */
export const layers: Record<string, number> = {
  api: 0,
  'log.ts': 0,
  options: 1,
  kube: 1,
  compare: 1,
  runtime: 2,
  desired: 2,
  rollout: 3,
  routing: 3,
  probes: 4,
  reconcile: 5,
  controller: 6,
  'manager.ts': 7,
  'main.ts': 8,
};

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? files(join(dir, e.name))
      : e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')
        ? [join(dir, e.name)]
        : [],
  );
}

const unitOf = (file: string) => relative(src, file).split('/')[0];

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^(?:import|export)[^;]*?from '(\.[^']+)'/gm)].map((m) => resolve(dirname(file), m[1]));
}

describe('the layers of controller/src', () => {
  const all = files(src);

  it('every file imports only its own folder and the folders below it', () => {
    const wrong: string[] = [];
    for (const file of all) {
      const from = unitOf(file);
      for (const target of importsOf(file)) {
        const to = unitOf(target);
        if (from === to) continue;
        if (from === 'agent' && (to === 'fetcher' || to === 'compare')) continue;
        if (from === 'fetcher' || to === 'fetcher' || from === 'agent' || to === 'agent') {
          wrong.push(
            `${relative(src, file)} -> ${relative(src, target)} (the programs of model pods, fetcher/ and agent/, stand apart)`,
          );
          continue;
        }
        if (layers[from] === undefined || layers[to] === undefined)
          wrong.push(
            `${relative(src, file)} -> ${relative(src, target)} (a folder with no layer: add it to docs/architecture.md and this test)`,
          );
        else if (layers[to] >= layers[from])
          wrong.push(
            `${relative(src, file)} (level ${layers[from]}) -> ${relative(src, target)} (level ${layers[to]})`,
          );
      }
    }
    expect(wrong).toEqual([]);
  });

  it('has no import cycle', () => {
    const graph = new Map(all.map((f) => [f, importsOf(f).filter((t) => all.includes(t))]));
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (f: string, path: string[]) => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'open') {
        cycles.push([...path.slice(path.indexOf(f)), f].map((x) => relative(src, x)).join(' -> '));
        return;
      }
      state.set(f, 'open');
      for (const t of graph.get(f) ?? []) visit(t, [...path, f]);
      state.set(f, 'done');
    };
    for (const f of all) visit(f, []);
    expect(cycles).toEqual([]);
  });
});
