// Runs a command (helm, mostly) and captures what it says, for the release scripts and their tests.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Written to the command's stdin (e.g. a password for `--password-stdin`), then stdin is closed. */
  input?: string;
}

export function exec(command: string, args: string[], { cwd, env, input }: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: env ?? process.env, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Runs a command that must succeed; throws with its output otherwise. */
export async function execOk(command: string, args: string[], options: ExecOptions = {}): Promise<ExecResult> {
  const result = await exec(command, args, options);
  if (result.code !== 0) {
    const shown = args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ');
    throw new Error(`${command} ${shown} exited with ${result.code}:\n${(result.stderr || result.stdout).trim()}`);
  }
  return result;
}

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
