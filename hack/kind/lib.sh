# Shared by the hack/kind scripts (sourced, not run).
# shellcheck shell=bash

KIND_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$KIND_DIR/../.." && pwd)"
CACHE=${HUBBUB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hubbub}/kind
KIND_BIN=$CACHE/cli/kind
KUBECTL_BIN=$CACHE/k8s/kubectl

die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }
# main_go runs the go command for Hubbub's own module with go.mod's toolchain
# line (these machines set GOTOOLCHAIN=local, which ignores it): the images
# ship what it builds.
main_go() { GOTOOLCHAIN="$(sed -n 's/^toolchain //p' "$REPO/go.mod")" go "$@"; }
modver() { (cd "$1" && go list -m -f '{{.Version}}' "$2"); }

# dbuild runs the classic builder (no BuildKit, which needs buildx) and shows
# its output only when it fails: it warns about its own deprecation every time.
dbuild() {
	local log
	log=$(DOCKER_BUILDKIT=0 docker build -q "$@" 2>&1) || { echo "$log" >&2; return 1; }
}
say() { printf '\n== %s\n' "$*"; }

# timed NAME COMMAND...: runs the command and prints how long it took, so a
# run's log reads as a table of stage times.
timed() {
	local t0=$SECONDS
	"${@:2}"
	printf 'TIME %-28s %4d s\n' "$1" $((SECONDS - t0)) >&2
}

# ensure_kind builds the kind CLI from hack/kind/modules/kind into the cache
# (a warm build is a link, about a second) and links bin/kind and bin/kubectl
# for people to use by hand.
ensure_kind() {
	local want have=""
	want="$(cd "$KIND_DIR/modules/kind" && go list -m -f '{{.Version}}' sigs.k8s.io/kind) $(go env GOVERSION)"
	[[ -f $CACHE/cli/.kind.stamp ]] && have=$(cat "$CACHE/cli/.kind.stamp")
	if [[ ! -x $KIND_BIN || $have != "$want" ]]; then
		mkdir -p "$CACHE/cli"
		(cd "$KIND_DIR/modules/kind" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$KIND_BIN.tmp" sigs.k8s.io/kind) ||
			die "building kind failed (above)"
		mv "$KIND_BIN.tmp" "$KIND_BIN"
		echo "$want" >"$CACHE/cli/.kind.stamp"
	fi
	mkdir -p "$REPO/bin"
	ln -sfn "$KIND_BIN" "$REPO/bin/kind"
	[[ -x $KUBECTL_BIN ]] && ln -sfn "$KUBECTL_BIN" "$REPO/bin/kubectl"
	return 0
}

# check_disk fails early, naming the cause, when Docker's disk is too full for
# the images and the cluster (a few GB), instead of failing halfway.
check_disk() {
	local root avail
	root=$(docker info -f '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)
	[[ -d $root ]] || root=/
	avail=$(df -Pk "$root" | awk 'NR==2 {print int($4 / 1024 / 1024)}')
	((avail >= ${HUBBUB_MIN_DISK_GB:-6})) ||
		die "only ${avail} GB free on $root (Docker's data); the node image and a cluster need about ${HUBBUB_MIN_DISK_GB:-6} GB"
}

cluster_exists() { "$KIND_BIN" get clusters 2>/dev/null | grep -qx "$1"; }

# create_cluster NAME KUBECONFIG: a one-node cluster from the offline node
# image (kind removes a node that failed to come up).
create_cluster() {
	local name=$1 kubeconfig=$2 image
	image=$("$KIND_DIR/node/build.sh" --print-image)
	"$KIND_BIN" create cluster --name "$name" --image "$image" --config "$KIND_DIR/node/kind-config.yaml" \
		--kubeconfig "$kubeconfig" --wait 3m
}

# load_images NAME IMAGE...: put locally built images into the node's
# containerd (pods use imagePullPolicy IfNotPresent: nothing is pulled).
load_images() {
	local name=$1
	shift
	"$KIND_BIN" load docker-image --name "$name" "$@"
}
