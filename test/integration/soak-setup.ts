// The `soak` project's control plane: the integration project's own (global-setup.ts shares one per
// Kubernetes release), so that the chaos soak runs on the cluster every other file ran on, after
// them. Run alone (`--project soak`), it starts that cluster itself, and its RBAC audit checks only
// that no verb used is missing.
import { clusterSetup } from './global-setup.ts';

export const { setup, teardown } = clusterSetup({ kubernetes: 'current', rbacAudit: 'missing' });
