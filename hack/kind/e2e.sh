#!/usr/bin/env bash
# make kind-e2e: the users' whole path on real pods in a kind cluster built
# offline (test/kind's TestUsersPath says what each step checks).
#
#   1. a Docker daemon (hack/kind/docker.sh: the one that answers, or our own);
#   2. the node image, kind, kubectl, helm, the Hubbub and Redis images, all
#      built here and cached by version (warm: seconds);
#   3. a fresh cluster, the images loaded into it;
#   4. go test -tags kind ./test/kind against it;
#   5. the cluster deleted, and our Docker daemon stopped, on every outcome.
#
# Settings (environment):
#   KIND_CLUSTER    cluster name (hubbub-e2e); one of that name must not exist
#   KEEP_CLUSTER=1  keep the cluster afterwards to look around; the script
#                   prints how to reach it and how to delete it
#   CI=true         a machine that cannot run this fails; elsewhere it says
#                   in one line what is missing and exits 0
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

CLUSTER=${KIND_CLUSTER:-hubbub-e2e}

# cannot REASON: this machine cannot run the kind e2e.
cannot() {
	if [[ ${CI:-} == true ]]; then
		die "the kind e2e cannot run here: $*"
	fi
	echo "kind e2e NOT RUN: $* (under CI=true this fails)"
	exit 0
}

# Preflight: what a machine needs before anything is built.
if ! why=$(hack/kind/docker.sh check 2>&1); then
	cannot "$why"
fi

WORK=$(mktemp -d)
started_docker=0
created=0
cleanup() {
	local rc=$?
	if ((created)); then
		if [[ ${KEEP_CLUSTER:-0} == 1 ]]; then
			say "keeping cluster $CLUSTER (KEEP_CLUSTER=1)"
			echo "  export KUBECONFIG=$CACHE/$CLUSTER.kubeconfig"
			echo "  delete it with: $KIND_BIN delete cluster --name $CLUSTER; hack/kind/docker.sh stop"
		else
			say "deleting cluster $CLUSTER"
			"$KIND_BIN" delete cluster --name "$CLUSTER" --kubeconfig "$CACHE/$CLUSTER.kubeconfig" || true
			rm -f "$CACHE/$CLUSTER.kubeconfig"
		fi
	fi
	if ((started_docker)) && [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
		hack/kind/docker.sh stop
	fi
	rm -rf "$WORK"
	if ((rc == 0)); then say "kind e2e passed in $SECONDS s"; else say "kind e2e FAILED (exit $rc) after $SECONDS s"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Docker"
# Stop at the end only a daemon this run started: one that answered before
# (a developer's, or kind-up's) is left running.
timeout 20 docker info >/dev/null 2>&1 || started_docker=1
timed "docker daemon" hack/kind/docker.sh start
check_disk

say "build (cached by version)"
timed "node image" hack/kind/node/build.sh >/dev/null
timed "kind CLI" ensure_kind
timed "helm" make --no-print-directory helm >/dev/null
img=$(timed "hubbub image" hack/kind/images.sh hubbub)
redis=$(timed "redis image" hack/kind/images.sh redis)
echo "images: $img $redis"
# A compile error should not cost a cluster.
timed "compile test/kind" main_go test -c -tags kind -o "$WORK/kind.test" ./test/kind

say "cluster $CLUSTER"
mkdir -p "$CACHE"
kubeconfig=$CACHE/$CLUSTER.kubeconfig
cluster_exists "$CLUSTER" &&
	die "a kind cluster named $CLUSTER exists already (another run, or KEEP_CLUSTER=1): delete it with $KIND_BIN delete cluster --name $CLUSTER, or set KIND_CLUSTER"
created=1 # from here on, cleanup deletes whatever kind made
timed "kind create cluster" create_cluster "$CLUSTER" "$kubeconfig"
timed "kind load images" load_images "$CLUSTER" "$img" "$redis"

say "the users' path (test/kind)"
(cd test/kind && KUBECONFIG=$kubeconfig HUBBUB_KIND_IMAGE=$img HUBBUB_KIND_REDIS_IMAGE=$redis \
	HUBBUB_KIND_HELM=$REPO/bin/helm HUBBUB_KIND_KUBECTL=$KUBECTL_BIN \
	"$WORK/kind.test" -test.v -test.timeout 45m)
