#!/usr/bin/env bash
# make kind-up / make kind-down: a local kind cluster with Hubbub installed
# and a sample room, built offline like the e2e's.
#
#   hack/kind/up.sh up     create (or reuse) the cluster, build and load the
#                          images, helm upgrade --install the chart with its
#                          sample ChatRoom, and print how to open the page
#   hack/kind/up.sh down   delete the cluster and stop the Docker daemon the
#                          scripts started (a daemon that was running before
#                          is left alone)
#
# KIND_CLUSTER names the cluster (hubbub). The cluster's context is added to
# your kubeconfig (kind's default), and bin/kubectl, bin/kind and bin/helm are
# the versions it was tested with.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

CLUSTER=${KIND_CLUSTER:-hubbub}
NS=hubbub
ROOM=lobby # not "hubbub": its ServiceAccount would collide with the operator's

up() {
	say "Docker"
	hack/kind/docker.sh start
	check_disk
	say "build (cached by version; the first run takes 15-25 min)"
	timed "node image" hack/kind/node/build.sh >/dev/null
	timed "kind CLI" ensure_kind
	timed "helm" make --no-print-directory helm >/dev/null
	local img redis
	img=$(hack/kind/images.sh hubbub)
	redis=$(hack/kind/images.sh redis)

	say "cluster $CLUSTER"
	local kubeconfig=${KUBECONFIG:-$HOME/.kube/config}
	kubeconfig=${kubeconfig%%:*}
	if cluster_exists "$CLUSTER"; then
		echo "reusing the existing cluster"
		"$KIND_BIN" export kubeconfig --name "$CLUSTER" --kubeconfig "$kubeconfig"
	else
		timed "kind create cluster" create_cluster "$CLUSTER" "$kubeconfig"
	fi
	timed "kind load images" load_images "$CLUSTER" "$img" "$redis"

	say "Hubbub"
	local k=("$KUBECTL_BIN" --kubeconfig "$kubeconfig" --context "kind-$CLUSTER")
	"${k[@]}" create namespace "$NS" --dry-run=client -o yaml | "${k[@]}" apply -f - >/dev/null
	"${k[@]}" label --overwrite namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
	bin/helm upgrade --install hubbub charts/hubbub --kubeconfig "$kubeconfig" --kube-context "kind-$CLUSTER" \
		--namespace "$NS" --wait --timeout 5m \
		--set image.repository="${img%:*}" --set image.tag="${img##*:}" --set redisImage="$redis" \
		--set sampleChatRoom.enabled=true --set sampleChatRoom.name="$ROOM" \
		--set sampleChatRoom.spec.imagePullPolicy=IfNotPresent
	"${k[@]}" -n "$NS" wait "chatroom/$ROOM" --for=condition=Available --timeout=5m
	"${k[@]}" -n "$NS" get rooms
	cat <<-EOF

		Hubbub runs in kind cluster $CLUSTER (context kind-$CLUSTER). To chat:
		  bin/kubectl -n $NS port-forward service/$ROOM 8080:80
		then open http://localhost:8080 and register. Remove it all with: make kind-down
	EOF
}

down() {
	if [[ -x $KIND_BIN ]] && timeout 20 docker info >/dev/null 2>&1 && cluster_exists "$CLUSTER"; then
		"$KIND_BIN" delete cluster --name "$CLUSTER"
	else
		echo "no kind cluster named $CLUSTER"
	fi
	hack/kind/docker.sh stop
}

case ${1:-} in
up) up ;;
down) down ;;
*) die "usage: up.sh up|down" ;;
esac
