// The data port as a client sees it: answers pass through unchanged, connections to the model are
// reused, a model that cannot be reached is a 502 that says so, and the admin port serves readiness,
// status and metrics (and the data port does not).
import * as net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  inParallel,
  listenOn,
  send,
  startModel,
  startTestAgent,
  type Listening,
  type TestAgent,
} from './testing/harness.ts';

let model: Listening;
let modelConnections = 0;
let agent: TestAgent | undefined;
beforeAll(async () => {
  model = await startModel();
  model.server.on('connection', () => modelConnections++);
});
afterAll(() => model.close());
afterEach(async () => {
  await agent?.dispose();
  agent = undefined;
});

/** A raw HTTP/1.1 exchange, to see the status line and header lines exactly as sent. */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(request));
    let out = '';
    socket.on('data', (c) => (out += c.toString('latin1')));
    socket.on('end', () => resolve(out));
    socket.on('error', reject);
  });
}

describe('the proxy', () => {
  it('passes the status, its reason, the headers (case, order, repeats) and the body through unchanged', async () => {
    const odd = await listenOn((req, res) => {
      res.writeHead(418, 'Short And Stout', [
        'X-Custom-Case',
        'A',
        'set-cookie',
        'a=1',
        'set-cookie',
        'b=2',
        'content-type',
        'text/weird',
        'content-length',
        '5',
      ]);
      res.end(req.method === 'HEAD' ? undefined : 'hello');
    });
    agent = await startTestAgent(odd.url, { enabled: false });
    const port = Number(new URL(agent.url).port);
    const direct = await raw(odd.port, 'GET /x HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n');
    const proxied = await raw(port, 'GET /x HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n');
    const lines = (s: string) => s.split('\r\n').filter((l) => !/^(date|connection|keep-alive):/i.test(l));
    expect(lines(proxied)).toEqual(lines(direct));
    expect(proxied).toMatch(/^HTTP\/1\.1 418 Short And Stout\r\n/);
    expect(proxied).toContain('X-Custom-Case: A\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n');
    const head = await send(agent.url, { method: 'HEAD', path: '/x' });
    expect([head.status, head.body.length, head.headers['content-length']]).toEqual([418, 0, '5']);
    await odd.close();
  });

  it('passes the request through unchanged: method, path and query, headers, body', async () => {
    let seen:
      | { method?: string; url?: string; headers: Record<string, string | string[] | undefined>; body: string }
      | undefined;
    const echo = await listenOn((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen = { method: req.method, url: req.url, headers: req.headers, body };
        res.end();
      });
    });
    agent = await startTestAgent(echo.url, { enabled: false });
    await send(agent.url, {
      method: 'PUT',
      path: '/v1/models/x:predict?a=1&b=%20',
      headers: { 'x-ml-inference-id': 'id-1', authorization: 'Bearer t', 'content-type': 'application/json' },
      body: '{"a":1}',
    });
    expect(seen).toMatchObject({ method: 'PUT', url: '/v1/models/x:predict?a=1&b=%20', body: '{"a":1}' });
    expect(seen!.headers).toMatchObject({
      'x-ml-inference-id': 'id-1',
      authorization: 'Bearer t',
      'content-type': 'application/json',
      'content-length': '7',
    });
    await echo.close();
  });

  it('keeps connections to the model alive: 200 requests, one at a time, over one connection', async () => {
    agent = await startTestAgent(model.url, { enabled: false });
    await send(agent.url, { body: 'warm' });
    const before = modelConnections;
    for (let i = 0; i < 200; i++) expect((await send(agent.url, { body: `r${i}` })).status).toBe(200);
    expect(modelConnections - before).toBe(0);
  }, 30_000);

  it('answers 502 naming the model and the error when the model cannot be reached, and counts it', async () => {
    const gone = await listenOn(() => {});
    const url = gone.url;
    await gone.close();
    agent = await startTestAgent(url, { enabled: false });
    const answer = await send(agent.url, { path: '/predict', body: 'x' });
    expect(answer.status).toBe(502);
    expect(answer.body.toString()).toMatch(
      new RegExp(`^ml-operator agent: the model at ${url} did not answer POST /predict: connect ECONNREFUSED`),
    );
    const metrics = await (await fetch(`${agent.admin}/-/agent/metrics`)).text();
    expect(metrics).toMatch(
      /^ml_agent_model_errors_total\{namespace="ns1",endpoint="titanic",variant="a",version="v123"\} 1$/m,
    );
    expect(metrics).toMatch(
      /^ml_agent_requests_total\{code_class="5xx",namespace="ns1",endpoint="titanic",variant="a",version="v123"\} 1$/m,
    );
    const ready = await fetch(`${agent.admin}/-/agent/ready`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { reason: string }).reason).toMatch(
      /the model did not answer on \/ready: connect ECONNREFUSED/,
    );
  });

  it('serves readiness, status and metrics on the admin port only', async () => {
    agent = await startTestAgent(model.url, { enabled: true, samplingPercent: 100 });
    await inParallel(10, 5, (i) =>
      send(agent!.url, {
        headers: { 'content-type': 'application/json', 'x-status': i < 7 ? '200' : '404' },
        body: '{}',
      }),
    );
    const ready = await fetch(`${agent.admin}/-/agent/ready`);
    expect(ready.status).toBe(200);
    const status = (await (await fetch(`${agent.admin}/-/agent/status?window=30`)).json()) as {
      capture: Record<string, unknown>;
      requests: { windowSeconds: number; requests: Record<string, number>; latency: { counts: number[] } };
    };
    // The clients' requests of the last 30 s, as the errorRate and latencyP99 checks from Agents read them.
    expect(status.requests).toMatchObject({
      windowSeconds: 30,
      requests: { '2xx': 7, '4xx': 3, '5xx': 0, aborted: 0 },
    });
    expect(status.requests.latency.counts.reduce((a, b) => a + b, 0)).toBe(10);
    expect(status.capture).toMatchObject({
      enabled: true,
      samplingPercent: 100,
      destination: expect.stringMatching(/^file:\/\/\//),
      healthy: true,
      error: null,
      written: 0,
      dropped: 0,
      configError: null,
    });
    expect(Date.parse(status.capture.since as string)).not.toBeNaN();
    const metrics = await (await fetch(`${agent.admin}/-/agent/metrics`)).text();
    const labels = 'namespace="ns1",endpoint="titanic",variant="a",version="v123"';
    expect(metrics).toContain(`ml_agent_requests_total{code_class="2xx",${labels}} 7`);
    expect(metrics).toContain(`ml_agent_requests_total{code_class="4xx",${labels}} 3`);
    expect(metrics).toContain(`ml_agent_request_duration_seconds_count{${labels},code_class="2xx"} 7`);
    expect(metrics).toContain(`ml_agent_in_flight{${labels}} 0`);
    expect(metrics).toContain(`ml_agent_capture_records_total{result="dropped",${labels}} 0`);
    // The data port proxies everything, its own paths included: they are the model's.
    expect((await send(agent.url, { method: 'GET', path: '/-/agent/status' })).headers['x-model']).toBe('test');
    await agent.stop();
    expect((await fetch(`${agent.admin}/-/agent/status`).catch(() => undefined))?.status).toBeUndefined();
  });
});
