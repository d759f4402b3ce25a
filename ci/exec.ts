// Runs a command and collects what it says: the one way the CI scripts and the tests do it. exec/execSync
// return the exit and the output whatever happened; execOk/execOkSync throw an ExecError, which names the
// command, how it ended and the end of its output. Commands whose output streams to the terminal (the Go
// builds, vitest) and long-running processes (servers, the controller) are spawned where they are used.
import { spawn, spawnSync } from 'node:child_process';

export interface ExecResult {
  /** The exit code, or null when a signal ended the command. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr together, in the order they came (execSync: stdout, then stderr). */
  output: string;
  /** The command ran longer than timeoutMs and was killed. */
  timedOut: boolean;
}

export interface ExecOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Written to the command's stdin (a manifest, a password for `--password-stdin`), then stdin is closed. */
  input?: string | Buffer;
  /** Kills the command (SIGTERM) after this long. */
  timeoutMs?: number;
}

/** How many lines of its output a failure shows. */
const shownLines = 40;

export class ExecError extends Error {
  readonly result: ExecResult;

  constructor(command: string, args: readonly string[], result: ExecResult, options: ExecOptions) {
    const shown = [command, ...args.map((a) => (/[\s"'$]/.test(a) ? JSON.stringify(a) : a))].join(' ');
    const ended = result.timedOut
      ? `did not finish within ${options.timeoutMs} ms`
      : result.code === null
        ? `was killed by ${result.signal}`
        : `exited with ${result.code}`;
    const output = result.output.trim().split('\n').slice(-shownLines).join('\n');
    super(`${shown} ${ended}${output ? `:\n${output}` : ' and said nothing'}`);
    this.name = 'ExecError';
    this.result = result;
  }
}

function stdio(input: ExecOptions['input']): ['ignore' | 'pipe', 'pipe', 'pipe'] {
  return [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'];
}

/** Runs a command to its end; rejects only when it cannot start (not found, not executable). */
export function exec(command: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const { cwd, env, input, timeoutMs } = options;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: env ?? process.env, stdio: stdio(input) });
    let stdout = '';
    let stderr = '';
    let output = '';
    let timedOut = false;
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      output += chunk.toString();
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      output += chunk.toString();
    });
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGTERM');
          }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${command}: ${err.message}`, { cause: err }));
    });
    // 'close', not 'exit': the output is complete only once the pipes are.
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, output, timedOut });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Runs a command that must succeed: its result, or an ExecError. */
export async function execOk(command: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const result = await exec(command, args, options);
  if (result.code !== 0) throw new ExecError(command, args, result, options);
  return result;
}

/** exec, blocking: for set-up steps that have nothing else to do meanwhile. */
export function execSync(command: string, args: readonly string[], options: ExecOptions = {}): ExecResult {
  const { cwd, env, input, timeoutMs } = options;
  const r = spawnSync(command, args, {
    cwd,
    env: env ?? process.env,
    input,
    stdio: stdio(input),
    encoding: 'utf8',
    timeout: timeoutMs,
    maxBuffer: 256 << 20,
  });
  if (r.error && (r.error as NodeJS.ErrnoException).code !== 'ETIMEDOUT') {
    throw new Error(`cannot run ${command}: ${r.error.message}`, { cause: r.error });
  }
  const stdout = r.stdout;
  const stderr = r.stderr;
  return { code: r.status, signal: r.signal, stdout, stderr, output: stdout + stderr, timedOut: r.error !== undefined };
}

/** execOk, blocking. */
export function execOkSync(command: string, args: readonly string[], options: ExecOptions = {}): ExecResult {
  const result = execSync(command, args, options);
  if (result.code !== 0) throw new ExecError(command, args, result, options);
  return result;
}
