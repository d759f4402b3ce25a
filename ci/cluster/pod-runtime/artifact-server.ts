// The local cluster's artifact server: the files of a directory over HTTP and HTTPS (a certificate of
// the cluster's own CA), at an address inside the cluster's network namespace, under the host names
// the namespace's /etc/hosts points at it. Model pods' fetchers download from it exactly as they
// would from any web server; a path that is not there is a 404, so a pod whose artifact is missing
// never becomes Ready.
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { join, normalize, sep } from 'node:path';

export interface ArtifactServerOptions {
  dir: string;
  address: string;
  httpPort: number;
  httpsPort: number;
  certFile: string;
  keyFile: string;
}

/** Answers GET and HEAD with the files under `dir` (a 404 for anything else there is not). */
export function artifactHandler(dir: string) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const path = normalize(decodeURIComponent((req.url ?? '/').split('?')[0]));
    const file = join(dir, path);
    if (!file.startsWith(dir + sep) || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(req.method === 'GET' || req.method === 'HEAD' ? 404 : 405).end();
      return;
    }
    let size: number;
    try {
      const st = statSync(file);
      if (!st.isFile()) throw new Error('not a file');
      size = st.size;
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`${path} not found\n`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  };
}

export async function startArtifactServer(o: ArtifactServerOptions): Promise<{ close(): void }> {
  const serve = artifactHandler(o.dir);
  const servers: Server[] = [
    createHttpServer(serve),
    createHttpsServer({ cert: readFileSync(o.certFile), key: readFileSync(o.keyFile) }, serve),
  ];
  const ports = [o.httpPort, o.httpsPort];
  await Promise.all(
    servers.map(
      (s, i) =>
        new Promise<void>((resolve, reject) => {
          s.once('error', reject);
          s.listen(ports[i], o.address, () => resolve());
        }),
    ),
  );
  return { close: () => servers.forEach((s) => s.close()) };
}
