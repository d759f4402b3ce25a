// codegen() against a temporary copy of the repository's schemas: it writes every output, then
// `check` reports exactly what is stale or obsolete and writes nothing.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { codegen } from './main.ts';
import { header, LintError } from './outputs.ts';

const repo = join(import.meta.dirname, '..');

function tempRoot(): string {
  const root = mkdtempSync(join(tmpdir(), 'ml-operator-codegen-'));
  cpSync(join(repo, 'schemas'), join(root, 'schemas'), { recursive: true });
  return root;
}

describe('codegen', () => {
  const roots: string[] = [];
  afterAll(() => roots.forEach((root) => rmSync(root, { recursive: true, force: true })));

  it('writes every output, after which a check finds nothing to do', async () => {
    const root = tempRoot();
    roots.push(root);
    const first = await codegen(root, { check: false });
    expect(first.stale).toEqual([
      'controller/src/api/generated.ts',
      'templates/crds/machinelearningendpoints.ml-operator.dev.yaml',
      'templates/crds/machinelearningendpointconfigs.ml-operator.dev.yaml',
      'templates/crds/machinelearningmodels.ml-operator.dev.yaml',
      'deploy/crds.yaml',
      'docs/api.md',
    ]);
    expect(await codegen(root, { check: true })).toEqual({ stale: [], obsolete: [] });
  });

  it('with check, lists a stale and an obsolete file and writes nothing', async () => {
    const root = tempRoot();
    roots.push(root);
    await codegen(root, { check: false });
    const edited = join(root, 'docs/api.md');
    writeFileSync(edited, 'edited by hand\n');
    const obsolete = join(root, 'templates/crds/oldthings.ml-operator.dev.yaml');
    writeFileSync(obsolete, `{{/* ${header} */}}\n`);
    writeFileSync(join(root, 'templates/crds/handwritten.yaml'), 'kind: ConfigMap\n');

    expect(await codegen(root, { check: true })).toEqual({
      stale: ['docs/api.md'],
      obsolete: ['templates/crds/oldthings.ml-operator.dev.yaml'],
    });
    expect(readFileSync(edited, 'utf8')).toBe('edited by hand\n');

    await codegen(root, { check: false });
    expect(await codegen(root, { check: true })).toEqual({ stale: [], obsolete: [] });
    expect(readFileSync(join(root, 'templates/crds/handwritten.yaml'), 'utf8')).toBe('kind: ConfigMap\n');
  });

  it('stops on a lint error, naming file and path, before writing anything', async () => {
    const root = tempRoot();
    roots.push(root);
    const file = join(root, 'schemas/machinelearningmodel.schema.json');
    const schema = JSON.parse(readFileSync(file, 'utf8'));
    delete schema.properties.spec.properties.port.type;
    writeFileSync(file, JSON.stringify(schema));
    const run = codegen(root, { check: false });
    await expect(run).rejects.toThrow(LintError);
    await expect(run).rejects.toThrow(
      'schemas/machinelearningmodel.schema.json: /properties/spec/properties/port: missing "type"',
    );
    expect(await codegen(root, { check: true }).catch((err: unknown) => err)).toBeInstanceOf(LintError);
  });

  it('the repository itself is up to date', async () => {
    expect(await codegen(repo, { check: true })).toEqual({ stale: [], obsolete: [] });
  });
});
