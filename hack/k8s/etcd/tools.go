//go:build tools

// Package etcd pins the etcd server (envtest's storage, and the kind node's
// etcd image) as a dependency of this tool module so `go mod tidy` keeps it.
package etcd

import _ "go.etcd.io/etcd/server/v3"
