//go:build tools

// Package etcd pins the etcd server (envtest's storage) as a dependency of
// this tool module so `go mod tidy` keeps it and build.sh can build it.
package etcd

import _ "go.etcd.io/etcd/server/v3"
