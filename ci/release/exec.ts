// The release scripts' entry point. They run commands (helm, mostly) with ci/exec.ts.
import { fileURLToPath } from 'node:url';

/**
 * Runs a script's `main` when the file is executed directly (not imported by a test): its result
 * is the exit code, and an error becomes one line on stderr prefixed with the command's name.
 */
export function runMain(moduleUrl: string, command: string, main: (argv: string[]) => Promise<number>): void {
  if (process.argv[1] !== fileURLToPath(moduleUrl)) return;
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (err: unknown) => {
      process.stderr.write(`${command}: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
