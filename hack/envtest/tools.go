//go:build tools

// Package envtest pins the envtest binaries (kube-apiserver, etcd) as
// dependencies of this tool module so `go mod tidy` keeps them and build.sh can
// `go build` them at exactly the pinned versions.
package envtest

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
