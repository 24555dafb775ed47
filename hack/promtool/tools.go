//go:build tools

// Package promtool pins Prometheus' promtool, which checks and unit-tests the
// alerting rules the chart ships (test/chart runs it). Its own module keeps
// Prometheus' many dependencies out of the project's go.mod.
package promtool

import _ "github.com/prometheus/prometheus/cmd/promtool"
