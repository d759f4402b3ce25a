// Golden files: the fixture schema in testdata/ and what every generator makes of it. After an
// intended change, regenerate them with UPDATE_GOLDENS=1 and review the diff.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderOutputs } from './outputs.ts';

const testdata = join(import.meta.dirname, 'testdata');
const update = process.env.UPDATE_GOLDENS === '1';

const goldenNames: Record<string, string> = {
  'controller/src/api/generated.ts': 'widget.generated.ts',
  'templates/crds/widgets.example.dev.yaml': 'widget.helm-crd.yaml',
  'deploy/crds.yaml': 'widget.crds.yaml',
  'docs/api.md': 'widget.api.md',
};

describe('golden files of the fixture schema', async () => {
  const source = {
    path: 'codegen/testdata/widget.schema.json',
    text: readFileSync(join(testdata, 'widget.schema.json'), 'utf8'),
  };
  const outputs = await renderOutputs([source]);

  it('produces exactly the outputs that have goldens', () => {
    expect(outputs.map(({ path }) => path).sort()).toEqual(Object.keys(goldenNames).sort());
  });

  for (const { path, content } of outputs) {
    const golden = join(testdata, goldenNames[path] ?? 'unexpected');
    it(`${path} matches testdata/${goldenNames[path]}`, () => {
      if (update) writeFileSync(golden, content);
      expect(existsSync(golden), `missing golden ${golden}: run with UPDATE_GOLDENS=1`).toBe(true);
      expect(content).toBe(readFileSync(golden, 'utf8'));
    });
  }
});
