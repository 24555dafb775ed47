package loadtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/keys"
)

// benchRoom is the room the benchmark's servers run (--room).
const benchRoom = "bench/load"

// Subscriptions is what the servers follow through Redis pub/sub: each
// server's subscriptions (its pub/sub connection's, the room's events topic
// included), and the distinct channel topics subscribed to by any.
type Subscriptions struct {
	PerServer []int `json:"perServer"`
	Topics    int   `json:"topics"`
}

// subscriptions asks Redis, since the chat server exports no gauge of the
// channels it follows: CLIENT LIST gives each connection's subscriptions
// and address, and the address's port says which server's process holds
// it (/proc).
func (c *coordinator) subscriptions(ctx context.Context) (Subscriptions, error) {
	out := Subscriptions{PerServer: make([]int, len(c.servers))}
	rdb := redis.NewClient(&redis.Options{Addr: c.redisAt})
	defer rdb.Close()
	list, err := rdb.ClientList(ctx).Result()
	if err != nil {
		return out, fmt.Errorf("CLIENT LIST: %w", err)
	}
	owners := c.portOwners()
	for _, line := range strings.Split(list, "\n") {
		var port, subs int
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "addr":
				_, p, _ := strings.Cut(v, ":")
				port, _ = strconv.Atoi(p)
			case "sub", "ssub":
				n, _ := strconv.Atoi(v)
				subs += n
			}
		}
		if srv, ok := owners[port]; ok && subs > 0 {
			out.PerServer[srv] += subs
		}
	}
	topics, err := rdb.PubSubChannels(ctx, keys.Topic(benchRoom, "")+"*").Result()
	if err != nil {
		return out, fmt.Errorf("PUBSUB CHANNELS: %w", err)
	}
	out.Topics = len(topics)
	return out, nil
}

// portOwners maps the local ports of the chat servers' TCP sockets to the
// server whose process holds each.
func (c *coordinator) portOwners() map[int]int {
	byInode := map[string]int{}
	for i, s := range c.servers {
		dir := filepath.Join("/proc", strconv.Itoa(s.p.pid()), "fd")
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			link, err := os.Readlink(filepath.Join(dir, e.Name()))
			if inode, ok := strings.CutPrefix(link, "socket:["); ok && err == nil {
				byInode[strings.TrimSuffix(inode, "]")] = i
			}
		}
	}
	owners := map[int]int{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(table)
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			srv, ok := byInode[f[9]]
			if !ok {
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			if port, err := strconv.ParseUint(hexPort, 16, 16); err == nil {
				owners[int(port)] = srv
			}
		}
	}
	return owners
}
