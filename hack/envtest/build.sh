#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver, etcd) from the Go modules
# pinned in this directory's go.mod into OUTDIR (default: bin/k8s at the repo
# root). A cold build takes ~8 minutes on 2 cores, so it is skipped when both
# binaries exist and OUTDIR/.versions records exactly the pinned versions.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../../bin/k8s}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$here"

# The pinned versions, read from go.mod so the stamp follows any bump there.
want="$(go list -m -f '{{.Path}} {{.Version}}' k8s.io/kubernetes go.etcd.io/etcd/server/v3)"
stamp="$out/.versions"

if [[ -x "$out/kube-apiserver" && -x "$out/etcd" && -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$want" ]]; then
	echo "envtest binaries up to date in $out"
	exit 0
fi

echo "building kube-apiserver and etcd into $out (cold build: ~8 minutes)"
rm -f "$stamp"
export CGO_ENABLED=0
go build -trimpath -o "$out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -o "$out/etcd" go.etcd.io/etcd/server/v3
printf '%s\n' "$want" >"$stamp"
echo "envtest binaries built in $out"
