#!/usr/bin/env bash
# Installs the system programs the tests start themselves (redis-server, chromium)
# when they are missing. Needs apt (Debian/Ubuntu) and root; otherwise it says
# exactly what to install and fails.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
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
