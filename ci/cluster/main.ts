// `npm run cluster`: starts the embedded local control plane and keeps it running until Ctrl-C,
// printing how to reach it with kubectl. `-- --kubernetes=oldest`: the control plane of the oldest
// Kubernetes minor the chart supports. `-- --real-node`: a real node beside the kwok ones
// (containerd, kubelet, kube-proxy; real-node.ts). `-- --istio`: istiod too (istiod.ts), with the
// command that prints what it programs the ingress gateway with.
import { startControlPlane } from './control-plane.ts';
import { toolPath } from '../tools/build.ts';

const release = process.argv.includes('--kubernetes=oldest') ? 'oldest' : 'current';
const cluster = await startControlPlane({
  kubernetes: release,
  realNode: process.argv.includes('--real-node'),
  istio: process.argv.includes('--istio'),
});
process.stdout.write(
  [
    '',
    `The local cluster is running Kubernetes ${cluster.kubernetesVersion} (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, the pod runtime, Traefik, Prometheus, KEDA),`,
    `  pids: ${cluster.pids.join(' ')}`,
    ...(cluster.realNode
      ? [
          `  real node ${cluster.realNode.name}: pods that tolerate ml-operator.dev/real-node=true:NoSchedule and select ml-operator.dev/real-node=true run in containers (containerd at ${cluster.realNode.containerdSocket})`,
        ]
      : []),
    ...(cluster.istiod
      ? [
          `  istiod: xDS at ${cluster.istiod.xdsAddress}, debug ${cluster.istiod.debugUrl}; what an ingress gateway (istio: ingressgateway) is sent:`,
          `  ${toolPath('xds-reader')} --xds=${cluster.istiod.xdsAddress}`,
        ]
      : []),
    `  network namespace: ${cluster.network.namespace}; API server and gateway at ${cluster.network.address}`,
    `  export KUBECONFIG=${cluster.kubeconfigPath}`,
    `  ${toolPath('kubectl')} get nodes`,
    `  curl -H 'Host: <an HTTPRoute host>' http://${cluster.gateway.address}:${cluster.gateway.port}/`,
    'Press Ctrl-C to stop it; everything it started is stopped and its directory removed.',
    '',
  ].join('\n') + '\n',
);
// Stay alive until a signal arrives; the control plane's own handlers stop it and re-raise.
setInterval(() => {}, 1 << 30);
