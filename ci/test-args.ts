// What `npm test`'s arguments ask for (ci/test.ts): whether they name test files, whether they run
// part of the tests only, and the vitest runs ("phases") they make.

/** Options whose value is the next argument, beside any `--name value`. */
const valueOptions = new Set(['-t']);

/** The arguments name test files (one file while working on it): positional ones, not an option's value. */
export function namesFiles(args: readonly string[]): boolean {
  return args.some((arg, i) => {
    const previous = args[i - 1];
    const isValue =
      previous !== undefined && ((previous.startsWith('--') && !previous.includes('=')) || valueOptions.has(previous));
    return !arg.startsWith('-') && !isValue;
  });
}

/** The run is of part of the tests only: named files, or tests picked by name. */
export const runsPart = (args: readonly string[]): boolean =>
  namesFiles(args) || args.some((a) => a === '-t' || a.startsWith('--testNamePattern'));

/**
 * The vitest runs, in order. The `quiet` project (latencies judged on the real node, each file on a
 * cluster of its own) runs in a vitest of its own, after every other project's: vitest stops the
 * other projects' control planes only when it closes, and two idle control planes on two cores were
 * felt in hundreds of milliseconds of its clients' tail. A run that names projects keeps that order
 * for the ones it names; a run that names files runs as asked.
 */
export function phases(argv: readonly string[]): string[][] {
  const projects: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--project' && i + 1 < argv.length) projects.push(argv[++i]);
    else if (arg.startsWith('--project=')) projects.push(arg.slice('--project='.length));
    else rest.push(arg);
  }
  const quiet = projects.length === 0 || projects.includes('quiet');
  const others = projects.length === 0 ? ['!quiet'] : projects.filter((p) => p !== 'quiet');
  if (!quiet || namesFiles(argv) || others.length === 0) return [[...argv]];
  return [
    [...others.map((p) => `--project=${p}`), ...rest],
    ['--project=quiet', ...rest],
  ];
}
