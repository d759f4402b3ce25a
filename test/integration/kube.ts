// Helpers for integration tests: a client for the run's control plane and a namespace per test file.
import { randomBytes } from 'node:crypto';
import type * as http from 'node:http';
import * as https from 'node:https';
import * as k8s from '@kubernetes/client-node';
import { inject } from 'vitest';

export function adminConfig(): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(inject('kubeconfigPath'));
  return kc;
}

/** Creates a namespace named after `prefix` with a random suffix; returns its name. */
export async function createNamespace(
  kc: k8s.KubeConfig,
  prefix: string,
  labels: Record<string, string> = {},
): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await kc.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name, labels } } });
  return name;
}

export async function deleteNamespace(kc: k8s.KubeConfig, name: string): Promise<void> {
  await kc.makeApiClient(k8s.CoreV1Api).deleteNamespace({ name });
}

/** The status code of a failed API call, or undefined when the call succeeded. */
export async function apiError(call: Promise<unknown>): Promise<{ code: number; message: string } | undefined> {
  try {
    await call;
    return undefined;
  } catch (err) {
    if (err instanceof k8s.ApiException) {
      const body = typeof err.body === 'string' ? JSON.parse(err.body) : err.body;
      return { code: err.code, message: body?.message ?? String(err.body) };
    }
    throw err;
  }
}

/** A `kubectl get` table as the API server sends it (what kubectl prints): column names upper-cased, and rows of cells by column. */
export interface PrintedTable {
  /** Every column, with the priority kubectl gives it (1: shown only with `-o wide`). */
  columns: { name: string; priority: number }[];
  rows: Record<string, string>[];
}

/**
 * GETs a collection with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, as kubectl does:
 * the printer columns evaluated by the API server on the live objects. An absent value is ''.
 */
export async function printedTable(kc: k8s.KubeConfig, path: string, labelSelector?: string): Promise<PrintedTable> {
  const server = new URL(kc.getCurrentCluster()!.server);
  const options: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(options);
  const query = labelSelector ? `?${new URLSearchParams({ labelSelector }).toString()}` : '';
  const body = await new Promise<string>((resolve, reject) => {
    const req = https.request(
      {
        ...options,
        hostname: server.hostname,
        port: server.port,
        path: `${server.pathname.replace(/\/$/, '')}${path}${query}`,
        method: 'GET',
        headers: {
          ...(options.headers as http.OutgoingHttpHeaders | undefined),
          Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io',
        },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () =>
          res.statusCode === 200
            ? resolve(text)
            : reject(new Error(`GET ${path} as a Table: ${res.statusCode} ${text}`)),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
  const table = JSON.parse(body) as {
    columnDefinitions: { name: string; priority: number }[];
    rows: { cells: (string | number | boolean | null)[] }[];
  };
  const columns = table.columnDefinitions.map((c) => ({ name: c.name.toUpperCase(), priority: c.priority }));
  const rows = table.rows.map((r) =>
    Object.fromEntries(
      columns.map((c, i) => [c.name, r.cells[i] === null || r.cells[i] === undefined ? '' : String(r.cells[i])]),
    ),
  );
  return { columns, rows };
}
