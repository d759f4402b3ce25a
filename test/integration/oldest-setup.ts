// The `oldest` project's control plane: kube-apiserver, kube-controller-manager and kube-scheduler of
// the oldest Kubernetes minor the chart supports (Chart.yaml kubeVersion), with the chart installed.
// Only a subset of the test files runs here, so the RBAC audit checks that no verb used is missing.
import { clusterSetup } from './global-setup.ts';

export const { setup, teardown } = clusterSetup({ kubernetes: 'oldest', rbacAudit: 'missing' });
