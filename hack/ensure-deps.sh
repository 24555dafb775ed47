#!/usr/bin/env bash
# Installs, when missing, the system programs the tests use: redis-server,
# chromium, and what the kind e2e builds its images from. Needs apt (Debian/Ubuntu) and root; otherwise it says
# exactly what to install and fails.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
# The kind e2e: debootstrap makes the node image's Debian rootfs, busybox and
# jq serve the image scripts, and the Redis image is Debian's redis-server.
# (Docker itself is hack/kind/docker.sh's business: it is needed only where no
# daemon answers.)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v busybox >/dev/null 2>&1 || missing+=(busybox-static)
command -v jq >/dev/null 2>&1 || missing+=(jq)
[ ${#missing[@]} -eq 0 ] && exit 0

if command -v apt-get >/dev/null 2>&1; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "installing ${missing[*]} with apt-get" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
	exit 0
fi
echo "error: the tests need ${missing[*]} on PATH; install them with your package manager" >&2
exit 1
