// Package loadtest is the load tool behind cmd/hubbub-bench: the coordinator
// that starts Redis, chat servers (or the baseline) and load worker
// processes on loopback and measures them step by step, the worker that
// holds the sockets, and the Results they report. It is a package of its
// own so that tests read the tool's results through its types and the
// command is left to parse flags.
//
// A run is several processes of one executable: Run starts its workers and
// the baseline server by running the executable it is in again, as
// "worker" (served by RunWorker) and "baseline --addr ADDR" (served by
// baseline.ListenAndServe). A binary that calls Run must answer both.
package loadtest

import (
	"context"
	"log/slog"
)

// Run is one benchmark from start to finish: it fills in cfg's defaults,
// refuses a run that could not work before starting anything, and returns
// what it measured even when it fails part way (Results is nil only when it
// failed before the workers connected), so that a long run that breaks
// still reports its finished steps.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (*Results, error) {
	if err := cfg.prepare(); err != nil {
		return nil, err
	}
	log.Info("logs", "dir", cfg.WorkDir)
	res, err := runCoordinator(ctx, cfg, log)
	if res != nil && len(res.Steps) > 0 && res.Medians == nil {
		res.Medians = medians(res.Steps)
	}
	return res, err
}
