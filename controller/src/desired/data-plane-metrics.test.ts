import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { serviceMatchers, traefikServiceNames, traefikServicePattern } from './data-plane-metrics.ts';

describe("the data plane's names of a model Service", () => {
  it("match every name Traefik gives it, through an HTTPRoute and through a TraefikService, and no other Service's", () => {
    const pattern = new RegExp(`^${traefikServicePattern('ml', 'iris-aa|iris-bb')}$`);
    for (const name of [...traefikServiceNames('ml', 'iris-aa'), ...traefikServiceNames('ml', 'iris-bb')])
      expect(name).toMatch(pattern);
    // The mirroring TraefikService itself, a shadow, another namespace's namesake: not the Service's requests.
    for (const name of [
      'ml-iris-aa-mirror@kubernetescrd',
      'ml-shadow-cc-80@kubernetescrd',
      'other-iris-aa-http-80@kubernetesgateway',
      'ml-iris-aa-http-8080@kubernetesgateway',
    ]) {
      expect(name).not.toMatch(pattern);
    }
    expect(serviceMatchers('istio', 'ml', 'iris-aa')).toBe(
      'reporter="destination",destination_service_namespace="ml",destination_service_name=~"iris-aa"',
    );
  });

  it("are the ones the chart's Grafana dashboard selects Traefik's series by", () => {
    const dashboard = readFileSync(
      new URL('../../../charts/controller/dashboards/ml-operator.json', import.meta.url),
      'utf8',
    );
    const exprs = (JSON.parse(dashboard) as { panels: { targets?: { expr: string }[] }[] }).panels
      .flatMap((p) => p.targets ?? [])
      .map((t) => t.expr);
    const traefik = exprs.filter((e) => e.includes('traefik_service_'));
    expect(traefik.length).toBeGreaterThan(0);
    for (const expr of traefik) {
      const used = [...expr.matchAll(/service=~"([^"]+)"|"service", "\$1", "service", "([^"]+)"/g)].map(
        (m) => m[1] ?? m[2],
      );
      expect(used.length).toBeGreaterThan(0);
      for (const pattern of used) expect(pattern).toBe(traefikServicePattern('$namespace', '.+'));
    }
  });
});
