// Package kind is Hubbub's end-to-end test on a real kind cluster: the path a
// platform team and its people take, from `helm install` to `helm uninstall`,
// against real pods. Its tests build only with the kind tag and need the
// cluster and images hack/kind/e2e.sh makes, so run them with `make kind-e2e`
// (part of `make test`). `make lint` vets them.
package kind
