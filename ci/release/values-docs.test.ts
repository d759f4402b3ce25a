import { describe, expect, it } from 'vitest';
import { docComment, spliceValuesSection, valueRows, valuesTable } from './values-docs.ts';

describe('docComment', () => {
  it('takes the text from `-- ` to the end of the block, joined into one line', () => {
    expect(docComment(' -- Controller replicas. More than one\n turns leader election on.')).toBe(
      'Controller replicas. More than one turns leader election on.',
    );
  });

  it('ignores what comes before `-- ` and after an empty comment line', () => {
    expect(docComment(' A file header.\n\n -- The value.\n\n Not about the value.')).toBe('The value.');
  });

  it('is undefined for a comment that documents nothing', () => {
    expect(docComment(' Just a note.')).toBeUndefined();
    expect(docComment(undefined)).toBeUndefined();
  });
});

describe('valueRows', () => {
  const values = `# A header that is not documentation.

global:
  # -- Shared value.
  shared: []
# -- One row for the whole map: its children are not documented.
resources:
  requests:
    cpu: 100m
# -- A map with documented children: a row of its own, then theirs.
config:
  # -- The domain.
  domain: example.com
  gateway:
    # -- The port.
    port: 80
    # -- A ratio.
    ratio: 0.5
# -- Pipes | are escaped.
mode: "a|b"
`;

  it('gives one row per documented value, in file order, with type and JSON default', () => {
    expect(valueRows(values)).toEqual([
      { key: 'global.shared', type: 'list', default: '`[]`', description: 'Shared value.' },
      {
        key: 'resources',
        type: 'object',
        default: '`{"requests":{"cpu":"100m"}}`',
        description: 'One row for the whole map: its children are not documented.',
      },
      {
        key: 'config',
        type: 'object',
        default: 'see below',
        description: 'A map with documented children: a row of its own, then theirs.',
      },
      { key: 'config.domain', type: 'string', default: '`"example.com"`', description: 'The domain.' },
      { key: 'config.gateway.port', type: 'int', default: '`80`', description: 'The port.' },
      { key: 'config.gateway.ratio', type: 'float', default: '`0.5`', description: 'A ratio.' },
      { key: 'mode', type: 'string', default: '`"a|b"`', description: 'Pipes | are escaped.' },
    ]);
  });

  it('prefixes keys and leaves out skipped top-level keys', () => {
    expect(
      valueRows(values, { prefix: 'controller.', skip: ['global', 'config', 'resources'] }).map((r) => r.key),
    ).toEqual(['controller.mode']);
  });

  it('renders a Markdown table with pipes escaped', () => {
    const table = valuesTable(valueRows('# -- Pipes | here.\nmode: "a|b"\n'));
    expect(table.split('\n')).toEqual([
      '| Key | Type | Default | Description |',
      '|-----|------|---------|-------------|',
      '| `mode` | string | `"a\\|b"` | Pipes \\| here. |',
    ]);
  });
});

describe('spliceValuesSection', () => {
  it('replaces the markers and what is between them', () => {
    const readme = 'intro\n<!-- values:start -->\nold\n<!-- values:end -->\noutro\n';
    expect(spliceValuesSection(readme, '<!-- values:start -->\nnew\n<!-- values:end -->')).toBe(
      'intro\n<!-- values:start -->\nnew\n<!-- values:end -->\noutro\n',
    );
  });

  it('says where the markers must go when they are missing', () => {
    expect(() => spliceValuesSection('no markers', 'x')).toThrow(
      /README\.md needs the markers <!-- values:start --> and <!-- values:end -->/,
    );
  });
});
