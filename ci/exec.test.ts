import { describe, expect, it } from 'vitest';
import { ExecError, exec, execOk, execOkSync, execSync } from './exec.ts';

const sh = (script: string) => ['-c', script];

describe('exec', () => {
  it('collects stdout and stderr apart, and both in the order they came', async () => {
    const r = await exec('sh', sh('echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three'));
    expect(r).toMatchObject({ code: 0, signal: null, stdout: 'one\nthree\n', stderr: 'two\n', timedOut: false });
    expect(r.output).toBe('one\ntwo\nthree\n');
  });

  it('writes the input to stdin, and runs in cwd with env', async () => {
    const r = await exec('sh', sh('cat; pwd; echo "$GREETING"'), {
      input: 'in\n',
      cwd: '/tmp',
      env: { GREETING: 'hi', PATH: process.env.PATH },
    });
    expect(r.stdout).toBe('in\n/tmp\nhi\n');
  });

  it('execOk throws what failed: the command, its exit and the end of its output', async () => {
    const failing = execOk('sh', sh('echo progress; echo "no such chart" >&2; exit 3'));
    await expect(failing).rejects.toThrow(ExecError);
    await expect(failing).rejects.toThrow(
      'sh -c "echo progress; echo \\"no such chart\\" >&2; exit 3" exited with 3:\nprogress\nno such chart',
    );
  });

  it('kills a command that runs past its timeout, and says so', async () => {
    const started = Date.now();
    const r = await exec('sleep', ['30'], { timeoutMs: 100 });
    expect(r).toMatchObject({ code: null, signal: 'SIGTERM', timedOut: true });
    expect(Date.now() - started).toBeLessThan(10_000);
    await expect(execOk('sleep', ['30'], { timeoutMs: 100 })).rejects.toThrow(
      'sleep 30 did not finish within 100 ms and said nothing',
    );
  });

  it('rejects when the command cannot start', async () => {
    await expect(exec('/nonexistent/tool', [])).rejects.toThrow(
      'cannot run /nonexistent/tool: spawn /nonexistent/tool ENOENT',
    );
  });
});

describe('execSync', () => {
  it('gives the same result, blocking', () => {
    expect(execSync('sh', sh('cat; echo err >&2; exit 2'), { input: 'x' })).toEqual({
      code: 2,
      signal: null,
      stdout: 'x',
      stderr: 'err\n',
      output: 'xerr\n',
      timedOut: false,
    });
    expect(execOkSync('sh', sh('echo ok')).stdout).toBe('ok\n');
    expect(() => execOkSync('sh', sh('exit 4'))).toThrow('sh -c "exit 4" exited with 4 and said nothing');
    expect(execSync('sleep', ['30'], { timeoutMs: 100 })).toMatchObject({
      code: null,
      signal: 'SIGTERM',
      timedOut: true,
    });
    expect(() => execSync('/nonexistent/tool', [])).toThrow('cannot run /nonexistent/tool');
  });
});
