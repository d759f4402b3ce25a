// Ends a vitest run with one plain line, "vitest: N passed, N failed, N skipped", that CI and a
// person can read without scrolling through the per-file report, then a line for each failure: the
// file, the test and the first line of its error. When ML_OPERATOR_TEST_SUMMARY names a file, the
// same goes there as JSON, for `npm test` (ci/test.ts) to repeat once every phase has run: CI keeps
// the end of a run's output, and a failure of the first phase would otherwise be far above it.
import { appendFileSync } from 'node:fs';
import { relative } from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';

/** What one vitest run reports: its counts and each failure, one line apiece. */
export interface RunSummary {
  passed: number;
  failed: number;
  skipped: number;
  failures: string[];
}

interface ErrorLike {
  message?: string;
  name?: string;
}

const firstLine = (error: ErrorLike | undefined): string => {
  const text = (error?.message ?? error?.name ?? 'unknown error').trim();
  const line = text.split('\n', 1)[0];
  return line.length > 300 ? `${line.slice(0, 300)}...` : line;
};

export function summarize(modules: readonly TestModule[], unhandled: readonly ErrorLike[]): RunSummary {
  const summary: RunSummary = { passed: 0, failed: 0, skipped: 0, failures: [] };
  for (const module of modules) {
    const file = relative(process.cwd(), module.moduleId);
    // Errors outside any test: a file that does not load, a failing beforeAll or afterAll.
    for (const error of module.errors()) summary.failures.push(`${file}: ${firstLine(error)}`);
    for (const test of module.children.allTests()) {
      const result = test.result();
      if (result.state === 'passed') summary.passed++;
      else if (result.state === 'failed') {
        summary.failed++;
        summary.failures.push(`${file} > ${test.fullName}: ${firstLine(result.errors?.[0])}`);
      } else summary.skipped++;
    }
  }
  for (const error of unhandled) summary.failures.push(`unhandled: ${firstLine(error)}`);
  return summary;
}

export const summaryLines = (s: RunSummary): string[] => [
  `vitest: ${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped`,
  ...s.failures.map((f) => `  failed: ${f}`),
];

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: readonly TestModule[], unhandled: readonly ErrorLike[]): void {
    const summary = summarize(modules, unhandled);
    process.stdout.write(`\n${summaryLines(summary).join('\n')}\n`);
    const file = process.env.ML_OPERATOR_TEST_SUMMARY;
    if (file) appendFileSync(file, `${JSON.stringify(summary)}\n`);
  }
}
