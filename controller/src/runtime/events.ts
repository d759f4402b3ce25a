// Kubernetes Events (core/v1) about the objects the controller manages: fire and forget, and a
// repeat of the same event within a while is dropped here, so that a hot loop cannot flood the API.
import { randomBytes } from 'node:crypto';
import type { KubeClient } from '../kube/client.ts';
import { resources, type KubeObject } from '../kube/resources.ts';
import type { Logger } from '../log.ts';

export type EventType = 'Normal' | 'Warning';

export interface EventRecorderOptions {
  /** source.component and reportingComponent. */
  component: string;
  /** source.host and reportingInstance: this replica's identity. */
  host: string;
  logger: Logger;
}

const suppressForMs = 10 * 60_000;
const maxRemembered = 4_096;
/** The API caps an event message at 1 KiB for events.k8s.io; keep core/v1 events within it too. */
const maxMessageLength = 1_024;
const maxNameLength = 253;

function timestamp(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

export class EventRecorder {
  private readonly client: KubeClient;
  private readonly component: string;
  private readonly host: string;
  private readonly log: Logger;
  /** (object, type, reason, message) -> when it was last recorded; oldest first. */
  private readonly recent = new Map<string, number>();

  constructor(client: KubeClient, options: EventRecorderOptions) {
    this.client = client;
    this.component = options.component;
    this.host = options.host;
    this.log = options.logger;
  }

  /** Posts an Event about `involved`; never throws, logs failures. */
  record(
    involved: KubeObject & { apiVersion: string; kind: string },
    type: EventType,
    reason: string,
    message: string,
  ): void {
    try {
      const now = Date.now();
      const { name, namespace, uid } = involved.metadata;
      const key = [uid ?? `${involved.kind}/${namespace}/${name}`, type, reason, message].join('\u0000');
      if (!this.remember(key, now)) {
        this.log.debug({ reason, name, objectNamespace: namespace }, 'event suppressed: recorded recently');
        return;
      }
      const eventNamespace = namespace ?? 'default';
      const suffix = randomBytes(8).toString('hex');
      const event = {
        metadata: { name: `${name.slice(0, maxNameLength - suffix.length - 1)}.${suffix}`, namespace: eventNamespace },
        involvedObject: {
          apiVersion: involved.apiVersion,
          kind: involved.kind,
          name,
          ...(namespace && { namespace }),
          ...(uid && { uid }),
          ...(involved.metadata.resourceVersion && { resourceVersion: involved.metadata.resourceVersion }),
        },
        type,
        reason,
        message: message.length > maxMessageLength ? `${message.slice(0, maxMessageLength - 3)}...` : message,
        firstTimestamp: timestamp(now),
        lastTimestamp: timestamp(now),
        count: 1,
        source: { component: this.component, host: this.host },
        reportingComponent: this.component,
        reportingInstance: this.host,
      };
      this.client.create(resources.event, event as KubeObject).catch((err: unknown) => {
        this.log.warn({ err, reason, name, objectNamespace: namespace }, 'could not record an event');
      });
    } catch (err) {
      this.log.warn({ err, reason }, 'could not record an event');
    }
  }

  /** False when the same event was recorded within the suppression window. */
  private remember(key: string, now: number): boolean {
    const last = this.recent.get(key);
    if (last !== undefined && now - last < suppressForMs) return false;
    this.recent.delete(key);
    this.recent.set(key, now);
    if (this.recent.size > maxRemembered) {
      for (const [k, at] of this.recent) {
        if (this.recent.size <= maxRemembered && now - at < suppressForMs) break;
        this.recent.delete(k);
      }
    }
    return true;
  }
}
