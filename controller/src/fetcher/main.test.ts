import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { markerName } from './install.ts';
import type { Env } from './log.ts';
import { main } from './main.ts';

// ---------------------------------------------------------------------------------------------
// Helpers: temp dirs, loopback servers, running main with captured logs

let dir: string;
let servers: (http.Server | https.Server)[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fetcher-test-'));
});
afterEach(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  servers = [];
  rmSync(dir, { recursive: true, force: true });
});

interface TestServer {
  url: string;
  port: number;
  hits: http.IncomingMessage[];
}

/** A loopback server; https with `tlsOptions` (see testCertificate). */
async function serve(
  handler: (req: http.IncomingMessage, res: http.ServerResponse, hit: number) => void,
  tlsOptions?: { key: string; cert: string },
): Promise<TestServer> {
  const hits: http.IncomingMessage[] = [];
  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    hits.push(req);
    handler(req, res, hits.length);
  };
  const server = tlsOptions ? https.createServer(tlsOptions, listener) : http.createServer(listener);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `${tlsOptions ? 'https' : 'http'}://127.0.0.1:${port}`, port, hits };
}

/** A self-signed certificate for 127.0.0.1, trusted by this process until `untrust()`. */
function testCertificate(): { key: string; cert: string; untrust(): void } {
  const certDir = mkdtempSync(join(tmpdir(), 'fetcher-tls-'));
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        join(certDir, 'key.pem'),
        '-out',
        join(certDir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    const key = readFileSync(join(certDir, 'key.pem'), 'utf8');
    const cert = readFileSync(join(certDir, 'cert.pem'), 'utf8');
    const before = tls.getCACertificates('default');
    tls.setDefaultCACertificates([...before, cert]);
    return { key, cert, untrust: () => tls.setDefaultCACertificates(before) };
  } finally {
    rmSync(certDir, { recursive: true, force: true });
  }
}

const sendFile = (res: http.ServerResponse, file: string) => {
  const body = readFileSync(file);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
  res.end(body);
};

/** Runs main with `options` (such as --sha256=...) before the URI and the target. */
async function run(uri: string, target: string, env: Env = {}, options: string[] = []) {
  const lines: string[] = [];
  const code = await main([...options, uri, target], env, {
    retryDelaysMs: [5, 10],
    timeoutMs: 5000,
    log: (l) => lines.push(l),
  });
  return { code, lines, logs: lines.map((l) => JSON.parse(l) as Record<string, unknown>), text: lines.join('\n') };
}

/** A model directory with a nested file, packed as .tar.gz and .zip. */
function makeModel(): { src: string; tgz: string; zip: string } {
  const src = join(dir, 'model-src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  writeFileSync(join(src, 'model.bin'), 'weights-123');
  writeFileSync(join(src, 'sub', 'config.json'), '{"layers":2}');
  const tgz = join(dir, 'model.tar.gz');
  execFileSync('tar', ['-czf', tgz, '-C', src, '.']);
  const zip = join(dir, 'model.zip');
  execFileSync('zip', ['-qr', zip, '.'], { cwd: src });
  return { src, tgz, zip };
}

const userFiles = (target: string) =>
  readdirSync(target)
    .filter((n) => !n.startsWith('.'))
    .sort();
const marker = (target: string) =>
  JSON.parse(readFileSync(join(target, markerName), 'utf8')) as { uri: string; sha256: string | null };
const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const sha256Of = (text: string) => createHash('sha256').update(text).digest('hex');
const errorOf = (r: { logs: Record<string, unknown>[] }) => r.logs.find((l) => l.level === 'error')?.msg;

// ---------------------------------------------------------------------------------------------
// http(s)://

describe('http', () => {
  it('unpacks a .tar.gz, writes the marker, and a second run does not fetch again', async () => {
    const { tgz } = makeModel();
    const server = await serve((_req, res) => sendFile(res, tgz));
    const target = join(dir, 'target');
    const uri = `${server.url}/models/model.tar.gz`;
    const first = await run(uri, target);
    expect(first.code, first.text).toBe(0);
    expect(userFiles(target)).toEqual(['model.bin', 'sub']);
    expect(readFileSync(join(target, 'sub', 'config.json'), 'utf8')).toBe('{"layers":2}');
    expect(marker(target)).toMatchObject({ uri, sha256: sha256(tgz) });
    expect(readdirSync(target).filter((n) => n.startsWith('.fetch-'))).toEqual([]);
    expect(first.logs.find((l) => l.msg === 'fetching')).toMatchObject({
      level: 'info',
      uri,
      bytes: statSync(tgz).size,
    });
    expect(statSync(join(target, 'model.bin')).mode & 0o777).toBe(0o644);

    const second = await run(uri, target);
    expect(second.code).toBe(0);
    expect(server.hits).toHaveLength(1);
    expect(second.logs.some((l) => l.msg === 'already fetched')).toBe(true);
  });

  it('saves a plain file under its basename and replaces an earlier artifact', async () => {
    const server = await serve((req, res) => res.end(req.url === '/a/weights.bin' ? 'W' : 'other'));
    const target = join(dir, 'target');
    mkdirSync(target);
    writeFileSync(join(target, 'old.bin'), 'old');
    writeFileSync(join(target, markerName), JSON.stringify({ uri: 'http://elsewhere/old.bin' }));
    const r = await run(`${server.url}/a/weights.bin`, target);
    expect(r.code, r.text).toBe(0);
    expect(userFiles(target)).toEqual(['weights.bin']);
    expect(readFileSync(join(target, 'weights.bin'), 'utf8')).toBe('W');
    expect(marker(target).uri).toBe(`${server.url}/a/weights.bin`);
  });

  it('sends HTTP_AUTHORIZATION to the first host only, never to another host on redirect', async () => {
    const other = await serve((_req, res) => res.end('payload'));
    const first = await serve((req, res) => {
      if (req.url === '/start.bin') res.writeHead(302, { location: '/hop.bin' }).end();
      else res.writeHead(307, { location: `${other.url}/final.bin` }).end();
    });
    const target = join(dir, 'target');
    const r = await run(`${first.url}/start.bin`, target, { HTTP_AUTHORIZATION: 'Bearer s3cr3t-token' });
    expect(r.code, r.text).toBe(0);
    expect(first.hits.map((h) => h.headers.authorization)).toEqual(['Bearer s3cr3t-token', 'Bearer s3cr3t-token']);
    expect(other.hits).toHaveLength(1);
    expect(other.hits[0].headers.authorization).toBeUndefined();
    expect(readFileSync(join(target, 'start.bin'), 'utf8')).toBe('payload');
    expect(r.text).not.toContain('s3cr3t');
  });

  describe('over https', () => {
    let certificate: ReturnType<typeof testCertificate>;
    beforeAll(() => {
      certificate = testCertificate();
    });
    afterAll(() => certificate.untrust());

    it('refuses a redirect from https to http, which would expose the artifact to tampering', async () => {
      const plain = await serve((_req, res) => res.end('tampered'));
      const secure = await serve(
        (_req, res) => res.writeHead(302, { location: `${plain.url}/model.bin` }).end(),
        certificate,
      );
      const target = join(dir, 'target');
      const r = await run(`${secure.url}/model.bin`, target, { HTTP_AUTHORIZATION: 'Bearer s3cr3t-token' });
      expect(r.code).toBe(1);
      expect(secure.hits).toHaveLength(1);
      expect(plain.hits).toHaveLength(0);
      expect(r.logs.find((l) => l.level === 'error')?.msg).toBe(
        `refused a redirect from https to http (${plain.url}/model.bin) fetching ${secure.url}/model.bin: a downgrade would let anyone on the path read or change the artifact; serve it over https all the way`,
      );
      expect(readdirSync(target)).toEqual([]);
    });

    it('follows a redirect from http to https', async () => {
      const secure = await serve((_req, res) => res.end('secure'), certificate);
      const plain = await serve((_req, res) => res.writeHead(301, { location: `${secure.url}/model.bin` }).end());
      const target = join(dir, 'target');
      const r = await run(`${plain.url}/model.bin`, target);
      expect(r.code, r.text).toBe(0);
      expect(readFileSync(join(target, 'model.bin'), 'utf8')).toBe('secure');
    });
  });

  it('gives up after 5 redirects', async () => {
    const server = await serve((_req, res) => res.writeHead(302, { location: '/again' }).end());
    const r = await run(`${server.url}/loop.bin`, join(dir, 'target'));
    expect(r.code).toBe(1);
    expect(r.text).toMatch(/too many redirects/);
    expect(server.hits).toHaveLength(6);
  });

  it('writes the failure to the termination message file, where the kubelet reads it', async () => {
    const server = await serve((_req, res) => res.writeHead(404).end());
    const terminationLog = join(dir, 'termination-log');
    writeFileSync(terminationLog, '');
    const code = await main(
      [`${server.url}/missing.bin`, join(dir, 'target')],
      {},
      { retryDelaysMs: [5, 10], timeoutMs: 5000, log: () => {}, terminationLog },
    );
    expect(code).toBe(1);
    expect(readFileSync(terminationLog, 'utf8')).toBe(
      `404 Not Found fetching ${server.url}/missing.bin: check spec.artifact`,
    );
  });

  it('fails at once on 404 with a clear message', async () => {
    const server = await serve((_req, res) => res.writeHead(404).end('nope'));
    const target = join(dir, 'target');
    const r = await run(`${server.url}/missing.tar.gz`, target);
    expect(r.code).toBe(1);
    expect(server.hits).toHaveLength(1);
    const error = r.logs.find((l) => l.level === 'error');
    expect(error?.msg).toBe(`404 Not Found fetching ${server.url}/missing.tar.gz: check spec.artifact`);
    expect(existsSync(join(target, markerName))).toBe(false);
    expect(readdirSync(target)).toEqual([]);
  });

  it('retries a 503 and succeeds', async () => {
    const server = await serve((_req, res, hit) => (hit === 1 ? res.writeHead(503).end() : res.end('ok')));
    const target = join(dir, 'target');
    const r = await run(`${server.url}/m.bin`, target);
    expect(r.code, r.text).toBe(0);
    expect(server.hits).toHaveLength(2);
    expect(r.logs.some((l) => l.msg === 'retrying' && l.level === 'warn')).toBe(true);
    expect(readFileSync(join(target, 'm.bin'), 'utf8')).toBe('ok');
  });

  it('fails after 3 attempts when the server keeps failing', async () => {
    const server = await serve((_req, res) => res.writeHead(500).end());
    const r = await run(`${server.url}/m.bin`, join(dir, 'target'));
    expect(r.code).toBe(1);
    expect(server.hits).toHaveLength(3);
    expect(r.text).toMatch(/500 Internal Server Error fetching .*after 3 attempts/);
  });

  it('retries a truncated body', async () => {
    const server = await serve((_req, res, hit) => {
      if (hit === 1) {
        res.writeHead(200, { 'content-length': 100 });
        res.write('short');
        setTimeout(() => res.socket?.destroy(), 10);
      } else res.end('complete');
    });
    const r = await run(`${server.url}/m.bin`, join(dir, 'target'));
    expect(r.code, r.text).toBe(0);
    expect(server.hits).toHaveLength(2);
    expect(readFileSync(join(dir, 'target', 'm.bin'), 'utf8')).toBe('complete');
  });

  it('reports a refused connection as a network error', async () => {
    const server = await serve(() => {});
    const url = server.url;
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
    servers = [];
    const r = await run(`${url}/m.bin`, join(dir, 'target'));
    expect(r.code).toBe(1);
    expect(r.text).toMatch(/network error fetching .*ECONNREFUSED.*after 3 attempts/);
  });
});

// ---------------------------------------------------------------------------------------------
// s3://, gs:// and Azure Blob: against real stores in stores.test.ts; here what needs no store.

describe('object store settings', () => {
  it('refuses half a key pair', async () => {
    const r = await run('s3://bkt1/m.bin', join(dir, 'target'), {
      AWS_ACCESS_KEY_ID: 'AKIDTEST',
      AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
    });
    expect(r.code).toBe(1);
    expect(errorOf(r)).toBe(
      'incomplete AWS credentials: AWS_SECRET_ACCESS_KEY is missing: the artifactSecret needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY',
    );
  });

  it('refuses half a web identity', async () => {
    const r = await run('s3://bkt1/m.bin', join(dir, 'target'), {
      AWS_ROLE_ARN: 'arn:aws:iam::123456789012:role/reader',
      AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
    });
    expect(r.code).toBe(1);
    expect(errorOf(r)).toBe(
      "incomplete web identity for s3://bkt1/m.bin: AWS_WEB_IDENTITY_TOKEN_FILE is missing: both are needed to assume a role with the pod's ServiceAccount token",
    );
  });

  it('names an endpoint that is not a URL', async () => {
    const s3 = await run('s3://bkt1/m.bin', join(dir, 'target'), { AWS_ENDPOINT_URL: 'minio:9000 ' });
    expect(errorOf(s3)).toMatch(/^invalid AWS_ENDPOINT_URL minio:9000/);
    const azure = await run('azure://acct1/models/m.bin', join(dir, 'target'), {
      AZURE_STORAGE_KEY: 'a2V5',
      AZURE_STORAGE_BLOB_ENDPOINT: 'not a url',
    });
    expect(errorOf(azure)).toMatch(/^invalid AZURE_STORAGE_BLOB_ENDPOINT not a url/);
  });

  it('refuses a key file that is not JSON', async () => {
    const r = await run('gs://bkt/m.bin', join(dir, 'target'), { GOOGLE_APPLICATION_CREDENTIALS_JSON: '{not json' });
    expect(r.code).toBe(1);
    expect(errorOf(r)).toMatch(/GOOGLE_APPLICATION_CREDENTIALS_JSON is not JSON/);
    expect(r.text).not.toContain('{not json');
  });
});

// ---------------------------------------------------------------------------------------------
// pvc://

describe('pvc', () => {
  it('copies a directory recursively', async () => {
    const root = join(dir, 'sources');
    const model = join(root, 'models', 'bert');
    mkdirSync(join(model, 'tokenizer'), { recursive: true });
    writeFileSync(join(model, 'weights.bin'), 'bert-weights');
    writeFileSync(join(model, 'tokenizer', 'vocab.txt'), 'a b c');
    symlinkSync('weights.bin', join(model, 'latest.bin'));
    const target = join(dir, 'target');
    const r = await run('pvc://models/bert', target, { ARTIFACT_SOURCE_ROOT: root });
    expect(r.code, r.text).toBe(0);
    expect(userFiles(target)).toEqual(['latest.bin', 'tokenizer', 'weights.bin']);
    expect(readFileSync(join(target, 'tokenizer', 'vocab.txt'), 'utf8')).toBe('a b c');
    expect(readFileSync(join(target, 'latest.bin'), 'utf8')).toBe('bert-weights');
    expect(marker(target)).toMatchObject({ uri: 'pvc://models/bert', sha256: null });
    expect(
      (await run('pvc://models/bert', target, { ARTIFACT_SOURCE_ROOT: root })).logs.some(
        (l) => l.msg === 'already fetched',
      ),
    ).toBe(true);
  });

  it('unpacks an archive from the claim', async () => {
    const { tgz } = makeModel();
    const root = join(dir, 'sources');
    mkdirSync(join(root, 'models'), { recursive: true });
    execFileSync('cp', [tgz, join(root, 'models', 'm.tar.gz')]);
    const target = join(dir, 'target');
    const r = await run('pvc://models/m.tar.gz', target, { ARTIFACT_SOURCE_ROOT: root });
    expect(r.code, r.text).toBe(0);
    expect(userFiles(target)).toEqual(['model.bin', 'sub']);
    expect(marker(target).sha256).toBe(sha256(tgz));
  });

  it('says what is missing', async () => {
    const root = join(dir, 'sources');
    mkdirSync(join(root, 'models'), { recursive: true });
    const missing = await run('pvc://models/nope', join(dir, 'target'), { ARTIFACT_SOURCE_ROOT: root });
    expect(missing.code).toBe(1);
    expect(missing.text).toMatch(/nope not found in claim models/);
    const unmounted = await run('pvc://other/x', join(dir, 'target'), { ARTIFACT_SOURCE_ROOT: root });
    expect(unmounted.code).toBe(1);
    expect(unmounted.text).toMatch(/claim other is not mounted/);
  });
});

// ---------------------------------------------------------------------------------------------
// Integrity: --sha256

describe('--sha256', () => {
  it('verifies the download and records the digest in the marker', async () => {
    const { tgz } = makeModel();
    const server = await serve((_req, res) => sendFile(res, tgz));
    const target = join(dir, 'target');
    const uri = `${server.url}/model.tar.gz`;
    const r = await run(uri, target, {}, [`--sha256=${sha256(tgz).toUpperCase()}`]);
    expect(r.code, r.text).toBe(0);
    expect(userFiles(target)).toEqual(['model.bin', 'sub']);
    expect(marker(target)).toMatchObject({ uri, sha256: sha256(tgz) });
    const again = await run(uri, target, {}, [`--sha256=${sha256(tgz)}`]);
    expect(again.logs.some((l) => l.msg === 'already fetched')).toBe(true);
    expect(server.hits).toHaveLength(1);
  });

  it('fails with both digests and installs nothing when the download does not match', async () => {
    const server = await serve((_req, res) => res.end('tampered'));
    const target = join(dir, 'target');
    mkdirSync(target);
    writeFileSync(join(target, 'old.bin'), 'old');
    const expected = sha256Of('genuine');
    const r = await run(`${server.url}/m.bin`, target, {}, [`--sha256=${expected}`]);
    expect(r.code).toBe(1);
    expect(errorOf(r)).toBe(
      `sha256 mismatch for ${server.url}/m.bin: expected ${expected}, got ${sha256Of('tampered')}; nothing was installed: check spec.artifactSha256 and that the artifact is the one it was computed from`,
    );
    expect(server.hits).toHaveLength(1);
    expect(readdirSync(target)).toEqual(['old.bin']);
  });

  it('verifies a pvc:// file, and refuses a pvc:// directory, which has no single digest', async () => {
    const root = join(dir, 'sources');
    mkdirSync(join(root, 'models', 'bert'), { recursive: true });
    writeFileSync(join(root, 'models', 'w.bin'), 'weights');
    const env = { ARTIFACT_SOURCE_ROOT: root };
    const wrong = await run('pvc://models/w.bin', join(dir, 't1'), env, [`--sha256=${sha256Of('other')}`]);
    expect(wrong.code).toBe(1);
    expect(errorOf(wrong)).toMatch(
      /^sha256 mismatch for pvc:\/\/models\/w\.bin: expected [0-9a-f]{64}, got [0-9a-f]{64}; nothing was installed/,
    );
    expect(readdirSync(join(dir, 't1'))).toEqual([]);
    const right = await run('pvc://models/w.bin', join(dir, 't2'), env, [`--sha256=${sha256Of('weights')}`]);
    expect(right.code, right.text).toBe(0);
    expect(marker(join(dir, 't2')).sha256).toBe(sha256Of('weights'));
    const directory = await run('pvc://models/bert', join(dir, 't3'), env, [`--sha256=${sha256Of('weights')}`]);
    expect(directory.code).toBe(1);
    expect(errorOf(directory)).toMatch(/--sha256 verifies one file, but pvc:\/\/models\/bert is a directory/);
  });

  it('fetches again when the expected digest changes for the same URI', async () => {
    let body = 'v1';
    const server = await serve((_req, res) => res.end(body));
    const target = join(dir, 'target');
    const uri = `${server.url}/m.bin`;
    expect((await run(uri, target, {}, [`--sha256=${sha256Of('v1')}`])).code).toBe(0);
    body = 'v2';
    const r = await run(uri, target, {}, [`--sha256=${sha256Of('v2')}`]);
    expect(r.code, r.text).toBe(0);
    expect(server.hits).toHaveLength(2);
    expect(readFileSync(join(target, 'm.bin'), 'utf8')).toBe('v2');
    expect(marker(target).sha256).toBe(sha256Of('v2'));
  });

  it('must be 64 hexadecimal characters', async () => {
    for (const bad of ['--sha256=abc', `--sha256=${'g'.repeat(64)}`, '--sha256=', '--sha256']) {
      const r = await run('http://127.0.0.1:9/m.bin', join(dir, 'target'), {}, [bad]);
      expect(r.code, bad).toBe(2);
      expect(errorOf(r), bad).toMatch(/^--sha256 must be 64 hexadecimal characters \(the artifact's SHA-256 digest\)/);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Size: --max-bytes

describe('--max-bytes', () => {
  const advice = "raise the variant's size (spec.models[].size in the endpoint config)";

  it('stops a download whose Content-Length is larger', async () => {
    const server = await serve((_req, res) => res.writeHead(200, { 'content-length': 2000 }).end('x'.repeat(2000)));
    const target = join(dir, 'target');
    const uri = `${server.url}/m.bin`;
    const r = await run(uri, target, {}, ['--max-bytes=1000']);
    expect(r.code).toBe(1);
    expect(errorOf(r)).toBe(
      `${uri} is larger than --max-bytes=1000: the server announces 2000 bytes; nothing was installed: ${advice} to fit the artifact`,
    );
    expect(server.hits).toHaveLength(1);
    expect(readdirSync(target)).toEqual([]);
  });

  it('stops a download without a Content-Length as soon as it passes the limit', async () => {
    let sent = 0;
    const server = await serve((_req, res) => {
      // An endless body: only the fetcher can end it.
      const chunk = Buffer.alloc(64 * 1024);
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) sent += chunk.length;
      };
      res.on('drain', pump);
      pump();
    });
    const uri = `${server.url}/m.bin`;
    const r = await run(uri, join(dir, 'target'), {}, ['--max-bytes=100000']);
    expect(r.code).toBe(1);
    expect(errorOf(r)).toBe(
      `${uri} is larger than --max-bytes=100000: the download was stopped after more than 100000 bytes; nothing was installed: ${advice} to fit the artifact`,
    );
    expect(sent).toBeLessThan(10 * 1024 * 1024);
    expect(server.hits).toHaveLength(1);
  });

  it('accepts an artifact of exactly the limit, unpacked or not', async () => {
    const server = await serve((_req, res) => res.end('x'.repeat(1000)));
    const r = await run(`${server.url}/m.bin`, join(dir, 'target'), {}, ['--max-bytes=1000']);
    expect(r.code, r.text).toBe(0);
    const { tgz } = makeModel();
    const archives = await serve((_req, res) => sendFile(res, tgz));
    const unpacked = await run(`${archives.url}/model.tar.gz`, join(dir, 'unpacked'), {}, ['--max-bytes=1000']);
    expect(unpacked.code, unpacked.text).toBe(0);
    expect(userFiles(join(dir, 'unpacked'))).toEqual(['model.bin', 'sub']);
  });

  it('bounds pvc:// copies: a file while it is copied, a directory before', async () => {
    const root = join(dir, 'sources');
    mkdirSync(join(root, 'models', 'dir', 'sub'), { recursive: true });
    writeFileSync(join(root, 'models', 'big.bin'), 'x'.repeat(2000));
    writeFileSync(join(root, 'models', 'dir', 'a.bin'), 'x'.repeat(600));
    writeFileSync(join(root, 'models', 'dir', 'sub', 'b.bin'), 'x'.repeat(600));
    const env = { ARTIFACT_SOURCE_ROOT: root };
    const file = await run('pvc://models/big.bin', join(dir, 't1'), env, ['--max-bytes=1000']);
    expect(file.code).toBe(1);
    expect(errorOf(file)).toBe(
      `pvc://models/big.bin is larger than --max-bytes=1000: the download was stopped after more than 1000 bytes; nothing was installed: ${advice} to fit the artifact`,
    );
    const directory = await run('pvc://models/dir', join(dir, 't2'), env, ['--max-bytes=1000']);
    expect(directory.code).toBe(1);
    expect(errorOf(directory)).toBe(
      `pvc://models/dir is larger than --max-bytes=1000: it holds 1200 bytes in 3 entries; nothing was copied: ${advice} to fit the artifact`,
    );
    expect(readdirSync(join(dir, 't2'))).toEqual([]);
  });

  it('refuses a compression bomb before extracting it', async () => {
    // 50 MB of zeros pack into about 50 kB.
    const src = join(dir, 'bomb-src');
    mkdirSync(src);
    execFileSync('sh', ['-c', `head -c ${50 * 1024 * 1024} /dev/zero > zeros.bin`], { cwd: src });
    const bomb = join(dir, 'bomb.tar.gz');
    execFileSync('tar', ['-czf', bomb, '-C', src, 'zeros.bin']);
    rmSync(src, { recursive: true });
    expect(statSync(bomb).size).toBeLessThan(1024 * 1024);
    const server = await serve((_req, res) => sendFile(res, bomb));
    const target = join(dir, 'target');
    const uri = `${server.url}/bomb.tar.gz`;
    const r = await run(uri, target, {}, ['--max-bytes=1048576']);
    expect(r.code).toBe(1);
    expect(errorOf(r)).toBe(
      `archive ${uri} unpacks to more than --max-bytes=1048576: its listing shows ${50 * 1024 * 1024} bytes so far; nothing was extracted: ${advice} to fit the unpacked artifact`,
    );
    expect(readdirSync(target)).toEqual([]);
  });

  it('must be a positive whole number of bytes', async () => {
    for (const bad of [
      '--max-bytes=0',
      '--max-bytes=-5',
      '--max-bytes=1.5',
      '--max-bytes=10Gi',
      '--max-bytes=1e6',
      '--max-bytes=',
      '--max-bytes',
      '--max-bytes=99999999999999999999',
    ]) {
      const r = await run('http://127.0.0.1:9/m.bin', join(dir, 'target'), {}, [bad]);
      expect(r.code, bad).toBe(2);
      expect(errorOf(r), bad).toMatch(
        /^--max-bytes must be a positive whole number of bytes \(the variant's volume size\), not /,
      );
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Archives, safety, housekeeping, usage

describe('archives', () => {
  it('unpacks a zip', async () => {
    const { zip } = makeModel();
    const server = await serve((_req, res) => sendFile(res, zip));
    const target = join(dir, 'target');
    const r = await run(`${server.url}/model.zip`, target);
    expect(r.code, r.text).toBe(0);
    expect(userFiles(target)).toEqual(['model.bin', 'sub']);
    expect(readFileSync(join(target, 'model.bin'), 'utf8')).toBe('weights-123');
  });

  it('refuses a tar with ../evil and writes nothing outside the target', async () => {
    const work = join(dir, 'work', 'inner');
    mkdirSync(work, { recursive: true });
    writeFileSync(join(dir, 'work', 'evil'), 'pwned');
    writeFileSync(join(work, 'good.bin'), 'good');
    const evil = join(dir, 'evil.tar.gz');
    execFileSync('tar', ['-czPf', evil, 'good.bin', '../evil'], { cwd: work });
    expect(execFileSync('tar', ['-tzf', evil], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })).toContain(
      '../evil',
    );
    const server = await serve((_req, res) => sendFile(res, evil));
    const holder = join(dir, 'holder');
    const target = join(holder, 'target');
    const r = await run(`${server.url}/evil.tar.gz`, target);
    expect(r.code).toBe(1);
    expect(r.logs.find((l) => l.level === 'error')?.msg).toMatch(
      /^unsafe archive: .*"\.\.\/evil".*nothing was extracted/,
    );
    expect(readdirSync(holder)).toEqual(['target']);
    expect(readdirSync(target)).toEqual([]);
  });

  it('refuses a symbolic link that points outside the artifact', async () => {
    const src = join(dir, 'link-src');
    mkdirSync(src);
    symlinkSync('/etc/passwd', join(src, 'passwd'));
    const tgz = join(dir, 'links.tar.gz');
    execFileSync('tar', ['-czf', tgz, '-C', src, '.']);
    const server = await serve((_req, res) => sendFile(res, tgz));
    const target = join(dir, 'target');
    const r = await run(`${server.url}/links.tar.gz`, target);
    expect(r.code).toBe(1);
    expect(r.text).toMatch(/symbolic link passwd points outside/);
    expect(readdirSync(target)).toEqual([]);
  });

  it('reports a file that is not the archive its suffix says', async () => {
    const server = await serve((_req, res) => res.end('not a tarball'));
    const r = await run(`${server.url}/model.tar.gz`, join(dir, 'target'));
    expect(r.code).toBe(1);
    expect(r.text).toMatch(/is not a valid gzip-compressed tar archive/);
  });
});

describe('housekeeping and usage', () => {
  it('lets several replicas fetch into one shared volume at once', async () => {
    const { tgz } = makeModel();
    const server = await serve((_req, res) => setTimeout(() => sendFile(res, tgz), 20));
    const target = join(dir, 'shared');
    const uri = `${server.url}/model.tar.gz`;
    const results = await Promise.all([run(uri, target), run(uri, target), run(uri, target)]);
    expect(results.map((r) => r.code)).toEqual([0, 0, 0]);
    expect(userFiles(target)).toEqual(['model.bin', 'sub']);
    expect(readFileSync(join(target, 'sub', 'config.json'), 'utf8')).toBe('{"layers":2}');
    expect(marker(target).uri).toBe(uri);
    expect(readdirSync(target).filter((n) => n.startsWith('.fetch-'))).toEqual([]);
  });

  it('runs as a command', () => {
    const root = join(dir, 'sources');
    mkdirSync(join(root, 'models'), { recursive: true });
    writeFileSync(join(root, 'models', 'w.bin'), 'w');
    const script = join(import.meta.dirname, 'main.ts');
    const target = join(dir, 'target');
    const ok = spawnSync(process.execPath, [script, 'pvc://models/w.bin', target], {
      env: { ...process.env, ARTIFACT_SOURCE_ROOT: root },
      encoding: 'utf8',
    });
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toBe('');
    expect(
      ok.stderr
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).msg),
    ).toContain('done');
    expect(readFileSync(join(target, 'w.bin'), 'utf8')).toBe('w');
    expect(spawnSync(process.execPath, [script], { encoding: 'utf8' }).status).toBe(2);
    expect(
      spawnSync(process.execPath, [script, 'pvc://models/missing', target], {
        env: { ...process.env, ARTIFACT_SOURCE_ROOT: root },
        encoding: 'utf8',
      }).status,
    ).toBe(1);
  });

  it('removes stale .fetch-* directories and keeps fresh ones', async () => {
    const server = await serve((_req, res) => res.end('x'));
    const target = join(dir, 'target');
    mkdirSync(join(target, '.fetch-old', 'content'), { recursive: true });
    mkdirSync(join(target, '.fetch-busy'), { recursive: true });
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    utimesSync(join(target, '.fetch-old'), old, old);
    const r = await run(`${server.url}/m.bin`, target);
    expect(r.code, r.text).toBe(0);
    expect(existsSync(join(target, '.fetch-old'))).toBe(false);
    expect(lstatSync(join(target, '.fetch-busy')).isDirectory()).toBe(true);
  });

  it('removes a model directory with --remove, and refuses a shallow or relative one', async () => {
    const target = join(dir, 'volumes', 'ns', 'm-0123456789');
    mkdirSync(join(target, 'sub'), { recursive: true });
    writeFileSync(join(target, 'sub', 'w.bin'), 'w');
    const lines: string[] = [];
    expect(await main(['--remove', target], {}, { log: (l) => lines.push(l) })).toBe(0);
    expect(existsSync(target)).toBe(false);
    expect(existsSync(join(dir, 'volumes', 'ns'))).toBe(true);
    expect(await main(['--remove', target], {}, { log: (l) => lines.push(l) })).toBe(0);
    for (const bad of [
      ['--remove', '/mnt'],
      ['--remove', 'relative/dir/here'],
      ['--remove', `${dir}/a/../b`],
      ['--remove'],
    ]) {
      expect(await main(bad, {}, { log: (l) => lines.push(l) }), bad.join(' ')).toBe(2);
    }
  });

  it('exits 2 on bad usage', async () => {
    const lines: string[] = [];
    expect(await main([], {}, { log: (l) => lines.push(l) })).toBe(2);
    expect(await main(['only-one'], {}, { log: (l) => lines.push(l) })).toBe(2);
    expect(await main(['ftp://x/y', join(dir, 't')], {}, { log: (l) => lines.push(l) })).toBe(2);
    expect(await main(['--no-such-option', 'http://h/m.bin', join(dir, 't')], {}, { log: (l) => lines.push(l) })).toBe(
      2,
    );
    expect(lines.join('\n')).toMatch(/usage: fetcher \[--max-bytes=N\] \[--sha256=HEX\] <artifact-uri> <target-dir>/);
    expect(lines.join('\n')).toMatch(/unsupported artifact URI ftp:\/\/x\/y/);
    expect(lines.join('\n')).toMatch(/unknown option --no-such-option/);
  });
});
