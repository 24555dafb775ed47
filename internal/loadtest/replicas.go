package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// startReplicas starts --redis-replicas replicas of the Redis on
// primaryPort and waits until the primary counts them all in sync: the
// chat servers' auto replica acks then make every append WAIT for one, and
// the step's ack latency shows what that costs.
func (c *coordinator) startReplicas(ctx context.Context, primaryPort int) error {
	for i := range c.cfg.RedisReplicas {
		port, err := freePort("127.0.0.1")
		if err != nil {
			return err
		}
		dir := filepath.Join(c.cfg.WorkDir, fmt.Sprintf("replica-%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		cmd := exec.Command(c.cfg.RedisServer, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir,
			"--replicaof", "127.0.0.1", strconv.Itoa(primaryPort))
		name := fmt.Sprintf("redis-replica-%d", i)
		p, err := startProc(name, cmd, filepath.Join(c.cfg.WorkDir, name+".log"))
		if err != nil {
			return err
		}
		c.replicas = append(c.replicas, p)
	}
	if c.cfg.RedisReplicas == 0 {
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := onlineReplicas(c.redisAt)
		if err == nil && n == c.cfg.RedisReplicas {
			c.log.Info("redis replicas in sync", "replicas", n)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d redis replicas in sync after 30 s (%v)", n, c.cfg.RedisReplicas, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond): // a sync announces nothing: poll
		}
	}
}

// onlineReplicas counts the replicas INFO replication on addr calls online.
func onlineReplicas(addr string) (int, error) {
	body, err := redisInfo(addr, "replication")
	if err != nil {
		return 0, err
	}
	return strings.Count(body, "state=online"), nil
}

// redisInfo is the text INFO section answers on addr.
func redisInfo(addr, section string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("INFO " + section + "\r\n")); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n') // $<length>
	if err != nil || !strings.HasPrefix(head, "$") {
		return "", fmt.Errorf("INFO: unexpected reply %q (%v)", head, err)
	}
	size, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil {
		return "", fmt.Errorf("INFO: %q: %w", head, err)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return "", err
	}
	return string(body), nil
}
