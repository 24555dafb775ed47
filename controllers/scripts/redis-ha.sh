# The redis container of a highly available managed Redis pod (see
# docs/operator.md). It starts redis-server as the primary, or as a replica
# of the primary, which is:
#  1. what the sentinels of the other pods say, when one answers; if they
#     say it is this pod while they are failing over from it (it was down),
#     what they say once the failover is done (a minute at most, asking
#     every 2 seconds);
#  2. else what this pod's own sentinel last knew (its configuration, kept
#     on the volume): after all pods were down at once, the last primary
#     they agreed on;
#  3. else, in a new set, pod 0.
# The sentinels correct a wrong guess: they turn a primary they do not know
# as one into a replica, and point a replica at the right primary. Until
# then, a lone primary accepts no write (min-replicas-to-write 1).
#
# Environment: REDIS_HOSTS (every pod's host name, pod 0 first), REDIS_HOST
# (this pod's), SENTINEL_MASTER, REDIS_PORT, SENTINEL_PORT, DATA_DIR and
# REDIS_PASSWORD (REDISCLI_AUTH for redis-cli). Arguments are passed on to
# redis-server. Runs under busybox sh; uses timeout, grep and redis-cli.
# The kubelet expands variable references (a dollar and a parenthesis) and
# doubled dollars in a container's command: the script uses neither.

known() {
	for h in $REDIS_HOSTS; do [ "$h" = "$1" ] && return 0; done
	return 1
}
# ask prints the primary's host according to the sentinel at $1.
ask() {
	timeout 3 redis-cli --raw -h "$1" -p "$SENTINEL_PORT" SENTINEL get-master-addr-by-name "$SENTINEL_MASTER" 2>/dev/null |
		{ read -r host && read -r port && [ "$port" = "$REDIS_PORT" ] && echo "$host"; }
}
# flags prints the sentinel at $1's flags of the primary (s_down, o_down,
# failover_in_progress, ...).
flags() {
	timeout 3 redis-cli --raw -h "$1" -p "$SENTINEL_PORT" SENTINEL master "$SENTINEL_MASTER" 2>/dev/null |
		while read -r k && read -r v; do [ "$k" = flags ] && echo "$v"; done
}

# Until it runs redis-server, this is the container's process 1: stop when
# asked to.
trap 'exit 143' TERM INT
conf=$DATA_DIR/sentinel.conf
primary=
for try in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30; do
	primary=
	for h in $REDIS_HOSTS; do
		[ "$h" != "$REDIS_HOST" ] || continue
		a=`ask "$h"`
		if [ -n "$a" ] && known "$a"; then
			primary=$a peer=$h
			break
		fi
	done
	[ "$primary" = "$REDIS_HOST" ] || break
	case `flags "$peer"` in
	*down* | *failover*)
		echo "the sentinels are failing over from this pod; waiting for them"
		sleep 2
		;;
	*) break ;;
	esac
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

if [ "$primary" = "$REDIS_HOST" ]; then
	echo "starting as the primary"
else
	echo "starting as a replica of $primary"
	set -- --replicaof "$primary" "$REDIS_PORT" "$@"
fi
exec redis-server --port "$REDIS_PORT" --dir "$DATA_DIR" --appendonly yes \
	--requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD" \
	--replica-announce-ip "$REDIS_HOST" \
	--min-replicas-to-write 1 --min-replicas-max-lag 10 "$@"
