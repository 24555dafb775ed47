#!/usr/bin/env bash
# Builds the two images Hubbub runs in a cluster, with no registry to pull from:
#   hack/kind/images.sh hubbub   FROM scratch: /operator and /chatserver, built
#                                static on this host, USER 65532:65532
#   hack/kind/images.sh redis    the managed Redis: Debian's redis-server and
#                                redis-sentinel with the libraries they link,
#                                busybox's sh and grep for the readiness probe,
#                                running as UID 999
# Each prints the image reference it built. The tag is a digest of what went
# in (the binaries; the Debian package versions), so a changed binary gets a new
# tag and an unchanged one is not built again.
#
# The Dockerfile at the repository root builds the same Hubbub image where a
# registry is reachable (it pulls golang and distroless); this is the path that
# is tested here.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

exists() { docker image inspect "$1" >/dev/null 2>&1; }

hubbub() {
	local out
	out=$(mktemp -d)
	trap 'rm -rf "$out"' RETURN
	(cd "$REPO" && CGO_ENABLED=0 main_go build -trimpath -ldflags "-s -w" -o "$out/" ./cmd/operator ./cmd/chatserver) ||
		die "go build of the operator and the chat server failed (above)"
	local tag
	tag=$(cat "$out/operator" "$out/chatserver" | sha256sum | cut -c1-12)
	local img=hubbub.local/hubbub:$tag
	if ! exists "$img"; then
		cat >"$out/Dockerfile" <<-'EOF'
			FROM scratch
			COPY operator chatserver /
			# 65532 ("nonroot"), numeric so that runAsNonRoot can check it.
			USER 65532:65532
			EXPOSE 8080
			ENTRYPOINT ["/chatserver"]
		EOF
		dbuild -t "$img" "$out"
	fi
	echo "$img"
}

redis() {
	local pkgs=(redis-server redis-sentinel redis-tools busybox-static) missing=() p
	for p in "${pkgs[@]}"; do dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
	if ((${#missing[@]})); then
		[[ $(id -u) == 0 ]] && command -v apt-get >/dev/null ||
			die "the Redis image is made from Debian's ${missing[*]}: install them"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
	local version
	version=$(dpkg-query -W -f '${Version}' redis-server)
	local tag
	tag=$(echo "${version#*:}" | cut -d- -f1)-$(dpkg-query -W "${pkgs[@]}" | sha256sum | cut -c1-8)
	local img=hubbub.local/redis:$tag
	if exists "$img"; then echo "$img"; return; fi

	local d
	d=$(mktemp -d)
	trap 'rm -rf "$d"' RETURN
	local root=$d/root
	mkdir -p "$root"/{usr/bin,bin,etc,tmp,data}
	# redis-server and redis-sentinel are the same program (redis-check-rdb)
	# under other names, as in the Debian package.
	local bin=/usr/bin/redis-check-rdb
	cp "$bin" /usr/bin/redis-cli "$root/usr/bin/"
	ln -s redis-check-rdb "$root/usr/bin/redis-server"
	ln -s redis-check-rdb "$root/usr/bin/redis-sentinel"
	local lib
	for lib in $({ ldd "$bin"; ldd /usr/bin/redis-cli; } | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
	cp /bin/busybox "$root/bin/busybox"
	for p in sh grep cat ls; do ln -s busybox "$root/bin/$p"; done
	printf 'root:x:0:0:root:/:/bin/sh\nredis:x:999:1000:redis:/data:/bin/sh\n' >"$root/etc/passwd"
	printf 'root:x:0:\nredis:x:1000:\n' >"$root/etc/group"
	cat >"$d/Dockerfile" <<-EOF
		FROM scratch
		COPY root/ /
		ENV PATH=/usr/bin:/bin
		LABEL dev.hubbub.debian-packages="$(dpkg-query -W "${pkgs[@]}" | tr '\t\n' '= ')"
		USER 999:1000
		WORKDIR /data
		EXPOSE 6379
		ENTRYPOINT ["redis-server"]
	EOF
	# /tmp and /data writable by the redis user whatever the volume's owner.
	chmod 1777 "$root/tmp" "$root/data"
	dbuild -t "$img" "$d"
	docker run --rm --entrypoint redis-server "$img" --version >/dev/null ||
		die "the Redis image $img does not run redis-server"
	echo "$img"
}

docker info >/dev/null 2>&1 || die "no Docker daemon answers (hack/kind/docker.sh start)"
case ${1:-} in
hubbub) hubbub ;;
redis) redis ;;
*) die "usage: images.sh hubbub|redis" ;;
esac
