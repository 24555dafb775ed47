// Package chart holds the tests of what Hubbub ships: the Helm chart in
// charts/hubbub (lint, golden `helm template` output, values schema, RBAC and
// CRD kept in step with config/, an install into a real API server) and the
// container image's build (the Dockerfile's `go build` yields both static
// entrypoints).
//
// The tests run the helm binary that `make helm` builds (its path comes from
// HUBBUB_HELM, which the Makefile exports), so what is tested is what users run.
package chart
