package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The storm's --login: each user logs in once per worker, through the API,
// before its first socket dials, as a person opening the app does.

// login is one user's login on this worker, shared by its sockets.
type login struct {
	once  sync.Once
	token string
	err   error
}

// token is s's bearer token: the job's, or one its user logs in for (once
// per worker; the sockets of a user wait for the first of them to log in).
func (e *edgeWorker) token(ctx context.Context, s *slot) (string, error) {
	if e.job.Password == "" {
		return e.w.job.Conns[s.i].Token, nil
	}
	e.loginMu.Lock()
	l := e.loginsBy[s.spec.User]
	if l == nil {
		l = &login{}
		e.loginsBy[s.spec.User] = l
	}
	e.loginMu.Unlock()
	l.once.Do(func() { l.token, l.err = e.login(ctx, s) })
	return l.token, l.err
}

// login logs s's user in at s's server, retrying what a client would retry
// (503 while the server's bcrypt slots are taken, 429, a refused
// connection) with jittered backoff.
func (e *edgeWorker) login(ctx context.Context, s *slot) (string, error) {
	rnd := e.round.Load()
	url := "http" + strings.TrimSuffix(strings.TrimPrefix(e.job.Servers[s.server], "ws"), "/ws") + "/api/v1/login"
	body, _ := json.Marshal(map[string]string{"username": userName(s.spec.User), "password": e.job.Password})
	t0 := time.Now()
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := e.http.Do(req)
		code := 0
		if err == nil {
			var tok struct{ Token string }
			code = resp.StatusCode
			if code == http.StatusOK {
				err = json.NewDecoder(resp.Body).Decode(&tok)
			}
			resp.Body.Close()
			if code == http.StatusOK && err == nil {
				rnd.login.record(time.Since(t0))
				rnd.logins.Add(1)
				storeMax(&rnd.lastLogin, time.Now().UnixNano())
				return tok.Token, nil
			}
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("login %s: %w", userName(s.spec.User), ctx.Err())
		}
		if err == nil && code != http.StatusTooManyRequests && code/100 != 5 {
			return "", fmt.Errorf("login %s: HTTP %d", userName(s.spec.User), code)
		}
		rnd.loginRetries.Add(1)
		time.Sleep(time.Duration(rand.Int64N(int64(min(2*time.Second, 100*time.Millisecond<<min(attempt, 8))))))
	}
}
