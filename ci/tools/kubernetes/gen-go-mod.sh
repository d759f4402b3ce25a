#!/usr/bin/env bash
# Writes go.mod for building the Kubernetes control-plane binaries from k8s.io/kubernetes at the
# given release. That module points its staging modules (k8s.io/api, k8s.io/client-go, ...) at
# ./staging with version v0.0.0, which a consumer cannot resolve, so each one is replaced by the
# published module of the matching v0.<minor>.<patch> tag.
# Usage: ci/tools/kubernetes/gen-go-mod.sh v1.37.2
set -euo pipefail
version=${1:?usage: gen-go-mod.sh vMAJOR.MINOR.PATCH}
staging=v0.${version#v1.}
cd "$(dirname "$0")"
gomod=$(go mod download -json "k8s.io/kubernetes@${version}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
{
  echo "module ml-operator.dev/ci/tools/kubernetes"
  echo
  grep -E '^go ' "$gomod"
  echo
  for t in kube-apiserver kube-controller-manager kube-scheduler kubectl; do echo "tool k8s.io/kubernetes/cmd/$t"; done
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
