# The sentinel container of a highly available managed Redis pod (see
# docs/operator.md). It runs redis-sentinel, and runs it again whenever it
# stops (as this container's process 1 it forwards SIGTERM).
#
# Sentinel keeps what it learns in its configuration file: the current
# primary with its epoch, the replicas, the other sentinels. The file is on
# the pod's volume, so that after all pods were down at once the sentinels
# agree again on the last primary (the highest epoch wins). Each start
# writes the fixed settings and the password afresh and keeps only that
# state. The primary to monitor is what the other pods' sentinels say, when
# one answers; else the one the file names; else, in a new set, pod 0.
#
# Environment and arguments: as redis-ha.sh (arguments go to redis-sentinel).
# The kubelet expands variable references (a dollar and a parenthesis) and
# doubled dollars in a container's command: the script uses neither.

known() {
	for h in $REDIS_HOSTS; do [ "$h" = "$1" ] && return 0; done
	return 1
}
ask() {
	timeout 3 redis-cli --raw -h "$1" -p "$SENTINEL_PORT" SENTINEL get-master-addr-by-name "$SENTINEL_MASTER" 2>/dev/null |
		{ read -r host && read -r port && [ "$port" = "$REDIS_PORT" ] && echo "$host"; }
}

umask 077
conf=$DATA_DIR/sentinel.conf
pid=
trap 'if [ -n "$pid" ]; then kill -TERM "$pid"; wait "$pid"; fi; exit 0' TERM INT
failures=
while :; do
	primary=
	for h in $REDIS_HOSTS; do
		[ "$h" != "$REDIS_HOST" ] || continue
		a=`ask "$h"`
		if [ -n "$a" ] && known "$a"; then
			primary=$a
			break
		fi
	done
	if [ -z "$primary" ] && [ -f "$conf" ]; then
		primary=`grep "^sentinel monitor $SENTINEL_MASTER " "$conf" | { read -r _ _ _ host _ && echo "$host"; }`
		known "$primary" || primary=
	fi
	if [ -z "$primary" ]; then
		for h in $REDIS_HOSTS; do
			primary=$h
			break
		done
	fi
	{
		echo "port $SENTINEL_PORT"
		echo "sentinel resolve-hostnames yes"
		echo "sentinel announce-hostnames yes"
		echo "sentinel announce-ip $REDIS_HOST"
		echo "sentinel announce-port $SENTINEL_PORT"
		echo "requirepass $REDIS_PASSWORD"
		echo "sentinel sentinel-pass $REDIS_PASSWORD"
		echo "sentinel monitor $SENTINEL_MASTER $primary $REDIS_PORT 2"
		echo "sentinel auth-pass $SENTINEL_MASTER $REDIS_PASSWORD"
		echo "sentinel down-after-milliseconds $SENTINEL_MASTER 5000"
		echo "sentinel failover-timeout $SENTINEL_MASTER 60000"
		echo "sentinel parallel-syncs $SENTINEL_MASTER 1"
		if [ -f "$conf" ]; then
			grep -E "^sentinel (myid|current-epoch) " "$conf"
			grep -E "^sentinel (config-epoch|leader-epoch) $SENTINEL_MASTER " "$conf"
			# Sentinel refuses to start when a host name does not resolve
			# (a pod that is not scheduled): after three failed starts,
			# the other pods are left for it to find again.
			case $failures in
			xxx*) ;;
			*)
				grep -E "^sentinel (known-replica|known-sentinel) $SENTINEL_MASTER " "$conf" |
					grep -v -F "known-replica $SENTINEL_MASTER $primary $REDIS_PORT"
				;;
			esac
		fi
	} >"$conf.new" && mv -f "$conf.new" "$conf"
	redis-sentinel "$conf" "$@" &
	pid=$!
	wait "$pid"
	echo "redis-sentinel exited with status $?; starting it again"
	pid= failures=x$failures
	sleep 2
done
