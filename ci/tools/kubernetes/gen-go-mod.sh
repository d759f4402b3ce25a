#!/usr/bin/env bash
# Writes go.mod for building Kubernetes binaries from k8s.io/kubernetes at the given release, in the
# tool module ci/tools/<module> (default: kubernetes). k8s.io/kubernetes points its staging modules
# (k8s.io/api, k8s.io/client-go, ...) at ./staging with version v0.0.0, which a consumer cannot
# resolve, so each one is replaced by the published module of the matching v0.<minor>.<patch> tag.
# The binaries default to the control plane and kubectl.
# Usage: ci/tools/kubernetes/gen-go-mod.sh v1.37.2
#        ci/tools/kubernetes/gen-go-mod.sh v1.30.14 kubernetes-oldest kube-apiserver kube-controller-manager kube-scheduler
set -euo pipefail
version=${1:?usage: gen-go-mod.sh vMAJOR.MINOR.PATCH [module] [command...]}
module=${2:-kubernetes}
shift $(($# < 2 ? $# : 2))
commands=("$@")
[ ${#commands[@]} -gt 0 ] || commands=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
staging=v0.${version#v1.}
mkdir -p "$(dirname "$0")/../$module"
cd "$(dirname "$0")/../$module"
gomod=$(go mod download -json "k8s.io/kubernetes@${version}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
{
  echo "module ml-operator.dev/ci/tools/$module"
  echo
  grep -E '^go ' "$gomod"
  echo
  for t in "${commands[@]}"; do echo "tool k8s.io/kubernetes/cmd/$t"; done
  echo
  echo "require k8s.io/kubernetes ${version}"
  echo
  echo "replace ("
  awk '/^replace \(/{r=1;next} r&&/^\)/{r=0} r&&$2=="=>"{print $1}' "$gomod" | sort -u |
    while read -r m; do echo "	$m => $m $staging"; done
  echo ")"
} > go.mod
rm -f go.sum
go mod tidy
