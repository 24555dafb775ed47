// Command operator runs the Hubbub operator: it reconciles ChatRooms into
// running chat (see docs/operator.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
	"github.com/hubbub-chat/hubbub/chatserver/config"
	"github.com/hubbub-chat/hubbub/controllers"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "operator:", err)
		os.Exit(1)
	}
}

// flags are the operator's command line.
type flags struct {
	chatImage, redisImage   string
	watchNamespaces         string
	metricsAddr, probeAddr  string
	leaderElect             bool
	leaderElectionNamespace string
	presenceInterval        time.Duration
	maxConcurrentReconciles int
	logLevel                slog.Level
}

func parseFlags(args []string) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("operator", flag.ContinueOnError)
	fs.StringVar(&f.chatImage, "chat-image", "", "chat server image for ChatRooms that name none (required)")
	fs.StringVar(&f.redisImage, "redis-image", controllers.DefaultRedisImage, "image of managed Redis (runs as UID 999, like the official images)")
	fs.StringVar(&f.watchNamespaces, "watch-namespaces", "", "comma-separated namespaces to watch; empty watches all")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", `address of the Prometheus metrics endpoint; "0" disables it`)
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.BoolVar(&f.leaderElect, "leader-elect", true, "elect a leader so that only one replica reconciles at a time")
	fs.StringVar(&f.leaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election Lease; empty means the operator's own namespace")
	// The operator no longer talks to any Redis, so managed Redis
	// NetworkPolicies admit no operator pod and these say nothing. They are
	// still accepted so that existing command lines (the Helm chart's among
	// them) keep starting the operator.
	fs.String("operator-namespace", "", "ignored: managed Redis NetworkPolicies admit only the room's chat pods")
	fs.String("operator-pod-labels", "", "ignored: managed Redis NetworkPolicies admit only the room's chat pods")
	fs.DurationVar(&f.presenceInterval, "presence-interval", controllers.DefaultPresenceInterval, "how often each room's status.onlineUsers is refreshed (by asking one of its chat pods)")
	fs.IntVar(&f.maxConcurrentReconciles, "max-concurrent-reconciles", controllers.DefaultMaxConcurrentReconciles, "rooms reconciled at once")
	fs.TextVar(&f.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if f.chatImage == "" {
		return f, errors.New("--chat-image is required")
	}
	return f, nil
}

func run(args []string) error {
	f, err := parseFlags(args)
	if err != nil {
		return err
	}
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: f.logLevel})))

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(chatv1alpha1.AddToScheme(scheme))

	cacheOpts := controllers.CacheOptions(config.SplitList(f.watchNamespaces))
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         cacheOpts,
		Metrics:                       metricsserver.Options{BindAddress: f.metricsAddr},
		HealthProbeBindAddress:        f.probeAddr,
		LeaderElection:                f.leaderElect,
		LeaderElectionID:              "hubbub-operator.chat.hubbub.dev",
		LeaderElectionNamespace:       f.leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true, // a rolling update hands over at once
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	if err := controllers.SetupWithManager(mgr, controllers.Options{
		ChatImage:               f.chatImage,
		RedisImage:              f.redisImage,
		PresenceInterval:        f.presenceInterval,
		MaxConcurrentReconciles: f.maxConcurrentReconciles,
	}); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	// Every replica exports the rooms it sees in its cache (caches run on
	// followers too), so alerts aggregate with max by (namespace, room).
	roomLog := ctrl.Log.WithName("metrics")
	if err := ctrlmetrics.Registry.Register(controllers.RoomCollector{Reader: mgr.GetCache(), OnError: func(err error) {
		roomLog.Error(err, "list ChatRooms for their metrics")
	}}); err != nil {
		return fmt.Errorf("register room metrics: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	// Ready once the caches have synced: before that a new leader would
	// reconcile from an empty view.
	if err := mgr.AddReadyzCheck("readyz", func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("caches not synced yet")
		}
		return nil
	}); err != nil {
		return err
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}
