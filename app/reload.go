package app

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/rules"
)

// reloader tracks reload outcomes for the metrics and /api/v1/status.
type reloader struct {
	mu      sync.Mutex
	now     func() time.Time
	ok      prometheus.Gauge
	okTime  prometheus.Gauge
	lastErr string
	lastAt  time.Time
}

func newReloader(reg prometheus.Registerer, now func() time.Time) *reloader {
	r := &reloader{now: now,
		ok: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "responder", Name: "config_last_reload_successful",
			Help: "Whether the last configuration reload succeeded (1) or kept the previous rules (0)."}),
		okTime: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "responder", Name: "config_last_reload_success_timestamp_seconds",
			Help: "Time of the last successful configuration reload."}),
	}
	reg.MustRegister(r.ok, r.okTime)
	return r
}

func (r *reloader) succeeded(*rules.Set) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastAt, r.lastErr = r.now(), ""
	r.ok.Set(1)
	r.okTime.Set(float64(r.lastAt.Unix()))
}

func (r *reloader) failed(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastAt, r.lastErr = r.now(), err.Error()
	r.ok.Set(0)
}

func (r *reloader) last() apiReload {
	r.mu.Lock()
	defer r.mu.Unlock()
	return apiReload{At: r.lastAt, Successful: r.lastErr == "", Error: r.lastErr}
}

// Reload re-reads the configuration file and the rule files. On any error the rules in force are
// kept and responder_config_last_reload_successful drops to 0. Only the rules change on reload;
// other settings (listeners, tokens, database, bus) need a restart, which is logged.
func (a *App) Reload(ctx context.Context) error {
	cfg, err := loadConfig(a.o)
	if err == nil {
		var set *rules.Set
		if set, err = loadRules(cfg, a.handlers); err == nil {
			a.eng.SetRules(set)
			a.reload.succeeded(set)
			a.log.Info("reloaded rules", "rules", len(set.Rules), "rule_hash", set.Hash)
			return nil
		}
	}
	a.reload.failed(err)
	a.log.Error("reload failed; keeping the last good rules", "err", err)
	return err
}
