// istioctl analyze on a namespace, and the messages the local cluster cannot avoid: Envoy cannot
// run here, so the Gateways' selector (istio: ingressgateway) matches no pod.
import { inject } from 'vitest';
import { toolPath } from '../../ci/tools/build.ts';
import { exec } from '../../ci/exec.ts';

export interface AnalysisMessage {
  code: string;
  level: string;
  origin: string;
  documentationUrl: string;
  message?: string;
}

export async function analyze(namespace: string): Promise<AnalysisMessage[]> {
  const args = ['analyze', `--kubeconfig=${inject('kubeconfigPath')}`, '-n', namespace, '-o', 'json', '--timeout=60s'];
  const r = await exec(toolPath('istioctl'), args, { timeoutMs: 90_000 });
  // istioctl exits non-zero when it finds errors; the JSON still says which.
  try {
    return JSON.parse(r.stdout || '[]') as AnalysisMessage[];
  } catch (err) {
    throw new Error(
      `istioctl analyze printed no JSON (exit ${r.code}${r.timedOut ? ', timed out' : ''}):\n${r.output}`,
      { cause: err },
    );
  }
}

/**
 * The messages not explained by the local cluster (each explained one is allowed, nothing else):
 * - IST0101 (Error) on each of the given Gateways: its selector (istio: ingressgateway) matches no
 *   pod, because no Istio ingress gateway (Envoy) can run here. On a cluster with Istio it matches
 *   the ingress gateway's pods (chart value controller.config.gateway.selector).
 * - IST0102 (Info): the namespace is not labelled for sidecar injection; endpoints need no sidecar
 *   (traffic enters through the ingress gateway), so this is information, not a fault.
 */
export function unexplained(
  messages: readonly AnalysisMessage[],
  namespace: string,
  gateways: readonly string[],
): AnalysisMessage[] {
  const origins = gateways.map((g) => `Gateway ${namespace}/${g}`);
  const explained = (m: AnalysisMessage) =>
    (m.code === 'IST0101' &&
      origins.includes(m.origin) &&
      /Referenced selector not found: "istio=ingressgateway"/.test(m.message ?? '')) ||
    (m.code === 'IST0102' && m.level === 'Info');
  return messages.filter((m) => !explained(m));
}
