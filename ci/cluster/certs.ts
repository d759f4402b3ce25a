// A certificate authority of the local cluster's own and server certificates signed by it (openssl),
// for the servers inside the cluster's network that clients reach over TLS (the artifact server).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execOkSync } from '../exec.ts';

export interface CertificateAuthority {
  certFile: string;
  keyFile: string;
  /** Issues a server certificate for these names and addresses (a client one too, with `client`); returns its files. */
  issue(
    name: string,
    hosts: string[],
    options?: { client?: boolean; commonName?: string; organization?: string },
  ): { certFile: string; keyFile: string };
}

function openssl(args: string[]): void {
  try {
    execOkSync('openssl', args);
  } catch (err) {
    throw new Error(
      `${(err as Error).message}\n(the local cluster needs the openssl command: apt-get install openssl)`,
      { cause: err },
    );
  }
}

export function createCertificateAuthority(dir: string): CertificateAuthority {
  openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '30',
    '-subj',
    '/CN=ml-operator local cluster CA',
    '-keyout',
    join(dir, 'ca.key'),
    '-out',
    join(dir, 'ca.crt'),
  ]);
  return openCertificateAuthority(dir);
}

/** The CA a cluster created in `dir` (its pki directory), to issue more certificates from it. */
export function openCertificateAuthority(dir: string): CertificateAuthority {
  const certFile = join(dir, 'ca.crt');
  const keyFile = join(dir, 'ca.key');
  return {
    certFile,
    keyFile,
    issue(name, hosts, options = {}) {
      const key = join(dir, `${name}.key`);
      const csr = join(dir, `${name}.csr`);
      const cert = join(dir, `${name}.crt`);
      const ext = join(dir, `${name}.ext`);
      const san = hosts.map((h) => (/^\d+\.\d+\.\d+\.\d+$/.test(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
      writeFileSync(
        ext,
        `${san ? `subjectAltName=${san}\n` : ''}extendedKeyUsage=${options.client ? 'serverAuth,clientAuth' : 'serverAuth'}\n`,
      );
      openssl([
        'req',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-subj',
        `${options.organization ? `/O=${options.organization}` : ''}/CN=${options.commonName ?? hosts[0]}`,
        '-keyout',
        key,
        '-out',
        csr,
      ]);
      openssl([
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        certFile,
        '-CAkey',
        keyFile,
        '-CAcreateserial',
        '-days',
        '30',
        '-extfile',
        ext,
        '-out',
        cert,
      ]);
      return { certFile: cert, keyFile: key };
    },
  };
}
