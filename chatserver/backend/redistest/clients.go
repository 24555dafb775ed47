package redistest

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// forTest starts a topology with start, makes its failures fail t (bind),
// and closes it when t ends. It fails t if start does.
func forTest[T interface{ Close() error }](t testing.TB, start func() (T, error), bind func(T)) T {
	t.Helper()
	x, err := start()
	if err != nil {
		t.Fatal(err)
	}
	bind(x)
	t.Cleanup(func() {
		if err := x.Close(); err != nil {
			t.Errorf("redistest: %v", err)
		}
	})
	return x
}

// clientPool keeps one client per address for a topology's own queries:
// short timeouts (a frozen server answers nothing), no retries, and no
// CLIENT SETINFO (Redis 7.0 does not know it).
type clientPool struct {
	password string
	timeout  time.Duration
	protocol int // 0: go-redis' default

	mu      sync.Mutex
	clients map[string]*redis.Client
}

func (p *clientPool) get(addr string) *redis.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.clients[addr]
	if c == nil {
		c = redis.NewClient(&redis.Options{
			Addr: addr, Password: p.password,
			DialTimeout: p.timeout, ReadTimeout: p.timeout, WriteTimeout: p.timeout,
			MaxRetries: -1, PoolSize: 2, Protocol: p.protocol, DisableIdentity: true,
		})
		if p.clients == nil {
			p.clients = map[string]*redis.Client{}
		}
		p.clients[addr] = c
	}
	return c
}

// close closes every client; the pool can be used again afterwards.
func (p *clientPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.clients {
		_ = c.Close() // a client's error on close says nothing about the test
		delete(p.clients, addr)
	}
}

// infoField is one "name:value" line of INFO or CLUSTER INFO.
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}
