package loadtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestScrape(t *testing.T) {
	const page = `# HELP hubbub_connections open sockets
hubbub_connections 7
hubbub_connections_total 99
centrifugo_client_connections_inflight{transport="websocket",accept_protocol="json",client_name="",client_version=""} 3
centrifugo_client_connections_inflight{transport="websocket",accept_protocol="protobuf",client_name="",client_version=""} 4
hubbub_objects_out_total{type="message"} 5
hubbub_objects_out_total{type="presence"} 6
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(page)) }))
	defer srv.Close()
	tests := []struct {
		name   string
		metric string
		want   float64
	}{
		{"a plain sample, not one whose name it begins", "hubbub_connections", 7},
		{"a name without labels sums its series", "centrifugo_client_connections_inflight", 7},
		{"a name with labels is that series alone", `hubbub_objects_out_total{type="message"}`, 5},
		{"missing", "hubbub_nothing", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := scrape(context.Background(), srv.URL, tt.metric)
			if err != nil {
				t.Fatal(err)
			}
			if got := m[tt.metric]; got != tt.want {
				t.Errorf("%s = %v, want %v", tt.metric, got, tt.want)
			}
		})
	}
}
