package probe

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// parseProbes loads a probes section (YAML list items) through the real config loader, so
// defaults and validation are the ones users get.
func parseProbes(t *testing.T, items string) []config.ProbeConfig {
	t.Helper()
	cfg, err := config.Parse([]byte("probes:\n"+items), filepath.Join(t.TempDir(), "responder.yml"),
		config.WithGetenv(func(string) string { return "" }))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg.Probes
}

// recorder is a Publish that records what it was given and fails while failing is set.
type recorder struct {
	mu      sync.Mutex
	batches [][]alert.Alert
	failing bool
}

func (r *recorder) publish(_ context.Context, as []alert.Alert) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing {
		return errors.New("bus down")
	}
	r.batches = append(r.batches, append([]alert.Alert(nil), as...))
	return nil
}

func (r *recorder) setFailing(f bool) {
	r.mu.Lock()
	r.failing = f
	r.mu.Unlock()
}

func (r *recorder) all() []alert.Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []alert.Alert
	for _, b := range r.batches {
		out = append(out, b...)
	}
	return out
}

// clock is an injected clock moved by the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func newRunner(t *testing.T, cfgs []config.ProbeConfig, o Options) *Runner {
	t.Helper()
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	r, err := New(cfgs, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// runOnce runs probe name once and fails the test on a run error.
func runOnce(t *testing.T, r *Runner, name string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := r.RunOnce(ctx, name)
	if err != nil {
		t.Fatalf("RunOnce(%s): %v", name, err)
	}
	return res
}

func isNaN(f float64) bool { return math.IsNaN(f) }
