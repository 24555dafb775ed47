package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"syscall"
	"time"
)

// DMConfig describes one run of the "dm" subcommand: many small
// conversations instead of one big channel. People come in DM pairs (2k
// and 2k+1), each is in ChannelsPerPerson created channels of about
// ChannelSize (edgeJob.channelsOf), and each sends RatePerPerson messages a
// second, turn about into their DM and their channels, from one of their
// sockets.
type DMConfig struct {
	Setup
	People            int
	SocketsPerPerson  int
	ChannelSize       int
	ChannelsPerPerson int
	RatePerPerson     float64
	Duration          time.Duration // of the sending
	ConnectConc       int           // each worker's dials in flight during the first connect
	// Drain sends SIGTERM to server 0 at DrainAfter into the sending: its
	// sockets are told to reconnect and move to the other servers.
	Drain      bool
	DrainAfter time.Duration
	DrainMax   time.Duration // how long to wait after the sending for the last deliveries
	Settle     time.Duration // pause between the first connect and the sending
}

func (cfg DMConfig) check() error {
	switch {
	case cfg.People < 2 || cfg.People%2 != 0:
		return errors.New("--people: an even number, at least 2 (people come in DM pairs)")
	case cfg.SocketsPerPerson < 1 || cfg.ChannelSize < 1:
		return errors.New("--sockets-per-person and --channel-size: at least 1")
	case cfg.ChannelsPerPerson < 1 || cfg.ChannelsPerPerson > 2:
		return errors.New("--channels-per-person: 1 or 2")
	case cfg.RatePerPerson <= 0 || cfg.Duration <= 0:
		return errors.New("--rate-per-person and --duration must be positive")
	case cfg.Drain && cfg.Servers < 2:
		return errors.New("--drain needs --servers 2 or more: the drained server's sockets move to the others")
	case cfg.Drain && (cfg.DrainAfter <= 0 || cfg.DrainAfter >= cfg.Duration):
		return errors.New("--drain-after: within --duration")
	}
	return nil
}

// RunDM is the "dm" subcommand from start to finish. Like Run, it returns
// what it measured even when it fails part way.
func RunDM(ctx context.Context, cfg DMConfig, log *slog.Logger) (*DMResults, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	res := &DMResults{Machine: machine()}
	err := runEdge(ctx, cfg.Setup.config(cfg.People*cfg.SocketsPerPerson, cfg.People, cfg.ConnectConc), log, func(ctx context.Context, c *coordinator) error {
		res.Config = DMResultConfig{
			Servers: c.cfg.Servers, Workers: c.cfg.Workers, People: cfg.People, SocketsPerPerson: cfg.SocketsPerPerson,
			ChannelSize: cfg.ChannelSize, Channels: cfg.channels(), RatePerPerson: cfg.RatePerPerson, Duration: cfg.Duration.String(),
			Drain: cfg.Drain, ServerArgs: c.cfg.ServerArgs,
		}
		if cfg.Drain {
			res.Config.DrainAfter = cfg.DrainAfter.String()
		}
		d := &dmRun{c: c, cfg: cfg, log: log, res: res}
		return d.run(ctx)
	})
	return res, err
}

func (cfg DMConfig) channels() int { return cfg.job().groups() * cfg.ChannelsPerPerson }

// job is the part of a worker's job that places people in channels.
func (cfg DMConfig) job() *edgeJob {
	return &edgeJob{Users: cfg.People, ChannelSize: cfg.ChannelSize, ChannelsPerPerson: cfg.ChannelsPerPerson}
}

type dmRun struct {
	c   *coordinator
	cfg DMConfig
	log *slog.Logger
	res *DMResults
}

func (d *dmRun) run(ctx context.Context) error {
	c := d.c
	t0 := time.Now()
	if err := c.createUsers(ctx); err != nil {
		return err
	}
	d.res.Setup.UsersSeconds = time.Since(t0).Seconds()
	t0 = time.Now()
	if err := d.makeChannels(ctx); err != nil {
		return err
	}
	d.res.Setup.ChannelsSeconds = time.Since(t0).Seconds()
	var err error
	if d.res.Connect, err = c.connectEdge(ctx, d.plan); err != nil {
		return err
	}
	select {
	case <-time.After(d.cfg.Settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	return d.load(ctx)
}

// makeChannels creates the channels through the API: each channel's first
// person creates it (and is its admin), the others join it.
func (d *dmRun) makeChannels(ctx context.Context) error {
	c := d.c
	n := d.cfg.channels()
	j := d.cfg.job()
	err := forEach(ctx, n, 16, func(i int) error {
		first := i * d.cfg.ChannelSize // the first person of a run, or of a deal
		if i >= j.groups() {
			first = i - j.groups()
		}
		body := map[string]any{"name": dmChannel(i), "private": false}
		if err := c.callWant(ctx, http.MethodPost, c.servers[first%len(c.servers)].url("/api/v1/channels"), c.tokens[first], body, nil, http.StatusCreated); err != nil {
			return fmt.Errorf("creating %s: %w", dmChannel(i), err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return forEach(ctx, d.cfg.People, 32, func(p int) error {
		for k, ch := range j.channelsOf(p) {
			if (k == 0 && p%d.cfg.ChannelSize == 0) || (k == 1 && p < j.groups()) {
				continue // its creator
			}
			if err := c.callWant(ctx, http.MethodPost, c.servers[p%len(c.servers)].url("/api/v1/channels/"+ch+"/join"), c.tokens[p], struct{}{}, nil, http.StatusNoContent); err != nil {
				return fmt.Errorf("%s joining %s: %w", userName(p), ch, err)
			}
		}
		return nil
	})
}

// plan gives person p's socket k server (p+k) mod servers, so that a
// person's sockets are on different servers (a drained server moves one
// of each person's, and the other keeps sending), and all of a person's
// sockets to worker p mod workers.
func (d *dmRun) plan(jobs []job) {
	c := d.c
	edge := edgeJob{Workload: workloadDM, Users: d.cfg.People, ReconnectConcurrency: c.cfg.DialConc,
		ChannelSize: d.cfg.ChannelSize, ChannelsPerPerson: d.cfg.ChannelsPerPerson, SocketsPerPerson: d.cfg.SocketsPerPerson}
	c.planEdge(jobs, edge, func(i int) (worker, user, server int) {
		p, k := i/d.cfg.SocketsPerPerson, i%d.cfg.SocketsPerPerson
		return p % len(jobs), p, (p + k) % len(c.servers)
	})
}

// load sends for the duration (draining server 0 part way when asked),
// then waits for every acknowledged message to reach every socket it is
// owed to.
func (d *dmRun) load(ctx context.Context) error {
	c := d.c
	r := &d.res.Load
	var err error
	if r.SubscriptionsBefore, err = c.subscriptions(ctx); err != nil {
		d.log.Warn("reading subscriptions", "err", err)
	}
	samples := c.sampleServers(ctx)
	cmds := c.redisCommands()
	before := c.sampleCPU()
	start := before.at
	drained := make(chan time.Time, 1)
	if d.cfg.Drain {
		timer := time.AfterFunc(d.cfg.DrainAfter, func() {
			d.log.Info("draining", "server", c.servers[0].addr)
			drained <- time.Now()
			_ = c.servers[0].p.cmd.Process.Signal(syscall.SIGTERM)
		})
		defer timer.Stop()
	}
	if _, err := c.command(ctx, command{Cmd: "dmsend", Rate: d.cfg.RatePerPerson, Duration: d.cfg.Duration}, "sent", d.cfg.Duration+60*time.Second); err != nil {
		return err
	}
	t, err := d.drain(ctx)
	if err != nil {
		return err
	}
	r.CPU = before.to(c.sampleCPU())
	if after := c.redisCommands(); cmds != nil && after != nil {
		r.RedisPerMessage = commandsPerConnect(cmds, after, float64(max(1, t.dm.Sent)))
	}
	r.ServerRSSMiB = c.serverRSSMiB()
	after := c.sampleServers(ctx)
	if r.SubscriptionsAfter, err = c.subscriptions(ctx); err != nil {
		d.log.Warn("reading subscriptions", "err", err)
	}
	var frames, msgs float64
	for i := range after {
		if after[i].frames > 0 { // a drained server has no /metrics left
			frames += after[i].frames - samples[i].frames
			msgs += after[i].messages - samples[i].messages
		}
	}
	if frames > 0 {
		r.ObjectsPerFrame = msgs / frames
	}
	m := t.dm
	r.Seconds = r.CPU.Seconds
	r.Sent, r.SentDM, r.SentChannel, r.WriteErrors, r.Skipped, r.Resent = m.Sent, m.SentDM, m.SentChannel, m.WriteErrors, m.Skipped, m.Resent
	r.AckedDM, r.AckedChannel, r.ErrFrames = m.AckedDM, m.AckedChannel, m.ErrFrames
	r.Unacked = m.Sent - min(m.Sent, m.AckedDM+m.AckedChannel+m.ErrFrames)
	r.Expected, r.Delivered, r.Duplicates = m.Expected, m.Delivered, m.Duplicates
	if r.Expected > 0 {
		r.DeliveredRatio = float64(r.Delivered) / float64(r.Expected)
	}
	r.DeliveredPerSec = perSecond(r.Delivered, max(sinceSeconds(start, m.LastRecvNS), d.cfg.Duration.Seconds()))
	r.Latency = t.latency.quantiles()
	if r.Delivered > 0 {
		r.ServerCPUPerDeliveredUs = r.CPU.ServersTotal / float64(r.Delivered) * 1e6
	}
	r.ErrorFrames, r.UnknownChannel, r.PresenceObjects = t.Errors, t.Unknown, t.Presence
	r.NotRecovered = t.NotRecovered
	if d.cfg.Drain {
		d.res.Drain = &DMDrain{Server: 0, Notices: t.Notices, Lost: t.Lost, Dials: t.Dialed, Moved: t.Connected, FailedDials: t.Failed,
			Resumed: t.Completed, Hello: t.hello.quantiles(), ResumedLatency: t.resumed.quantiles()}
		select {
		case at := <-drained:
			d.res.Drain.SecondsToAllBack = sinceSeconds(at, t.LastDoneNS)
		default:
		}
	}
	d.log.Info("dm", "delivered", fmt.Sprintf("%d/%d", r.Delivered, r.Expected), "perSec", int(r.DeliveredPerSec), "p50ms", r.Latency.P50ms,
		"p99ms", r.Latency.P99ms, "cpuUs", fmt.Sprintf("%.2f", r.ServerCPUPerDeliveredUs), "cpu", r.CPU.String())
	c.quitWorkers()
	return nil
}

// drain waits until every acknowledged message has reached every socket
// owed it and, after a drain, the drained server has exited and every
// socket it closed is back; or until nothing has arrived for 3 s (while no
// drained server is still closing sockets), or DrainMax.
func (d *dmRun) drain(ctx context.Context) (edgeTotals, error) {
	c := d.c
	deadline := time.Now().Add(d.cfg.DrainMax)
	var last uint64
	progress := time.Now()
	for {
		t, err := c.edgeCommand(ctx, command{Cmd: "report"}, "report", 30*time.Second)
		if err != nil {
			return t, err
		}
		m := t.dm
		done := m.Delivered >= m.Expected && m.AckedDM+m.AckedChannel+m.ErrFrames >= m.Sent
		closing := false
		if d.cfg.Drain {
			if c.servers[0].p.exited() {
				done = done && t.Completed >= t.Lost
			} else {
				done, closing = false, true
			}
		}
		if m.Delivered+t.Completed > last {
			last, progress = m.Delivered+t.Completed, time.Now()
		}
		if done || time.Now().After(deadline) || (!closing && time.Since(progress) > 3*time.Second) {
			return t, nil
		}
		select {
		case <-ctx.Done():
			return t, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
