// Package metrics holds the chat server's Prometheus collectors, registered
// on a registry of their own so tests can create as many servers as they like.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Metrics are the chat server's collectors.
type Metrics struct {
	Registry        *prometheus.Registry
	Connections     prometheus.Gauge
	Followed        prometheus.Gauge       // DM and created channels followed (local members)
	FramesIn        *prometheus.CounterVec // by client frame type ("invalid" when undecodable)
	FramesOut       prometheus.Counter     // WebSocket frames written (each may hold several objects)
	ObjectsOut      *prometheus.CounterVec // server objects queued, by type
	Errors          *prometheus.CounterVec // error objects and closes, by code
	Auth            *prometheus.CounterVec // auth outcomes
	DeliveryLatency prometheus.Histogram   // commit to local fan-out, seconds
	AckLatency      prometheus.Histogram   // a send's arrival to its ack queued (the commit), seconds
	BackendErrors   *prometheus.CounterVec // storage failures, by operation
	SlowConsumers   prometheus.Counter
}

// New creates and registers the collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hubbub_connections", Help: "Open WebSocket connections on this server.",
		}),
		FramesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubbub_frames_in_total", Help: "Client frames received, by type.",
		}, []string{"type"}),
		FramesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hubbub_frames_out_total", Help: "WebSocket frames written (a frame may coalesce several objects).",
		}),
		ObjectsOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubbub_objects_out_total", Help: "Server objects queued to sockets, by type.",
		}, []string{"type"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubbub_errors_total", Help: "Errors sent to clients and policy closes, by code.",
		}, []string{"code"}),
		Auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubbub_auth_total", Help: "Authentication outcomes.",
		}, []string{"outcome"}),
		DeliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hubbub_delivery_latency_seconds",
			Help:    "Time from a message's commit to its fan-out on this server.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		AckLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hubbub_ack_latency_seconds",
			Help:    "Time from a send's arrival to its ack: checks and the commit to storage (with replica acks where configured).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		BackendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubbub_backend_errors_total", Help: "Storage failures, by operation.",
		}, []string{"op"}),
		SlowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hubbub_slow_consumers_total", Help: "Connections closed because their send queue overflowed.",
		}),
		Followed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hubbub_followed_channels", Help: "DM and created channels this server follows (has local members of), besides the default channels.",
		}),
	}
	r.MustRegister(m.Connections, m.FramesIn, m.FramesOut, m.ObjectsOut, m.Errors, m.Auth,
		m.DeliveryLatency, m.AckLatency, m.BackendErrors, m.SlowConsumers, m.Followed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Series that exist from the start, at zero: an alert's rate() then
	// sees the first error, and a dashboard shows 0 rather than no data.
	// The labels come from protocol's tables: every code the WebSocket
	// side counts (HTTP errors are counted as auth outcomes and by
	// status), and every close but the normal one.
	for _, e := range protocol.Errors {
		if e.By&(protocol.InFrame|protocol.OnlyCount) != 0 {
			m.Errors.WithLabelValues(e.Code)
		}
	}
	for _, c := range protocol.Closes {
		if c.Code != protocol.CloseNormal {
			m.Errors.WithLabelValues(c.Label)
		}
	}
	for _, outcome := range []string{"registered", "login", "login_failed", "throttled", "busy", "unauthenticated", "bad_origin"} {
		m.Auth.WithLabelValues(outcome)
	}
	m.FramesIn.WithLabelValues(protocol.TypeSend)
	m.BackendErrors.WithLabelValues("append")
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}
