// The smoke test's probe: the user's requests sent to each new Service of a version before it takes
// traffic, through its ready pods' addresses, with the answers checked.
import type { KubeClient } from '../kube/client.ts';
import type { KubeObject } from '../kube/resources.ts';

type Reader = Pick<KubeClient, 'get' | 'list'>;

interface SmokeRequest {
  method?: string;
  path?: string;
  body?: unknown;
  expectedStatus?: number;
  jsonPath?: string;
}

const endpointSliceResource = {
  group: 'discovery.k8s.io',
  version: 'v1',
  kind: 'EndpointSlice',
  plural: 'endpointslices',
  namespaced: true,
} as const;
const configMapResource = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
} as const;

/**
 * Sends the smoke test's requests to each Service of the new version that the serving one does not
 * run, straight to a ready pod of it (its EndpointSlice), before the version takes any traffic.
 */
export async function runSmokeTest(
  client: Reader,
  namespace: string,
  configMap: string,
  services: string[],
  timeoutSeconds: number,
): Promise<{ passed: boolean; message: string }> {
  const cm = await client.get<KubeObject & { data?: Record<string, string> }>(configMapResource, namespace, configMap);
  if (!cm)
    return {
      passed: false,
      message: `ConfigMap ${namespace}/${configMap} (spec.rollout.smokeTest.configMap) does not exist`,
    };
  let requests: SmokeRequest[];
  try {
    requests = JSON.parse(cm.data?.['requests.json'] ?? '') as SmokeRequest[];
    if (!Array.isArray(requests) || requests.length === 0) throw new Error('not a list of requests');
  } catch (err) {
    return {
      passed: false,
      message: `ConfigMap ${namespace}/${configMap}: key requests.json must hold a JSON list of requests ({method, path, body, expectedStatus, jsonPath}): ${(err as Error).message}`,
    };
  }
  let sent = 0;
  for (const service of services) {
    const { items } = await client.list<
      KubeObject & {
        endpoints?: { addresses: string[]; conditions?: { ready?: boolean } }[];
        ports?: { name?: string; port?: number }[];
      }
    >(endpointSliceResource, namespace, { labelSelector: `kubernetes.io/service-name=${service}` });
    const slice = items.find((s) => s.endpoints?.some((e) => e.conditions?.ready !== false));
    const address = slice?.endpoints?.find((e) => e.conditions?.ready !== false)?.addresses[0];
    const port = slice?.ports?.find((p) => p.name === 'http')?.port ?? slice?.ports?.[0]?.port;
    if (!address || !port)
      return {
        passed: false,
        message: `Service ${namespace}/${service} has no ready endpoint to send the smoke test to`,
      };
    for (const r of requests) {
      const method = r.method ?? 'GET';
      const url = `http://${address.includes(':') ? `[${address}]` : address}:${port}${r.path ?? '/'}`;
      const what = `${method} ${r.path ?? '/'} to ${service}`;
      let status: number;
      let text: string;
      try {
        const res = await fetch(url, {
          method,
          ...(r.body !== undefined
            ? {
                body: typeof r.body === 'string' ? r.body : JSON.stringify(r.body),
                headers: { 'content-type': 'application/json' },
              }
            : {}),
          signal: AbortSignal.timeout(timeoutSeconds * 1000),
        });
        status = res.status;
        text = await res.text();
      } catch (err) {
        return { passed: false, message: `${what}: no answer (${(err as Error).message})` };
      }
      const expected = r.expectedStatus ?? 200;
      if (status !== expected)
        return { passed: false, message: `${what} answered ${status}, expected ${expected}: ${text.slice(0, 300)}` };
      if (r.jsonPath) {
        let found: unknown;
        try {
          found = r.jsonPath
            .split('.')
            .filter(Boolean)
            .reduce<unknown>(
              (v, k) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined),
              JSON.parse(text),
            );
        } catch {
          found = undefined;
        }
        if (found === undefined)
          return { passed: false, message: `${what}: the answer has no ${r.jsonPath}: ${text.slice(0, 300)}` };
      }
      sent++;
    }
  }
  return { passed: true, message: `${sent} request(s) answered as expected` };
}
