package loadtest

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// A worker stops dialing when the connect timeout ends or the machine's
// memory falls under its floor, and says which; one that tried every
// socket says nothing. The server here never answers a handshake, so every
// dial in flight waits for the timeout.
func TestConnectAllSaysWhyItStopped(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct {
		name        string
		conc        int
		floor       int64
		wantTried   int // dials that ended in an error (none connects)
		wantStopped string
	}{
		{name: "every socket tried", conc: 3, wantTried: 3},
		{name: "connect timeout", conc: 1, wantTried: 1, wantStopped: "connect timeout"},
		{name: "memory floor", conc: 1, floor: 1 << 62, wantTried: 1, wantStopped: "memory floor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conns := make([]connSpec, 3)
			for i := range conns {
				conns[i].URL = "ws://" + ln.Addr().String() + "/ws"
			}
			w := &worker{job: job{LocalIP: "127.0.0.1", Conns: conns, DialConcurrency: tc.conc,
				ConnectTimeout: time.Second, MemoryFloor: tc.floor}}
			got, errs, stopped := w.connectAll(context.Background())
			if len(got) != 0 || len(errs) != tc.wantTried {
				t.Errorf("%d connected, %d failed; want 0 and %d", len(got), len(errs), tc.wantTried)
			}
			if tc.wantStopped == "" && stopped != "" || !strings.HasPrefix(stopped, tc.wantStopped) {
				t.Errorf("stopped %q, want %q", stopped, tc.wantStopped)
			}
		})
	}
}
