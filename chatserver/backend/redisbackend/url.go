package redisbackend

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timeouts used when the URL does not set them.
const (
	defaultDialTimeout   = 2 * time.Second
	defaultReadTimeout   = 3 * time.Second
	defaultWriteTimeout  = 3 * time.Second
	defaultDialerRetries = 2
)

// ParseURL turns a --redis-url into go-redis UniversalOptions:
//
//	redis://[[user]:password@]host:port[/db][?dial_timeout=2s&...]   one server
//	rediss://...                                                     one server over TLS
//	unix://[[user]:password@]/path/to/redis.sock[?db=N]             one server, Unix socket
//	redis-sentinel://[:password@]host:port[,host:port]/[db]?master=NAME[&sentinel_password=P][&tls=true]
//	redis-cluster://[:password@]host:port[,host:port][?tls=true]
//
// Single-server URLs accept go-redis's query options (see redis.ParseURL).
// For Sentinel the URL's password is the master's and, unless
// sentinel_password is given, also the sentinels'.
func ParseURL(raw string) (*redis.UniversalOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	var uo *redis.UniversalOptions
	switch u.Scheme {
	case "redis", "rediss", "unix":
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("redis URL: %w", err)
		}
		uo = &redis.UniversalOptions{
			Addrs:           []string{o.Addr},
			ClientName:      o.ClientName,
			DB:              o.DB,
			Protocol:        o.Protocol,
			Username:        o.Username,
			Password:        o.Password,
			MaxRetries:      o.MaxRetries,
			MinRetryBackoff: o.MinRetryBackoff,
			MaxRetryBackoff: o.MaxRetryBackoff,
			DialTimeout:     o.DialTimeout,
			ReadTimeout:     o.ReadTimeout,
			WriteTimeout:    o.WriteTimeout,
			PoolFIFO:        o.PoolFIFO,
			PoolSize:        o.PoolSize,
			PoolTimeout:     o.PoolTimeout,
			MinIdleConns:    o.MinIdleConns,
			MaxIdleConns:    o.MaxIdleConns,
			MaxActiveConns:  o.MaxActiveConns,
			ConnMaxIdleTime: o.ConnMaxIdleTime,
			ConnMaxLifetime: o.ConnMaxLifetime,
			TLSConfig:       o.TLSConfig,
		}
		if o.Network == "unix" {
			path := o.Addr
			uo.Dialer = func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			}
		}
	case "redis-sentinel", "redis-cluster":
		defPort := "6379"
		if u.Scheme == "redis-sentinel" {
			defPort = "26379"
		}
		addrs, err := hostList(u.Host, defPort)
		if err != nil {
			return nil, fmt.Errorf("redis URL: %w", err)
		}
		q := u.Query()
		uo = &redis.UniversalOptions{Addrs: addrs}
		if u.User != nil {
			uo.Username = u.User.Username()
			uo.Password, _ = u.User.Password()
		}
		if v := q.Get("tls"); v != "" {
			on, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("redis URL: tls=%q: %w", v, err)
			}
			if on {
				uo.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
		}
		if u.Scheme == "redis-sentinel" {
			uo.MasterName = q.Get("master")
			if uo.MasterName == "" {
				return nil, fmt.Errorf("redis URL: redis-sentinel:// needs ?master=NAME")
			}
			uo.SentinelPassword = uo.Password
			if q.Has("sentinel_password") {
				uo.SentinelPassword = q.Get("sentinel_password")
			}
			if db := strings.Trim(u.Path, "/"); db != "" {
				if uo.DB, err = strconv.Atoi(db); err != nil {
					return nil, fmt.Errorf("redis URL: database %q is not a number", db)
				}
			}
		} else {
			if p := strings.Trim(u.Path, "/"); p != "" {
				return nil, fmt.Errorf("redis URL: redis-cluster:// has no database (got path %q)", u.Path)
			}
			uo.IsClusterMode = true
		}
	default:
		return nil, fmt.Errorf("redis URL: scheme %q is not one of redis, rediss, unix, redis-sentinel, redis-cluster", u.Scheme)
	}
	if uo.DialTimeout == 0 {
		uo.DialTimeout = defaultDialTimeout
	}
	if uo.ReadTimeout == 0 {
		uo.ReadTimeout = defaultReadTimeout
	}
	if uo.WriteTimeout == 0 {
		uo.WriteTimeout = defaultWriteTimeout
	}
	// go-redis retries a refused dial 5 times 100 ms apart by default, and
	// the command itself 3 times: with Redis down a send would take seconds
	// to fail. Fail sooner; the client retries a send that got "unavailable".
	if uo.DialerRetries == 0 {
		uo.DialerRetries = defaultDialerRetries
	}
	// A request's context deadline bounds its Redis round trip too.
	uo.ContextTimeoutEnabled = true
	return uo, nil
}

func hostList(hosts, defPort string) ([]string, error) {
	var out []string
	for _, h := range strings.Split(hosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(h, defPort)
			if _, _, err := net.SplitHostPort(h); err != nil {
				return nil, fmt.Errorf("bad address %q", h)
			}
		}
		out = append(out, h)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no host:port given")
	}
	return out, nil
}
