#!/usr/bin/env bash
# Builds the envtest control plane from pinned Go modules into OUTDIR (default:
# bin/k8s at the repo root): kube-apiserver from this directory's module and
# etcd from the nested module ./etcd (kept apart because k8s.io/kubernetes
# would otherwise force its own etcd version on it). A cold build takes ~8
# minutes on 2 cores, so it is skipped when both binaries exist and
# OUTDIR/.versions records exactly the pinned versions.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../../bin/k8s}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# The pinned versions, read from the go.mod files so the stamp follows a bump.
want="$(cd "$here" && go list -m -f '{{.Path}} {{.Version}}' k8s.io/kubernetes)
$(cd "$here/etcd" && go list -m -f '{{.Path}} {{.Version}}' go.etcd.io/etcd/server/v3)"
# kube-apiserver reports the version it was stamped with at link time; unstamped
# it says v0.0.0-master and Helm refuses charts with a kubeVersion constraint.
kver="$(cd "$here" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
kminor="$(echo "$kver" | cut -d. -f2)"
vpkg=k8s.io/component-base/version
ldflags="-X $vpkg.gitVersion=$kver -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$kminor -X $vpkg.gitTreeState=clean"
want="$want
stamped $kver"
stamp="$out/.versions"

if [[ -x "$out/kube-apiserver" && -x "$out/etcd" && -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$want" ]]; then
	echo "envtest binaries up to date in $out"
	exit 0
fi

echo "building kube-apiserver and etcd into $out (cold build: ~8 minutes):"
echo "$want"
rm -f "$stamp"
export CGO_ENABLED=0
(cd "$here" && go build -trimpath -ldflags "$ldflags" -o "$out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
(cd "$here/etcd" && go build -trimpath -o "$out/etcd" go.etcd.io/etcd/server/v3)
printf '%s\n' "$want" >"$stamp"
echo "envtest binaries built in $out"
