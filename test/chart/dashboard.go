package chart

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

// metricName matches the metric names Hubbub's dashboard reads: its own and
// controller-runtime's.
var metricName = regexp.MustCompile(`\b((?:hubbub|controller_runtime)_[a-z0-9_]+)\b`)

// DashboardMetrics returns, sorted, the metric names the queries of the
// Grafana dashboard at path read (a histogram by its name, not its _bucket
// series). Tests that scrape real servers check that each one is exported:
// chatserver/server's against a chat server, test/kind's against real pods.
func DashboardMetrics(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var names []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllStringSubmatch(tg.Expr, -1) {
				n := strings.TrimSuffix(m[1], "_bucket")
				if !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
		}
	}
	slices.Sort(names)
	return names, nil
}
