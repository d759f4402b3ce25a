import { describe, expect, it } from 'vitest';
import { due, evaluate, failing, renderQuery, unsettled, type CheckSpec } from './analysis.ts';

const ctx = {
  namespace: 'ml',
  endpoint: 'e',
  version: 'v2',
  previousVersion: 'v1',
  services: ['m-aa', 'n-bb'],
  previousServices: ['m-00'],
};

describe('queries', () => {
  it('fill the built-in measures with the new version Services, per data plane', () => {
    const traefik = renderQuery(
      { name: 'errors', builtin: 'errorRate', max: 0.05, intervalSeconds: 20 },
      'traefik',
      ctx,
    );
    // Every name Traefik gives a Service: reached by an HTTPRoute, and through a (mirroring) TraefikService.
    expect(traefik).toBe(
      '(sum(rate(traefik_service_requests_total{service=~"ml-(m-aa|n-bb)-(http-80@kubernetesgateway|80@kubernetescrd)",code=~"5.."}[20s])) or vector(0))' +
        ' / sum(rate(traefik_service_requests_total{service=~"ml-(m-aa|n-bb)-(http-80@kubernetesgateway|80@kubernetescrd)"}[20s]))',
    );
    const p99 = renderQuery({ name: 'p99', builtin: 'latencyP99', max: 300 }, 'traefik', ctx);
    expect(p99).toBe(
      '1000 * histogram_quantile(0.99, sum by (le) (rate(traefik_service_request_duration_seconds_bucket{service=~"ml-(m-aa|n-bb)-(http-80@kubernetesgateway|80@kubernetescrd)"}[30s])))',
    );
    const istio = renderQuery({ name: 'p99', builtin: 'latencyP99', max: 300 }, 'istio', ctx);
    expect(istio).toContain(
      'istio_request_duration_milliseconds_bucket{reporter="destination",destination_service_namespace="ml",destination_service_name=~"m-aa|n-bb"}[30s]',
    );
  });
  it('fill the placeholders of a query of the user', () => {
    const q = renderQuery(
      {
        name: 'q',
        query: 'x{ns="{{namespace}}",v="{{ version }}",old=~"{{previousServices}}"}[{{interval}}] # {{unknown}}',
        max: 1,
      },
      'traefik',
      ctx,
    );
    expect(q).toBe('x{ns="ml",v="v2",old=~"m-00"}[30s] # {{unknown}}');
  });
});

describe('evaluation', () => {
  const check: CheckSpec = { name: 'errors', builtin: 'errorRate', max: 0.05, failureLimit: 1, inconclusiveLimit: 2 };
  it('counts values out of bounds, and fails past the failure limit', () => {
    let r = evaluate(check, undefined, { value: 0.5 }, 't1');
    expect(r).toMatchObject({ result: 'Failed', failures: 1, value: '0.5000' });
    expect(failing([check], [r])).toBeUndefined();
    r = evaluate(check, r, { value: 0.01 }, 't2');
    expect(r).toMatchObject({ result: 'Passed', failures: 1 });
    r = evaluate(check, r, { value: 0.2 }, 't3');
    expect(failing([check], [r])?.why).toMatch(
      /errors = 0.2000, outside its bound \(<= 0.05\) 2 time\(s\), more than its failureLimit 1/,
    );
  });
  it('holds on inconclusive evaluations, and fails after the limit in a row', () => {
    let r = evaluate(check, undefined, { empty: 'no series' }, 't1', 'sum(rate(x[5s]))');
    // It names the query it ran: a user can run it and see why it found nothing.
    expect(r.message).toBe('errors: no value (no series); query: sum(rate(x[5s]))');
    r = evaluate(check, r, { error: 'unreachable' }, 't2');
    expect(r).toMatchObject({ result: 'Inconclusive', inconclusive: 2 });
    expect(failing([check], [r])).toBeUndefined();
    expect(evaluate(check, r, { value: 0 }, 't3').inconclusive).toBe(0);
    r = evaluate(check, r, { error: 'unreachable' }, 't3');
    expect(failing([check], [r])?.why).toMatch(/inconclusive 3 times in a row/);
  });
  it('is due when never evaluated or when its interval has passed', () => {
    const now = new Date('2026-01-01T00:01:00Z');
    expect(due([check], [], now)).toEqual([check]);
    expect(due([check], [{ name: 'errors', evaluatedAt: '2026-01-01T00:00:40Z' }], now)).toEqual([]);
    expect(due([check], [{ name: 'errors', evaluatedAt: '2026-01-01T00:00:30Z' }], now)).toEqual([check]);
  });
  it('is first due an interval into the step, to measure the traffic of the step itself', () => {
    const now = new Date('2026-01-01T00:01:00Z');
    expect(due([check], [], now, '2026-01-01T00:00:45Z')).toEqual([]);
    expect(
      due([check], [{ name: 'errors', evaluatedAt: '2026-01-01T00:00:10Z' }], now, '2026-01-01T00:00:30Z'),
    ).toEqual([check]);
  });
  it('keeps a step unsettled until every check passed during it', () => {
    const step = '2026-01-01T00:01:00Z';
    expect(unsettled([check], [], step).map((u) => u.check.name)).toEqual(['errors']);
    expect(
      unsettled([check], [{ name: 'errors', result: 'Passed', evaluatedAt: '2026-01-01T00:00:50Z' }], step),
    ).toHaveLength(1);
    expect(
      unsettled([check], [{ name: 'errors', result: 'Inconclusive', evaluatedAt: '2026-01-01T00:01:30Z' }], step),
    ).toHaveLength(1);
    expect(
      unsettled([check], [{ name: 'errors', result: 'Passed', evaluatedAt: '2026-01-01T00:01:30Z' }], step),
    ).toEqual([]);
  });
});
