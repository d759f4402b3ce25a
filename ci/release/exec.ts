// Runs a command (helm, mostly) and captures what it says, for the release scripts and their tests.
import { spawn } from 'node:child_process';

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
