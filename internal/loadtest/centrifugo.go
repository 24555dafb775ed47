package loadtest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// --target centrifugo runs the same measurement against Centrifugo v6
// (bin/centrifugo, built by `make centrifugo` from hack/centrifugo): the
// coordinator starts its servers from generated config files, on Redis (its
// Redis engine: PUB/SUB fan-out between nodes, as Hubbub's servers share
// Redis) or, with --backend memory, one server on its memory engine. A
// socket authenticates with an HS256 JWT the coordinator signs, subscribes
// to the channel, and publishes into it from the client, which is the
// nearest Centrifugo comes to a chat message sent over the socket. This file
// is the coordinator's side; centrifugo_worker.go is the worker's.

// centrifugoTarget is Config.Target and the workers' job mode for Centrifugo.
const centrifugoTarget = "centrifugo"

// checkCentrifugo refuses what Centrifugo has no counterpart for, before
// anything starts: it has no accounts to flood with logins, and it does not
// make a publish wait for Redis replicas.
func (cfg *Config) checkCentrifugo() error {
	for _, s := range cfg.Steps {
		if s.Flood > 0 {
			return errors.New("--target centrifugo has no logins to flood: steps without @LOGINS")
		}
	}
	if cfg.RedisReplicas > 0 {
		return errors.New("--target centrifugo does not wait for Redis replicas: --redis-replicas=0")
	}
	return nil
}

// centrifugoTokens makes the key the servers check connection tokens with,
// and the token of each of the run's users (c.tokens, as createUsers makes
// Hubbub's): an HS256 JWT with the user's name as sub, valid past any run,
// so that no socket has to refresh its token while it is measured.
func (c *coordinator) centrifugoTokens() (key string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("centrifugo token key: %w", err)
	}
	key = hex.EncodeToString(b)
	exp := time.Now().Add(c.cfg.Timeout + 24*time.Hour).Unix()
	c.tokens = make([]string, c.cfg.Users)
	for i := range c.tokens {
		c.tokens[i] = hs256JWT(key, map[string]any{"sub": userName(i), "exp": exp})
	}
	return key, nil
}

// hs256JWT signs claims with key (RFC 7519, HS256), with nothing but the
// standard library: the load tool needs no JWT dependency for one token shape.
func hs256JWT(key string, claims map[string]any) string {
	enc := base64.RawURLEncoding
	payload, _ := json.Marshal(claims) // a map of strings and numbers always encodes
	s := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(s))
	return s + "." + enc.EncodeToString(mac.Sum(nil))
}

// centrifugoCommand writes server i's config file into the run's WorkDir
// and returns the command that starts it on 127.0.0.1:port; cfg.ServerArgs
// are added to its command line (Centrifugo's own flags, e.g.
// --log.level=info).
func (c *coordinator) centrifugoCommand(i, port int, key string) (*exec.Cmd, error) {
	b, err := json.MarshalIndent(centrifugoConfig(c.cfg, fmt.Sprintf("server-%d", i), port, key, c.redisAt), "", "  ")
	if err != nil {
		return nil, err
	}
	file := filepath.Join(c.cfg.WorkDir, fmt.Sprintf("centrifugo-%d.json", i))
	if err := os.WriteFile(file, b, 0o600); err != nil {
		return nil, fmt.Errorf("centrifugo config: %w", err)
	}
	return exec.Command(c.cfg.Centrifugo, append([]string{"--config", file}, c.cfg.ServerArgs...)...), nil
}

// centrifugoConfig is one server's configuration, in Centrifugo v6's layout
// (github.com/centrifugal/centrifugo/v6 internal/config and
// internal/configtypes). What is set, and why:
//   - the channel (any channel outside a namespace) lets a connected client
//     subscribe and publish, with no history, presence or join/leave
//     messages, because the Hubbub run's channel sends none of those either
//     to the measured sockets;
//   - except in the storm (cfg.CentrifugoHistory > 0): there the channel
//     keeps that many publications for 10 minutes in its Redis stream and
//     forces recovery, which is Centrifugo's counterpart of a resume, and
//     which Hubbub pays for on every message (its history is a Redis
//     stream too);
//   - client.queue_max_size, the bytes one socket may have queued before
//     Centrifugo closes it as too slow, is 1 MiB (its default, written out):
//     about 5,700 of this tool's 182-byte pushes, more than Hubbub's
//     --send-queue-max of 4,096 objects;
//   - websocket.write_timeout is 10 s, Hubbub's --write-timeout, instead of
//     Centrifugo's 1 s, which on this loaded two-core machine would close
//     sockets of a worker that is only late;
//   - ping and pong keep Centrifugo's defaults (25 s, 8 s): the workers
//     answer its pings;
//   - /health (the coordinator waits for it) and /metrics (Go heap, stacks
//     and goroutines for the idle figures; pushes written and PUB/SUB lag
//     per step) are on; the server API, which a client publish does not
//     use, is off, and so are usage statistics;
//   - it logs at info, into server-N.log in the run's WorkDir: its start
//     (version, GOMAXPROCS, engine) and anything that goes wrong, and
//     nothing per connection or message.
//
// Centrifugo (open source) writes a socket's pushes as they come: there is
// no setting that holds them to share a frame (client.write_delay is
// Centrifugo PRO's). When a node cannot keep up, what it has not broadcast
// yet waits in its PUB/SUB queue (up to 4,096 publications a processor,
// then dropped), not in the sockets' queues; see settleBacklog.
func centrifugoConfig(cfg Config, name string, port int, key, redisAt string) map[string]any {
	engine := map[string]any{"type": "memory"}
	if cfg.Backend == "redis" {
		engine = map[string]any{"type": "redis", "redis": map[string]any{
			"address": []string{"redis://" + redisAt},
			"prefix":  "hubbub-bench",
		}}
	}
	channel := map[string]any{
		"allow_subscribe_for_client": true,
		"allow_publish_for_client":   true,
		"history_size":               0,
		"presence":                   false,
		"join_leave":                 false,
	}
	if cfg.CentrifugoHistory > 0 {
		channel["history_size"] = cfg.CentrifugoHistory
		channel["history_ttl"] = "600s"
		channel["force_recovery"] = true
	}
	return map[string]any{
		"node":        map[string]any{"name": name},
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "info"},
		"engine":      engine,
		"client": map[string]any{
			"token":          map[string]any{"hmac_secret_key": key},
			"queue_max_size": 1 << 20,
		},
		"channel":     map[string]any{"without_namespace": channel},
		"websocket":   map[string]any{"write_timeout": "10s"},
		"health":      map[string]any{"enabled": true},
		"prometheus":  map[string]any{"enabled": true},
		"http_api":    map[string]any{"disabled": true},
		"usage_stats": map[string]any{"disabled": true},
	}
}

// Where the targets' servers answer: Centrifugo keeps its default paths, so
// that its config and logs read as its documentation does.
func (c *coordinator) wsPath() string {
	if c.cfg.Target == centrifugoTarget {
		return "/connection/websocket"
	}
	return "/ws"
}

func (c *coordinator) healthPath() string {
	if c.cfg.Target == centrifugoTarget {
		return "/health"
	}
	return "/healthz"
}
