// A TLS-terminating proxy in front of the API server, for fault injection at a chosen request: the
// controller talks to the API through it, and the test arms a fault ("kill the controller right
// after the API server has carried out the PATCH of the route", "...before the first DELETE") that
// fires on the first request that matches. The controller learns nothing of the request's outcome
// when it is killed after it: exactly a crash between two steps.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { inject } from 'vitest';
import { openCertificateAuthority } from '../../ci/cluster/certs.ts';

export interface Fault {
  method: string;
  path: RegExp;
  /**
   * before: the request never reaches the API server; after: it is carried out, the answer never
   * arrives; observe: it goes through untouched, and `act` runs as it passes (to arm the next fault).
   */
  when: 'before' | 'after' | 'observe';
  /** What to do: kill the controller (say). */
  act: () => void;
}

export interface ApiProxy {
  /** https://<host side of the veth pair>:<port>, with the cluster's CA. */
  readonly server: string;
  readonly caData: string;
  /** Arms a fault; resolves with the request's method and path once it fired. */
  arm(fault: Fault): Promise<string>;
  close(): Promise<void>;
}

export async function startApiProxy(): Promise<ApiProxy> {
  const clusterDir = dirname(inject('kubeconfigPath'));
  const ca = openCertificateAuthority(join(clusterDir, 'pki'));
  // On the host's side of the cluster's veth pair: the controller runs in the cluster's network namespace.
  const address = inject('network').hostAddress;
  const cert = ca.issue(`proxy-${randomBytes(3).toString('hex')}`, [address]);
  const caPem = readFileSync(ca.certFile);
  const upstream = new URL(JSON.parse(readFileSync(inject('kubeconfigPath'), 'utf8')).clusters[0].cluster.server);
  const armed: { fault: Fault; fired: (what: string) => void }[] = [];

  const server: Server = createServer(
    { cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) },
    (req, res) => {
      const what = `${req.method} ${req.url}`;
      const path = (req.url ?? '').split('?')[0];
      const index = armed.findIndex((a) => a.fault.method === req.method && a.fault.path.test(path));
      const hit = index >= 0 ? armed.splice(index, 1)[0] : undefined;
      if (hit?.fault.when === 'before') {
        hit.fault.act();
        hit.fired(what);
        req.socket.destroy();
        return;
      }
      const killAfter = hit?.fault.when === 'after' ? hit : undefined;
      if (hit && !killAfter) {
        hit.fault.act();
        hit.fired(what);
      }
      const up = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: upstream.host },
          ca: caPem,
        },
        (answer) => {
          if (killAfter) {
            // The API server has done it: the caller dies before it hears so.
            answer.resume();
            answer.on('end', () => {
              killAfter.fault.act();
              killAfter.fired(what);
              req.socket.destroy();
            });
            return;
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      up.on('error', () => req.socket.destroy());
      res.on('close', () => up.destroy());
      req.pipe(up);
    },
  );
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  return {
    server: `https://${address}:${(server.address() as AddressInfo).port}`,
    caData: caPem.toString('base64'),
    arm: (fault) => new Promise((fired) => armed.push({ fault, fired })),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
