package chat

import "testing"

// TestWriterQueueIsFIFOAndBounded: under sustained load the queue never
// empties; it must still hand sockets out in order and not grow without end.
func TestWriterQueueIsFIFOAndBounded(t *testing.T) {
	var w writerPool
	w.init(8)
	var in, out []*outbox
	for round := range 200 {
		for range 100 {
			c := &outbox{}
			in = append(in, c)
			w.queue = append(w.queue, c)
		}
		for range 100 - (round % 2) { // one fewer than arrived, every other round
			c := w.next()
			if c == nil {
				t.Fatalf("round %d: queue empty with %d waiting", round, len(in)-len(out))
			}
			out = append(out, c)
		}
		if cap(w.queue) > 8192 {
			t.Fatalf("round %d: queue capacity %d for %d waiting", round, cap(w.queue), len(in)-len(out))
		}
	}
	for i, c := range out {
		if c != in[i] {
			t.Fatalf("socket %d handed out out of order", i)
		}
	}
	for c := w.next(); c != nil; c = w.next() {
		out = append(out, c)
	}
	if len(out) != len(in) || w.idle != 1 {
		t.Fatalf("handed out %d of %d; idle writers %d, want 1", len(out), len(in), w.idle)
	}
}
