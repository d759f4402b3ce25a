// Data Capture's probe: what the model agents of an endpoint say about their sink
// (`GET /-/agent/status` on each ready pod's admin port), read at most every pollMs per endpoint and
// summed up as the endpoint's DataCaptured condition. The agents drop records rather than delay a
// request, so this condition is where a failing sink shows.
import type { ConditionInput } from '../desired/status.ts';
import type { KubeClient } from '../kube/client.ts';
import { resources, type KubeObject } from '../kube/resources.ts';
import { shadowReports, type AgentShadowReport } from './shadows.ts';

type Lister = Pick<KubeClient, 'list'>;

/** How often an endpoint's agents are asked, at most. */
export const dataCapturePollMs = 10_000;
const askTimeoutMs = 2_000;

/** The `capture` part of an agent's /-/agent/status (docs/agent.md). */
export interface AgentCaptureStatus {
  enabled: boolean;
  samplingPercent?: number;
  destination?: string;
  healthy: boolean;
  error: string | null;
  since?: string;
  written?: number;
  dropped?: number;
  configError?: string | null;
}

/** One agent's window, as /-/agent/status?window=N reports it (agent/window.ts). */
export interface AgentRequestWindow {
  windowSeconds: number;
  requests: Record<string, number>;
  latency: { boundsMs: number[]; counts: number[] };
}

/** One pod's answer: its status, or why none came. */
export interface AgentAnswer {
  pod: string;
  status?: AgentCaptureStatus;
  /** The shadows the pod mirrors to, with its tallies of each. */
  shadows?: AgentShadowReport[];
  /** The clients' requests over the window asked for (an agent older than the controller has none). */
  requests?: AgentRequestWindow;
  unreachable?: string;
}

/** The condition the agents' answers make, for the destination the endpoint asks for. */
export function dataCapturedCondition(
  destination: string,
  enabled: boolean,
  answers: readonly AgentAnswer[],
): ConditionInput {
  const type = 'DataCaptured';
  if (!enabled)
    return {
      type,
      status: 'False',
      reason: 'CaptureDisabled',
      message: `dataCapture.enabled is false: the agents capture nothing (destination ${destination})`,
    };
  const configErrors = answers.filter((a) => a.status?.configError);
  if (configErrors.length) {
    const a = configErrors[0];
    return {
      type,
      status: 'False',
      reason: 'AgentConfigInvalid',
      message: `pod ${a.pod} cannot use its capture settings (${a.status!.configError}); it keeps its last good ones. Check the ConfigMap the controller writes (<endpoint>-data-capture)`,
    };
  }
  const failing = answers.filter((a) => a.status && a.status.enabled && !a.status.healthy);
  if (failing.length) {
    const pods = failing.map((a) => a.pod).join(', ');
    const error = failing[0].status!.error ?? 'unknown error';
    return {
      type,
      status: 'False',
      reason: 'SinkFailing',
      message:
        `records cannot be written to ${destination} (pods ${pods}): ${error}. Check that the bucket, container or claim exists, that the credentials ` +
        `(dataCapture.credentialsSecret, or the pods' identity) may write there and that the pods reach the store; requests are served meanwhile, and records dropped and counted (ml_agent_capture_records_total{result="dropped"})`,
    };
  }
  const answered = answers.filter((a) => a.status);
  if (!answered.length) {
    const why = answers.find((a) => a.unreachable)?.unreachable;
    return {
      type,
      status: 'Unknown',
      reason: 'NoAgentAnswered',
      message: why ? `no model agent answered: ${why}` : 'no ready pod with a model agent yet',
    };
  }
  return {
    type,
    status: 'True',
    reason: 'Capturing',
    message: `${answered.length} pod(s) write records to ${destination}`,
  };
}

type PodWithStatus = KubeObject & {
  spec?: { containers?: { name: string; ports?: { name?: string; containerPort: number }[] }[] };
  status?: { podIP?: string; phase?: string; conditions?: { type: string; status: string }[] };
};

/**
 * Asks each ready pod of the instances for its agent's status; with `windowSeconds`, each running
 * pod, ready or not, for its clients' requests over that window too.
 */
export async function askAgents(
  client: Lister,
  namespace: string,
  instances: readonly string[],
  agentContainer: string,
  adminPortName: string,
  instanceLabel: string,
  windowSeconds?: number,
): Promise<AgentAnswer[]> {
  const query = windowSeconds ? `?window=${windowSeconds}` : '';
  const answers: AgentAnswer[] = [];
  for (const instance of instances) {
    const { items } = await client.list<PodWithStatus>(resources.pod, namespace, {
      labelSelector: `${instanceLabel}=${instance}`,
      // The watch cache's copy: the agents are asked again at the next poll.
      resourceVersion: '0',
    });
    // Counting requests, an unready pod is asked too: a model failing its readiness path is often
    // the one whose answers failed, and its counts must not be left out.
    const ready = items.filter(
      (p) =>
        p.status?.podIP &&
        !p.metadata.deletionTimestamp &&
        (windowSeconds
          ? p.status.phase === 'Running'
          : p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')),
    );
    answers.push(
      ...(await Promise.all(
        ready.map(async (pod): Promise<AgentAnswer> => {
          const port = pod.spec?.containers
            ?.find((c) => c.name === agentContainer)
            ?.ports?.find((p) => p.name === adminPortName)?.containerPort;
          if (!port) return { pod: pod.metadata.name, unreachable: `pod ${pod.metadata.name} has no agent admin port` };
          const ip = pod.status!.podIP!;
          try {
            const res = await fetch(`http://${ip.includes(':') ? `[${ip}]` : ip}:${port}/-/agent/status${query}`, {
              signal: AbortSignal.timeout(askTimeoutMs),
            });
            if (!res.ok)
              return {
                pod: pod.metadata.name,
                unreachable: `pod ${pod.metadata.name}: /-/agent/status answered ${res.status}`,
              };
            const body = (await res.json()) as { capture?: AgentCaptureStatus; requests?: AgentRequestWindow };
            return body.capture
              ? {
                  pod: pod.metadata.name,
                  status: body.capture,
                  shadows: shadowReports(body),
                  ...(body.requests ? { requests: body.requests } : {}),
                }
              : {
                  pod: pod.metadata.name,
                  unreachable: `pod ${pod.metadata.name}: /-/agent/status has no capture section`,
                };
          } catch (err) {
            return {
              pod: pod.metadata.name,
              unreachable: `pod ${pod.metadata.name} (${ip}:${port}): ${(err as Error).message}`,
            };
          }
        }),
      )),
    );
  }
  return answers;
}

/**
 * What each endpoint's agents said last (its DataCaptured condition, its shadows' comparisons), so
 * that they are asked at most every dataCapturePollMs.
 */
export class DataCaptureProbe<T = ConditionInput> {
  private readonly last = new Map<string, { fingerprint: string; at: number; value: T }>();

  /** The endpoint's facts, asked anew when the last are older than the poll period or `fingerprint` (the settings) changed. */
  async condition(key: string, fingerprint: string, now: Date, ask: () => Promise<T>): Promise<T> {
    const cached = this.last.get(key);
    if (cached && cached.fingerprint === fingerprint && now.getTime() - cached.at < dataCapturePollMs)
      return cached.value;
    const value = await ask();
    this.last.set(key, { fingerprint, at: now.getTime(), value });
    return value;
  }

  /** What the endpoint's agents said last, whatever its age. */
  previous(key: string): T | undefined {
    return this.last.get(key)?.value;
  }

  forget(key: string): void {
    this.last.delete(key);
  }
}
