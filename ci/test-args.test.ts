import { describe, expect, it } from 'vitest';
import { namesFiles, phases, runsPart } from './test-args.ts';

describe("npm test's arguments", () => {
  it('a whole run: every project but quiet, then quiet in a vitest of its own', () => {
    expect(phases([])).toEqual([['--project=!quiet'], ['--project=quiet']]);
    expect(phases(['--reporter', 'verbose'])).toEqual([
      ['--project=!quiet', '--reporter', 'verbose'],
      ['--project=quiet', '--reporter', 'verbose'],
    ]);
  });

  it('named projects keep the order: quiet last, alone; without quiet, one run', () => {
    expect(phases(['--project', 'integration', '--project=quiet', '--project', 'soak'])).toEqual([
      ['--project=integration', '--project=soak'],
      ['--project=quiet'],
    ]);
    expect(phases(['--project', 'unit'])).toEqual([['--project', 'unit']]);
    expect(phases(['--project=quiet'])).toEqual([['--project=quiet']]);
  });

  it('named files run as asked, in one vitest, and are a part of the tests', () => {
    const file = ['test/integration/shadow-verdicts.test.ts'];
    expect(namesFiles(file)).toBe(true);
    expect(phases(file)).toEqual([file]);
    expect(runsPart(file)).toBe(true);
  });

  it("an option's value is no file; tests picked by name are a part of the tests", () => {
    expect(namesFiles(['--project', 'quiet'])).toBe(false);
    expect(namesFiles(['-t', 'promotes'])).toBe(false);
    expect(runsPart(['-t', 'promotes'])).toBe(true);
    expect(runsPart(['--testNamePattern=promotes'])).toBe(true);
    expect(runsPart(['--project', 'integration'])).toBe(false);
  });
});
