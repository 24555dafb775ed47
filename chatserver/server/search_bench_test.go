package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/config"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
	"github.com/hubbub-chat/hubbub/chatserver/server"
)

// BenchmarkSearch measures GET /api/v1/search end to end on a real
// redis-server: 20 channels of 10,000 messages each (8 words drawn from
// 2,000, skewed as words are), one person in all of them, searching one or
// two words across all of them, 20 results a page. It reports the first
// search's time (the pod indexes every channel's kept history: the cold
// cost) and p50/p99 of the rest, warm ("warm"), or with a new message in
// one of the channels before each search ("writes", each search then
// catches that channel up).
//
//	go test -run '^$' -bench BenchmarkSearch -benchtime 400x ./chatserver/server/
func BenchmarkSearch(b *testing.B) {
	const channels, perChannel = 20, 10_000
	cfg := backends[2].config(b)
	cfg.HistoryMax = perChannel
	cfg.Channels = nil
	for i := range channels {
		cfg.Channels = append(cfg.Channels, fmt.Sprintf("c%02d", i))
	}
	words := vocabulary(2000)
	zipf := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, uint64(len(words)-1))
	sentence := func() string {
		w := make([]string, 8)
		for i := range w {
			w[i] = words[zipf.Uint64()]
		}
		return strings.Join(w, " ")
	}
	fill(b, cfg, channels, perChannel, sentence)

	ts := startServer(b, cfg, server.Options{})
	tok := login(b, ts, "bench")
	store, err := server.OpenBackend(cfg, "bench-writer", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	query := func(r *rand.Rand) string {
		if r.IntN(2) == 0 {
			return words[zipf.Uint64()]
		}
		return words[r.IntN(200)] + " " + words[r.IntN(len(words))]
	}
	search := func(q string) time.Duration {
		start := time.Now()
		res := call(b, "GET", ts.URL+"/api/v1/search?"+url.Values{"q": {q}, "limit": {"20"}}.Encode(), tok, nil)
		if res.Status != 200 {
			b.Fatalf("search %q: %d %v", q, res.Status, res.Body)
		}
		return time.Since(start)
	}
	// The first search indexes every channel: it answers 503 (try again)
	// until that is done, and a client tries again.
	start := time.Now()
	for {
		res := call(b, "GET", ts.URL+"/api/v1/search?q=warmup", tok, nil)
		if res.Status == 200 {
			break
		}
		if res.Status != 503 {
			b.Fatalf("first search: %d %v", res.Status, res.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cold := time.Since(start)
	b.Logf("first search (indexing %d × %d messages): %s", channels, perChannel, cold)

	for _, mode := range []string{"warm", "writes"} {
		b.Run(mode, func(b *testing.B) {
			r := rand.New(rand.NewPCG(3, 4))
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				if mode == "writes" {
					ch := cfg.Channels[r.IntN(channels)]
					if _, err := store.Append(context.Background(), protocol.Message{Channel: ch, From: "bench", Text: sentence()}, "", perChannel); err != nil {
						b.Fatal(err)
					}
				}
				lat = append(lat, search(query(r)))
			}
			slices.Sort(lat)
			ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
			b.ReportMetric(ms(cold), "first-ms")
		})
	}
}

// fill appends perChannel messages to each channel, channels in parallel.
func fill(b *testing.B, cfg config.Config, channels, perChannel int, sentence func() string) {
	b.Helper()
	store, err := server.OpenBackend(cfg, "bench-filler", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	texts := make([][]string, channels)
	for c := range texts {
		for range perChannel {
			texts[c] = append(texts[c], sentence())
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, channels)
	for c := range channels {
		wg.Go(func() {
			for _, text := range texts[c] {
				m := protocol.Message{Channel: cfg.Channels[c], From: "bench", Text: text}
				if _, err := store.Append(context.Background(), m, "", perChannel); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// vocabulary is n distinct made-up words.
func vocabulary(n int) []string {
	r := rand.New(rand.NewPCG(5, 6))
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		w := make([]byte, 3+r.IntN(6))
		for i := range w {
			w[i] = byte('a' + r.IntN(26))
		}
		if !seen[string(w)] {
			seen[string(w)] = true
			out = append(out, string(w))
		}
	}
	return out
}
