//go:build tools

// Package envtest pins kube-apiserver (envtest's API server) as a dependency
// of this tool module so `go mod tidy` keeps it and build.sh can build it at
// exactly the pinned version. etcd lives in the nested module ./etcd.
package envtest

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
