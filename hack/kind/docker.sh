#!/usr/bin/env bash
# A Docker daemon for the kind cluster:
#   hack/kind/docker.sh start   make sure one answers; start our own if none does
#   hack/kind/docker.sh stop    stop the daemon `start` started (by its PID), if any
#   hack/kind/docker.sh check   exit 0 if `start` could give a daemon here; else
#                               say why on stderr and exit 1 (nothing changes)
#
# Where a daemon already answers (a developer's laptop) it is used as it is and
# `stop` leaves it alone. Where none answers and this is Debian with root, the
# Debian package docker.io is installed when missing and a daemon of our own is
# started, its PID written to $STATE/dockerd.pid. Anything else gets one line
# saying what is missing.
#
# Some VMs lack CAP_SYS_RESOURCE in every process's bounding set, and Docker
# older than 23 still asks for it under --privileged (kind's node containers
# run privileged): runc fails with "unable to apply caps". There, and only
# there, the daemon is restarted with runc-nosysres (beside this script) as its
# default runtime, which drops from each container the capabilities the host
# cannot grant.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE=${HUBBUB_DOCKER_STATE:-/run/hubbub-dockerd}
PROBE_IMAGE=hubbub.local/docker-probe:1

die() { echo "docker.sh: $*" >&2; exit 1; }
answers() { timeout 20 docker info >/dev/null 2>&1; }

# probe_image makes a one-binary image (busybox from Debian's busybox-static)
# without any registry, to try `docker run --privileged` with.
probe_image() {
	docker image inspect "$PROBE_IMAGE" >/dev/null 2>&1 && return
	local bb=/bin/busybox
	if ! [[ -x $bb ]] || ! file_is_static "$bb"; then
		die "the privileged-run probe needs a static busybox (apt-get install busybox-static)"
	fi
	local d
	d=$(mktemp -d)
	mkdir -p "$d/bin"
	cp "$bb" "$d/bin/busybox"
	ln -s busybox "$d/bin/true"
	tar -C "$d" -c . | docker import --change 'ENTRYPOINT ["/bin/true"]' - "$PROBE_IMAGE" >/dev/null
	rm -rf "$d"
}
file_is_static() { ! ldd "$1" >/dev/null 2>&1; }

privileged_works() {
	probe_image
	docker run --rm --privileged --network none "$PROBE_IMAGE" >"$STATE/probe.log" 2>&1
}

launch() { # extra dockerd flags...
	mkdir -p "$STATE"
	# setsid: the daemon must outlive the make recipe's shell, and a ^C in
	# the terminal must reach our trap (which stops it), not the daemon.
	setsid dockerd --pidfile "$STATE/dockerd.pid" "$@" >"$STATE/dockerd.log" 2>&1 </dev/null &
	for _ in $(seq 60); do
		answers && return 0
		kill -0 $! 2>/dev/null || break
		sleep 0.5
	done
	tail -n 20 "$STATE/dockerd.log" >&2 || true
	die "the Docker daemon we started did not answer within 30 s (log: $STATE/dockerd.log)"
}

stop_ours() {
	[[ -f $STATE/dockerd.pid ]] || return 0
	local pid
	pid=$(cat "$STATE/dockerd.pid")
	# A PID file left by a killed run may name a reused PID: stop only a dockerd.
	if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]]; then
		kill "$pid"
		# dockerd stops its containers and its containerd first; give it time.
		for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
		kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
	fi
	rm -f "$STATE/dockerd.pid" "$STATE/ours"
}

# missing says why this script could not start a daemon here, or nothing.
missing() {
	if ! command -v dockerd >/dev/null && ! { [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; }; then
		echo "no Docker daemon answers and dockerd is not installed: install Docker (Debian: apt-get install docker.io) and start it"
	elif [[ $(id -u) != 0 ]]; then
		echo "no Docker daemon answers, and starting one needs root (start Docker, or add yourself to its group)"
	fi
}

start() {
	if answers; then
		[[ -f $STATE/ours ]] && echo "docker: our daemon (PID $(cat "$STATE/dockerd.pid")) already answers" ||
			echo "docker: using the daemon that answers ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
		return 0
	fi
	local why
	why=$(missing)
	[[ -z $why ]] || die "$why"
	if ! command -v dockerd >/dev/null; then
		echo "docker: installing Debian's docker.io"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io busybox-static jq >/dev/null
	fi
	command -v busybox >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
	stop_ours # a daemon of ours left by a killed run
	echo "docker: starting a daemon of our own (log: $STATE/dockerd.log)"
	launch
	touch "$STATE/ours"
	if ! privileged_works; then
		if grep -q "apply caps" "$STATE/probe.log"; then
			echo "docker: this host cannot grant every capability to --privileged; restarting the daemon with the runc-nosysres runtime"
			stop_ours
			launch --add-runtime "nosysres=$here/runc-nosysres" --default-runtime nosysres
			touch "$STATE/ours"
			privileged_works || { cat "$STATE/probe.log" >&2; stop_ours; die "docker run --privileged fails even with runc-nosysres"; }
		else
			cat "$STATE/probe.log" >&2
			stop_ours
			die "docker run --privileged fails (above); kind needs it"
		fi
	fi
	echo "docker: daemon PID $(cat "$STATE/dockerd.pid") answers"
}

case ${1:-} in
start) start ;;
check)
	answers && exit 0
	why=$(missing)
	[[ -z $why ]] || { echo "$why" >&2; exit 1; }
	;;
stop) stop_ours ;;
*) die "usage: docker.sh start|stop|check" ;;
esac
