package redisbackend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/keys"
)

// Redis Cluster. Every key and topic of a room carries the room's hash tag
// ({namespace/room}), so all of them map to one hash slot: one primary (and
// its replicas) holds the room, and rooms spread over the primaries.
//
// Pub/sub is sharded there (Redis 7.0: SPUBLISH, SSUBSCRIBE): a classic
// PUBLISH is broadcast over the cluster bus to every node, whereas SPUBLISH
// reaches only the nodes of the channel's slot (its primary and replicas), so
// a room's traffic stays within its shard. The append script SPUBLISHes. A
// script may: Redis checks every command a script runs as it checks a key
// access, so the channel must hash to a slot this node serves ("Script
// attempted to access a non local key in a cluster node" otherwise, after
// the writes before it took effect), and for a script declaring flags to the
// slot of its declared keys; the topic shares the stream's hash tag, so it
// is in KEYS[1]'s slot. SPUBLISH is not replicated as a command: the node
// sends the message over the cluster bus to the other nodes of its shard.
// The feed's one subscription connection SSUBSCRIBEs the events topic and
// the followed channels on the slot's primary; Redis takes only channels of
// one slot per SSUBSCRIBE, which a room's topics all are.
//
// Failovers: go-redis learns the slot map at start and then only on
// redirections or every minute; a dead primary gives no redirection, only
// failed dials. So every failure that may mean "the map changed" (connection
// errors, CLUSTERDOWN, MOVED, ...) asks for a reload, and the next attempt
// (the client resends an append) goes to the new primary.
//
// The feed's subscription lives on one node, which it picks itself as the
// slot's primary (slotPrimary) rather than leaving it to go-redis, which
// would dial the same node again after a lost connection, dead or demoted.
// It replaces the connection, on the slot's primary as a fresh map names it,
// when the connection is lost or refused; when the node ends the
// subscriptions (a primary that loses the slot while alive, demoted by a
// manual failover or as the slot migrates, sends sunsubscribe for every
// channel of the slot); and when, at a subscribe confirmation, the node
// turns out not to be the slot's primary. As after any reconnect, the
// confirmations on the new connection make the feed re-read every channel
// from the stream, on the slot's primary.

// cluster is the client as a cluster client, or nil.
func (b *Backend) cluster() *redis.ClusterClient {
	cc, _ := b.client.(*redis.ClusterClient)
	return cc
}

// publishCommand is what the append script publishes with.
func (b *Backend) publishCommand() string {
	if b.cluster() != nil {
		return "SPUBLISH"
	}
	return "PUBLISH"
}

// clusterTrouble notes an error of an operation on a cluster: if it may come
// from a changed slot map (a dead or demoted primary, a moved slot) it asks
// go-redis to reload the map in the background. It reports whether the error
// is one that on a cluster means "not here, not now" rather than a bad
// request, beyond those unavailable knows: a redirection (MOVED, ASK: the
// slot's primary changed under a command sent to a node directly, as the
// append is), or UNBLOCKED (a failover demoted the primary while the
// append's WAIT was blocked on it; whether the append survived is unknown,
// and the client's resend with the same clientId settles it).
func (b *Backend) clusterTrouble(err error) (transient bool) {
	cc := b.cluster()
	if cc == nil || err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	transient = redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK") || redis.HasErrorPrefix(err, "UNBLOCKED")
	if transient || unavailable(err) {
		cc.ReloadState(context.Background()) // asynchronous, and coalesced with reloads under way
	}
	return transient
}

// reloadCluster reloads the slot map now (before a new subscription picks a
// node by it); on failure the map stays as it was and a reload is left
// under way in the background.
func (b *Backend) reloadCluster(ctx context.Context) {
	cc := b.cluster()
	if cc == nil {
		return
	}
	// ForEachMaster reloads the map before it visits the primaries (it
	// visits nothing here); ReloadState alone would only start a reload.
	if err := cc.ForEachMaster(ctx, func(context.Context, *redis.Client) error { return nil }); err != nil {
		cc.ReloadState(ctx)
	}
}

// slotPrimary finds the primary of the room's slot for a new subscription:
// it reloads the slot map until the primary the map names confirms that it
// serves the slot (a keyed read there is not redirected). Nodes learn of a
// failover at slightly different moments, so a map read just after one may
// still name the old primary; and a sharded subscription on a node that just
// became a replica may hear nothing until its new primary counts it among
// its replicas. It gives up after about two seconds (say, while a failover
// is under way) and returns the map's choice, or nil if there is no map.
func (b *Backend) slotPrimary(ctx context.Context) *redis.Client {
	cc := b.cluster()
	key := keys.Presence(b.room)
	delay := 20 * time.Millisecond
	var guess *redis.Client
	for range 8 {
		b.reloadCluster(ctx)
		if node, err := cc.MasterForKey(ctx, key); err == nil {
			guess = node
			if b.isSlotPrimary(ctx, node) {
				return node
			}
		}
		select {
		case <-ctx.Done():
			return guess
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
	return guess
}

// isSlotPrimary reports whether node confirms that it serves the room's
// slot as its primary: a keyed read there is answered, not redirected (a
// replica, or a primary of other slots, answers MOVED), and not refused
// otherwise (a node still loading its data may not know yet that a failover
// made it a replica). CLUSTERDOWN counts as a yes: the node has the slot but
// the cluster is down, or nobody has the slot; no other node would do
// better.
func (b *Backend) isSlotPrimary(ctx context.Context, node *redis.Client) bool {
	if node == nil {
		return false
	}
	err := node.Exists(ctx, keys.Presence(b.room)).Err()
	return err == nil || redis.HasErrorPrefix(err, "CLUSTERDOWN")
}

// pingCluster checks that the cluster serves the room. PING answers on any
// node whatever the slots; a keyed read in the room's slot (routed, and
// redirected, like every command) fails unless the slot's primary answers
// and the cluster is up: "CLUSTERDOWN Hash slot not served" when no node has
// the slot, "CLUSTERDOWN The cluster is down" when some slot has no node
// (cluster-require-full-coverage), a dial error when the primary the slot
// map names is down (and no replica took over yet, or none is left).
func (b *Backend) pingCluster(ctx context.Context, cc *redis.ClusterClient) error {
	key := keys.Presence(b.room)
	err := cc.Exists(ctx, key).Err()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		return err
	case redis.HasErrorPrefix(err, "CLUSTERDOWN"):
		return fmt.Errorf("redis cluster cannot serve room %q (hash slot %d); are all 16384 slots assigned to reachable primaries? (redis-cli --cluster check): %w",
			b.room, keySlot(key), err)
	case strings.Contains(err.Error(), "cluster support disabled"):
		return fmt.Errorf("a redis-cluster:// URL names a Redis that is not in cluster mode (use redis://): %w", err)
	}
	if node, nerr := cc.MasterForKey(ctx, key); nerr == nil {
		return fmt.Errorf("redis cluster: room %q (hash slot %d) is on %s: %w", b.room, keySlot(key), node.Options().Addr, err)
	}
	return fmt.Errorf("redis cluster: room %q (hash slot %d): %w", b.room, keySlot(key), err)
}

// keySlot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of its hash
// tag (the part between the first '{' and the next '}', if not empty) or of
// the whole key, modulo 16384.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}
