#!/usr/bin/env bash
# Builds the kind node image offline: hack/kind/node/build.sh [--print-image]
#
# No image registry is reachable here, so nothing is pulled. The image is put
# together the way kind's own base and node images are (kind's images/base
# Dockerfile and pkg/build/nodeimage), from:
#   - a Debian rootfs made by debootstrap, with the packages kind's base image
#     installs (Debian's runc and CNI plugins among them);
#   - kind's base-image files, taken from the kind module in Go's module cache;
#   - containerd, crictl, CoreDNS, local-path-provisioner and pause built from
#     the Go modules under ../modules, and the Kubernetes binaries and etcd
#     from ../../k8s (the module envtest's kube-apiserver comes from);
#   - the control-plane images kubeadm asks for, made FROM scratch around those
#     binaries under the exact names it asks for, and imported into the node's
#     containerd (kind's `build node-image` cannot be used: it pulls them).
#
# Every step is cached. The node image carries a label with a digest of all
# it was built from (module versions, Go version, Debian packages, the files
# in this folder); when it matches, the build is skipped in a second. When it
# does not, each step still skips itself if its own stamp matches, so a
# version bump rebuilds only what changed. Work happens in temporary folders
# and containers that are removed on every outcome; a cache entry is written
# only once complete.
#
# Settings: HUBBUB_CACHE (default ~/.cache/hubbub), DEBIAN_MIRROR (default:
# the host's apt source).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib.sh"
SUITE=bookworm # trixie's systemd 257 does not boot on the cgroup v1 hosts we run on
LABEL=dev.hubbub.stamp

# What kind's base image installs (less nfs-common and open-iscsi, which no
# Hubbub pod uses), plus runc and the CNI plugins kind would build itself.
NODE_PKGS=(systemd conntrack iptables nftables iproute2 ethtool util-linux mount kmod libseccomp2
	pigz fuse-overlayfs e2fsprogs bash ca-certificates curl jq procps runc containernetworking-plugins)
# kube-proxy (nftables mode) needs nft and conntrack in its image.
PROXY_PKGS=(iptables conntrack nftables)

say() { printf '[node] %s\n' "$*" >&2; }
sha() { sha256sum | cut -c1-16; }
label_of() { docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true; }

KVER=$(modver "$REPO/hack/k8s" k8s.io/kubernetes)
NODE_IMAGE=hubbub.local/kind-node:$KVER
BASE_IMAGE=hubbub.local/kind-base:$SUITE
PROXY_IMAGE=registry.k8s.io/kube-proxy:$KVER
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubeadm kubelet kubectl etcd)

if [[ ${1:-} == --print-image ]]; then echo "$NODE_IMAGE"; exit 0; fi

mirror() {
	if [[ -n ${DEBIAN_MIRROR:-} ]]; then echo "$DEBIAN_MIRROR"; return; fi
	local m
	m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/debian.sources | awk '{print $2}' | grep -v security | head -1)
	[[ -n $m ]] || m=$(grep -hsE '^deb +http' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -1)
	echo "${m:-http://deb.debian.org/debian}"
}
MIRROR=$(mirror)
ROOTFS_STAMP="debian $SUITE $MIRROR; node: ${NODE_PKGS[*]}; kube-proxy: ${PROXY_PKGS[*]}"

# ---- Go-built binaries: one stamp per module, so a bump rebuilds just it ----
# The node's tools other than Kubernetes' (hack/k8s builds those): for each,
# its module folder under ../modules, its main module, its build tags and
# the packages to build.
CTRD_MOD=github.com/containerd/containerd/v2
TOOLS=(containerd crictl coredns local-path-provisioner pause)
declare -A TOOL_DIR=([containerd]=containerd [crictl]=crictl [coredns]=coredns [local-path-provisioner]=lpp [pause]=pause)
declare -A TOOL_MOD=([containerd]=$CTRD_MOD [crictl]=sigs.k8s.io/cri-tools [coredns]=github.com/coredns/coredns
	[local-path-provisioner]=github.com/rancher/local-path-provisioner [pause]=github.com/hubbub-chat/hubbub/hack/kind/modules/pause)
declare -A TOOL_TAGS=([containerd]="no_btrfs no_devmapper no_zfs no_aufs")
declare -A TOOL_PKGS=([containerd]="$CTRD_MOD/cmd/containerd $CTRD_MOD/cmd/containerd-shim-runc-v2 $CTRD_MOD/cmd/ctr"
	[crictl]=sigs.k8s.io/cri-tools/cmd/crictl [coredns]=github.com/coredns/coredns
	[local-path-provisioner]=github.com/rancher/local-path-provisioner [pause]=.)

# tool_stamp NAME is what the tool's stamp says once it is built: its module
# version, the Go that built it, its tags.
tool_stamp() {
	local name=$1
	echo "${TOOL_MOD[$name]} $(modver "$KIND_DIR/modules/${TOOL_DIR[$name]}" "${TOOL_MOD[$name]}") $(go env GOVERSION) tags=${TOOL_TAGS[$name]:-}"
}

# tool NAME builds the tool into $CACHE/bin unless its stamp matches.
tool() {
	local name=$1 dir=$KIND_DIR/modules/${TOOL_DIR[$1]} out=$CACHE/bin stamp ldflags=""
	stamp=$(tool_stamp "$name")
	if [[ -f $out/.$name.stamp && $(cat "$out/.$name.stamp") == "$stamp" ]]; then return; fi
	say "building $name (${TOOL_MOD[$name]})"
	[[ $name == containerd ]] && ldflags="-X $CTRD_MOD/version.Version=$(modver "$dir" $CTRD_MOD)"
	mkdir -p "$out"
	local tmp
	tmp=$(mktemp -d "$out/.build.XXXXXX")
	# shellcheck disable=SC2086 # TOOL_PKGS holds several package paths
	(cd "$dir" && CGO_ENABLED=0 go build -trimpath -tags "${TOOL_TAGS[$name]:-}" -ldflags "-s -w $ldflags" -o "$tmp/" ${TOOL_PKGS[$name]}) ||
		{ rm -rf "$tmp"; die "building $name failed (above)"; }
	mv "$tmp"/* "$out/"
	rm -rf "$tmp"
	echo "$stamp" >"$out/.$name.stamp"
}
build_tools() {
	local name
	for name in "${TOOLS[@]}"; do tool "$name"; done
	"$REPO/hack/k8s/build.sh" "$CACHE/k8s" "${K8S_BINS[@]}" >&2
}
tools_stamp() {
	cat "$CACHE"/bin/.*.stamp "$CACHE/k8s/.versions" 2>/dev/null
}
# The stamps the tools would have, without building them (for the fast path).
wanted_tools_stamp() {
	local name
	for name in "${TOOLS[@]}"; do tool_stamp "$name"; done
	"$REPO/hack/k8s/build.sh" --stamp "$CACHE/k8s" "${K8S_BINS[@]}"
}

# ---- Debian rootfs: the node's base image and kube-proxy's image ----
# go list -m prints no Dir for a module not in the module cache yet (a fresh
# machine): download it first.
KIND_MOD_DIR=$(cd "$KIND_DIR/modules/kind" && go mod download sigs.k8s.io/kind && go list -m -f '{{.Dir}}' sigs.k8s.io/kind)
[ -d "$KIND_MOD_DIR/images/base/files" ] || die "could not find kind's images/base/files (sigs.k8s.io/kind from the Go module proxy); got '$KIND_MOD_DIR'"
KINDVER=$(modver "$KIND_DIR/modules/kind" sigs.k8s.io/kind)
# The base and kube-proxy images hold Debian's packages, kind's files, our
# containerd and kube-proxy, and whatever this folder says.
debian_stamp() {
	echo "$ROOTFS_STAMP; kind $KINDVER; tools $(sha <<<"$WANT_TOOLS"); recipe $(cat "$here"/* | sha)"
}

WORK=""
cleanup() {
	local rc=$?
	[[ -n $WORK ]] && rm -rf "$WORK"
	[[ -n ${BUILD_CTR:-} ]] && docker rm -f -v "$BUILD_CTR" >/dev/null 2>&1
	exit $rc
}
trap cleanup EXIT

in_root() { # rootfs command...: run a command chrooted, as apt would expect
	local r=$1
	shift
	DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$r" "$@"
}

# build_rootfs debootstraps Debian and installs the packages, into two cached
# tars. It needs only the network and the disk, so a cold build runs it beside
# the Go builds, which need the CPU.
build_rootfs() {
	local stamp=$ROOTFS_STAMP out=$CACHE/rootfs
	if [[ -f $out/.stamp && $(cat "$out/.stamp") == "$stamp" && -f $out/node.tar && -f $out/proxy.tar ]]; then return; fi
	command -v debootstrap >/dev/null || die "debootstrap is missing (Debian: apt-get install debootstrap)"
	[[ $(id -u) == 0 ]] || die "debootstrap and chroot need root"
	local w=$WORK/rootfs
	mkdir -p "$w" "$out"
	say "debootstrap $SUITE from $MIRROR (cold: ~3 min)"
	debootstrap --variant=minbase "$SUITE" "$w/node" "$MIRROR" >"$w/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$w/debootstrap.log" >&2; die "debootstrap failed (above)"; }
	cp -a "$w/node" "$w/proxy"
	in_root "$w/node" apt-get install -y -qq --no-install-recommends "${NODE_PKGS[@]}" >"$w/apt-node.log" 2>&1 ||
		{ tail -n 20 "$w/apt-node.log" >&2; die "apt-get install in the node rootfs failed (above)"; }
	in_root "$w/proxy" apt-get install -y -qq --no-install-recommends "${PROXY_PKGS[@]}" >"$w/apt-proxy.log" 2>&1 ||
		{ tail -n 20 "$w/apt-proxy.log" >&2; die "apt-get install in the kube-proxy rootfs failed (above)"; }
	local r
	for r in node proxy; do
		in_root "$w/$r" apt-get clean
		rm -rf "$w/$r"/var/lib/apt/lists/*
		tar -C "$w/$r" -cf "$w/$r.tar" .
		rm -rf "${w:?}/$r"
	done
	rm -f "$out/.stamp"
	mv "$w/node.tar" "$w/proxy.tar" "$out/"
	echo "$stamp" >"$out/.stamp"
	rm -rf "$w"
}

build_debian_images() {
	local stamp
	stamp=$(debian_stamp)
	if [[ $(label_of "$BASE_IMAGE") == "$stamp" && $(label_of "$PROXY_IMAGE") == "$stamp" ]]; then return; fi
	local node=$WORK/node
	mkdir -p "$node"
	tar -C "$node" -xf "$CACHE/rootfs/node.tar"

	say "kind's base image steps (kind $KINDVER's images/base)"
	local f=$KIND_MOD_DIR/images/base/files
	install -m 0755 "$f"/usr/local/bin/* "$node/usr/local/bin/"
	mkdir -p "$node/kind/bin" "$node/etc/containerd" "$node/etc/systemd/system/kubelet.service.d" "$node/LICENSES"
	install -m 0644 "$f"/kind/*.txt "$node/kind/"
	install -m 0755 "$f"/kind/bin/* "$node/kind/bin/"
	install -m 0644 "$f"/LICENSES/* "$node/LICENSES/"
	install -m 0644 "$f"/etc/crictl.yaml "$node/etc/"
	install -m 0644 "$f"/etc/containerd/* "$node/etc/containerd/"
	install -m 0644 "$f"/etc/default/* "$node/etc/default/"
	install -m 0644 "$f"/etc/sysctl.d/* "$node/etc/sysctl.d/"
	find "$f/etc/systemd/system" -maxdepth 1 -type f -exec install -m 0644 {} "$node/etc/systemd/system/" \;
	install -m 0644 "$f"/etc/systemd/system/kubelet.service.d/* "$node/etc/systemd/system/kubelet.service.d/"
	find "$node/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
	rm -f "$node"/lib/systemd/system/multi-user.target.wants/* "$node"/etc/systemd/system/*.wants/* \
		"$node"/lib/systemd/system/local-fs.target.wants/* "$node"/lib/systemd/system/sockets.target.wants/*udev* \
		"$node"/lib/systemd/system/sockets.target.wants/*initctl* "$node"/lib/systemd/system/basic.target.wants/*
	echo "ReadKMsg=no" >>"$node/etc/systemd/journald.conf"
	ln -sf /usr/lib/systemd/systemd "$node/sbin/init"
	in_root "$node" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
	in_root "$node" systemctl mask systemd-binfmt.service >/dev/null 2>&1
	mkdir -p "$node/etc/kubernetes/manifests"

	# What kind's base image builds from source, from ours and Debian's.
	install -m 0755 "$CACHE"/bin/{containerd,containerd-shim-runc-v2,ctr,crictl} "$node/usr/local/bin/"
	"$CACHE/bin/ctr" oci spec |
		jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
		jq 'del(.process.rlimits)' >"$node/etc/containerd/cri-base.json"
	mkdir -p "$node/opt/cni/bin" "$node/etc/cni/net.d"
	cp "$node"/usr/lib/cni/{host-local,loopback,ptp,portmap} "$node/opt/cni/bin/"
	install -m 0644 "$here/10-static.conflist" "$node/etc/cni/net.d/"
	# runc cannot set a negative OOM score without CAP_SYS_RESOURCE, which
	# these hosts lack: without this no pod starts ("can't get final child's
	# PID from pipe: EOF").
	sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' "$node/etc/containerd/config.toml"
	grep -q 'restrict_oom_score_adj = true' "$node/etc/containerd/config.toml" || die "could not set restrict_oom_score_adj in kind's containerd config"

	say "docker build $BASE_IMAGE and $PROXY_IMAGE"
	tar -C "$node" -cf "$WORK/rootfs.tar" .
	rm -rf "$node"
	printf 'FROM scratch\nADD rootfs.tar /\nENV container=docker\nLABEL %s="%s"\nSTOPSIGNAL SIGRTMIN+3\nENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]\n' \
		"$LABEL" "$stamp" >"$WORK/Dockerfile"
	dbuild -t "$BASE_IMAGE" "$WORK"
	rm -f "$WORK/rootfs.tar"

	cp "$CACHE/rootfs/proxy.tar" "$WORK/rootfs.tar"
	cp "$CACHE/k8s/kube-proxy" "$WORK/kube-proxy"
	printf 'FROM scratch\nADD rootfs.tar /\nCOPY kube-proxy /usr/local/bin/kube-proxy\nLABEL %s="%s"\n' "$LABEL" "$stamp" >"$WORK/Dockerfile"
	dbuild -t "$PROXY_IMAGE" "$WORK"
	rm -f "$WORK/rootfs.tar" "$WORK/kube-proxy" "$WORK/Dockerfile"
}

# ---- the images kubeadm and kind's storage manifest name, FROM scratch ----
scratch_image() { # tag binary path-in-image [entrypoint]
	local tag=$1 bin=$2 dest=$3 entry=${4:-} d
	d=$(mktemp -d "$WORK/img.XXXXXX")
	cp "$bin" "$d/bin"
	{
		echo "FROM scratch"
		echo "COPY bin $dest"
		echo "ENV PATH=/usr/local/bin:/usr/bin:/bin"
		[[ -z $entry ]] || echo "ENTRYPOINT [\"$entry\"]"
	} >"$d/Dockerfile"
	dbuild -t "$tag" "$d"
	rm -rf "$d"
}
build_component_images() {
	local images
	# kubeadm names the images (and their versions) it will ask containerd for.
	mapfile -t images < <("$CACHE/k8s/kubeadm" config images list --kubernetes-version "$KVER" 2>/dev/null)
	((${#images[@]} >= 5)) || die "kubeadm config images list gave: ${images[*]:-nothing}"
	local img pause_tag=""
	for img in "${images[@]}"; do
		case $img in
		*/kube-apiserver:* | */kube-controller-manager:* | */kube-scheduler:*)
			local b=${img##*/}
			b=${b%%:*}
			scratch_image "$img" "$CACHE/k8s/$b" "/usr/local/bin/$b" ;;
		*/kube-proxy:*) [[ $img == "$PROXY_IMAGE" ]] || die "kubeadm wants $img, built $PROXY_IMAGE" ;;
		*/etcd:*) scratch_image "$img" "$CACHE/k8s/etcd" /usr/local/bin/etcd ;;
		*/coredns:*) scratch_image "$img" "$CACHE/bin/coredns" /coredns /coredns ;;
		*/pause:*) scratch_image "$img" "$CACHE/bin/pause" /pause /pause; pause_tag=$img ;;
		*) die "kubeadm wants an image this script does not know how to build: $img" ;;
		esac
	done
	# kind's containerd config names its own sandbox image; give it ours too.
	local sandbox
	sandbox=$(sed -n 's/^ *sandbox_image = "\(.*\)"/\1/p' "$KIND_MOD_DIR/images/base/files/etc/containerd/config.toml")
	if [[ -n $sandbox && $sandbox != "$pause_tag" ]]; then docker tag "$pause_tag" "$sandbox"; images+=("$sandbox"); fi
	docker save -o "$WORK/images.tar" "${images[@]}"

	# kind's default StorageClass (local-path-provisioner) under kind's names.
	local storage
	mapfile -t storage < <(sed -n 's/^ *image: \(.*\)/\1/p' "$here/default-storage.yaml" | sort -u)
	for img in "${storage[@]}"; do
		case $img in
		*local-path-provisioner*) scratch_image "$img" "$CACHE/bin/local-path-provisioner" /usr/local/bin/local-path-provisioner ;;
		*local-path-helper*)
			# The helper pod runs sh, mkdir, rm: Debian's static busybox.
			local d
			d=$(mktemp -d "$WORK/img.XXXXXX")
			mkdir -p "$d/root/bin"
			cp "$(command -v busybox)" "$d/root/bin/busybox"
			for a in sh mkdir rm rmdir chmod ls cat; do ln -s busybox "$d/root/bin/$a"; done
			printf 'FROM scratch\nCOPY root/ /\nENV PATH=/bin\n' >"$d/Dockerfile"
			dbuild -t "$img" "$d"
			rm -rf "$d" ;;
		*) die "default-storage.yaml names an image this script does not build: $img" ;;
		esac
	done
	docker save -o "$WORK/images-storage.tar" "${storage[@]}"
}

# ---- the node image: kind's nodeimage steps, by hand ----
build_node_image() {
	local stamp=$1
	BUILD_CTR=hubbub-kind-build-$$
	docker run -d --name "$BUILD_CTR" --entrypoint=sleep --security-opt seccomp=unconfined "$BASE_IMAGE" infinity >/dev/null
	local b
	for b in kubeadm kubelet kubectl; do docker cp "$CACHE/k8s/$b" "$BUILD_CTR:/usr/bin/$b"; done
	docker exec "$BUILD_CTR" chown root:root /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl
	docker exec "$BUILD_CTR" sh -c "echo $KVER >/kind/version && mkdir -p /kind/manifests"
	docker cp "$here/default-storage.yaml" "$BUILD_CTR:/kind/manifests/default-storage.yaml"
	docker exec "$BUILD_CTR" bash -c 'nohup containerd >/tmp/containerd.log 2>&1 &'
	docker exec "$BUILD_CTR" bash -c 'for i in $(seq 30); do ctr version >/dev/null 2>&1 && exit 0; sleep 0.5; done; cat /tmp/containerd.log; exit 1' ||
		die "containerd did not start in the build container (its log is above)"
	local t
	for t in "$WORK/images.tar" "$WORK/images-storage.tar"; do
		docker exec -i "$BUILD_CTR" ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned \
			--all-platforms --no-unpack --digests - <"$t" >/dev/null
	done
	docker exec "$BUILD_CTR" bash -c 'kill $(pidof containerd); while pidof containerd >/dev/null; do sleep 0.2; done; rm -f /tmp/containerd.log'
	docker commit --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
		--change "LABEL $LABEL=\"$stamp\"" "$BUILD_CTR" "$NODE_IMAGE" >/dev/null
	docker rm -f -v "$BUILD_CTR" >/dev/null
	BUILD_CTR=""
}

main() {
	docker info >/dev/null 2>&1 || die "no Docker daemon answers (hack/kind/docker.sh start)"
	WANT_TOOLS=$(wanted_tools_stamp | sort)
	local want
	want=$(echo "kind-node $KVER; $(debian_stamp)" | sha)
	if [[ $(label_of "$NODE_IMAGE") == "$want" ]]; then
		say "$NODE_IMAGE is up to date"
		echo "$NODE_IMAGE"
		return
	fi
	say "building $NODE_IMAGE into the cache at $CACHE (cold: 15-25 min on 2 cores)"
	mkdir -p "$CACHE"
	WORK=$(mktemp -d "$CACHE/.work.XXXXXX")
	build_rootfs &
	local rootfs_pid=$!
	timed "node: Go binaries" build_tools
	local t0=$SECONDS
	wait "$rootfs_pid" || die "the Debian rootfs failed (above)"
	say "Debian rootfs: done $((SECONDS - t0)) s after the Go binaries"
	[[ "$(tools_stamp | sort)" == "$WANT_TOOLS" ]] ||
		die "the tool stamps differ from what this script expects: $(diff <(tools_stamp | sort) <(echo "$WANT_TOOLS"))"
	timed "node: base and proxy images" build_debian_images
	timed "node: component images" build_component_images
	timed "node: import and commit" build_node_image "$want"
	say "$NODE_IMAGE built"
	echo "$NODE_IMAGE"
}
main
