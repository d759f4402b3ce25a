// The RBAC audit of an integration run: every request the controllers made (the audit log records
// reads and writes of ServiceAccounts), against what the chart granted each controller's
// ServiceAccount (rendered with helm from the values each release was installed with). A verb used
// but not granted, or granted but used by no controller in the whole run, fails it.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { toolPath } from '../../ci/tools/build.ts';
import { execOkSync } from '../../ci/exec.ts';

const root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
/** group|resource[/subresource]|verb */
type Grant = string;

/** Granted but never a request, and why. */
const neverRequested: Record<Grant, string> = {
  'ml-operator.dev|machinelearningendpoints/finalizers|update':
    'checked by the OwnerReferencesPermissionEnforcement admission plugin when a child sets blockOwnerDeletion, inside another request: never a request of its own',
};

interface AuditEvent {
  verb: string;
  user: { username: string };
  objectRef?: { apiGroup?: string; resource?: string; subresource?: string };
  responseStatus?: { code?: number };
  stage: string;
}

function grantsOf(release: { name: string; namespace: string; values: string[] }): Set<Grant> {
  const rendered = execOkSync(
    toolPath('helm'),
    ['template', release.name, '.', '-n', release.namespace, ...release.values.flatMap((v) => ['--set', v])],
    { cwd: root },
  ).stdout;
  const objects = parseAllDocuments(rendered).map(
    (d) =>
      d.toJS() as {
        kind?: string;
        metadata?: { name: string };
        rules?: Rule[];
        roleRef?: { name: string };
        subjects?: { kind: string; name: string }[];
      } | null,
  );
  const serviceAccount = `${release.name}-controller`;
  const bound = new Set(
    objects
      .filter(
        (o) =>
          (o?.kind === 'RoleBinding' || o?.kind === 'ClusterRoleBinding') &&
          o.subjects?.some((s) => s.kind === 'ServiceAccount' && s.name === serviceAccount),
      )
      .map((o) => o!.roleRef!.name),
  );
  const grants = new Set<Grant>();
  for (const o of objects) {
    if ((o?.kind !== 'Role' && o?.kind !== 'ClusterRole') || !bound.has(o.metadata!.name)) continue;
    for (const r of o.rules ?? [])
      for (const g of r.apiGroups)
        for (const res of r.resources) for (const v of r.verbs) grants.add(`${g}|${res}|${v}`);
  }
  return grants;
}

function usedBy(auditLog: string, username: string): Set<Grant> {
  const used = new Set<Grant>();
  for (const line of readFileSync(auditLog, 'utf8').split('\n')) {
    if (!line.includes(username)) continue;
    const e = JSON.parse(line) as AuditEvent;
    if (e.user.username !== username || e.stage !== 'ResponseComplete' || !e.objectRef?.resource) continue;
    if ((e.responseStatus?.code ?? 0) === 403) continue;
    const resource = e.objectRef.subresource
      ? `${e.objectRef.resource}/${e.objectRef.subresource}`
      : e.objectRef.resource;
    const group = e.objectRef.apiGroup ?? '';
    used.add(`${group}|${resource}|${e.verb}`);
    // A server-side apply that creates the object is authorized as create as well.
    if (e.verb === 'patch' && e.responseStatus?.code === 201) used.add(`${group}|${resource}|create`);
  }
  return used;
}

/** What the run's controllers used that was not granted, and what was granted and never used. */
export function auditRbac(
  kubeconfigPath: string,
  auditLogPath: string,
): { missing: string[]; unused: string[]; releases: number; requests: number } {
  const recorded = join(dirname(kubeconfigPath), 'releases.jsonl');
  if (!existsSync(recorded)) return { missing: [], unused: [], releases: 0, requests: 0 };
  // The last install of a release (helm upgrade) decides what it was granted.
  const releases = new Map<string, { name: string; namespace: string; values: string[] }>();
  for (const line of readFileSync(recorded, 'utf8').split('\n').filter(Boolean)) {
    const r = JSON.parse(line) as { name: string; namespace: string; values: string[] };
    releases.set(`${r.namespace}/${r.name}`, r);
  }
  const missing = new Set<string>();
  const granted = new Set<Grant>();
  const used = new Set<Grant>();
  for (const r of releases.values()) {
    const grants = grantsOf(r);
    const uses = usedBy(auditLogPath, `system:serviceaccount:${r.namespace}:${r.name}-controller`);
    for (const g of grants) granted.add(g);
    for (const u of uses) {
      used.add(u);
      if (!grants.has(u)) missing.add(`${u} (release ${r.namespace}/${r.name})`);
    }
  }
  const unused = [...granted].filter((g) => !used.has(g) && !neverRequested[g]).sort();
  return { missing: [...missing].sort(), unused, releases: releases.size, requests: used.size };
}
