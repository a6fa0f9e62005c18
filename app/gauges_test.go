package app_test

import (
	"bytes"
	"context"
	"io"
	"math"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
)

// pgProxy forwards TCP connections to a PostgreSQL server until stop: then the database is gone
// for whoever connected through it.
type pgProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func newPGProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	p := &pgProxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(p.stop)
	return p
}

func (p *pgProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(s, c); _ = s.Close() }()
		go func() { _, _ = io.Copy(c, s); _ = c.Close() }()
	}
}

func (p *pgProxy) stop() {
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// A scrape of /metrics never queries the database: the database-backed gauges are read in the
// background, so with the database gone the scrape still answers at once, with the last values.
func TestMetricsScrapeIssuesNoQuery(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	u, err := url.Parse(dbURL)
	must(t, err)
	proxy := newPGProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	f := startApp(t, fixtureOpts{dbURL: u.String(), extra: `
safety:
  budgets:
    - {name: everything, match: "*", per: global, max: 7, window: 1h}
`})
	// State written behind the app's back: an open breaker.
	ctx := context.Background()
	st, err := store.Open(ctx, dbURL, store.Options{Version: "test"})
	must(t, err)
	defer st.Close()
	k := store.BreakerKey{Handler: "http.request", Scope: "airflow.internal:8080"}
	must(t, st.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := st.BreakerMachineTx(ctx, tx, k, time.Now()); err != nil {
			return err
		}
		return st.SetBreakerTx(ctx, tx, k, store.BreakerOpen, 1, time.Now())
	}))
	testwait.Until(t, 10*time.Second, "the refresh to see the open breaker", func() bool { return cachedMetric(t, f, "responder_breaker_state") == 2 })

	proxy.stop() // the database is gone for the app
	for i := range 3 {
		start := time.Now()
		code, body := f.do("GET", "/metrics", "", nil)
		took := time.Since(start)
		if code != 200 {
			t.Fatalf("scrape %d: %d", i, code)
		}
		if took > 500*time.Millisecond {
			t.Errorf("scrape %d took %s with the database gone, want no wait on it", i, took)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
		must(t, err)
		value := func(name string) float64 {
			mf := fams[name]
			if mf == nil || len(mf.GetMetric()) != 1 {
				t.Fatalf("scrape %d: %s missing or not one series", i, name)
			}
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
		if v := value("responder_breaker_state"); v != 2 {
			t.Errorf("scrape %d: breaker_state = %v, want the cached 2", i, v)
		}
		if v := value("responder_approvals_pending"); v != 0 {
			t.Errorf("scrape %d: approvals_pending = %v, want the cached 0", i, v)
		}
		if v := value("responder_budget_remaining"); v != 7 {
			t.Errorf("scrape %d: budget_remaining = %v, want the cached 7", i, v)
		}
		if v := value("responder_metrics_refresh_timestamp_seconds"); math.IsNaN(v) || v <= 0 {
			t.Errorf("scrape %d: metrics_refresh_timestamp_seconds = %v", i, v)
		}
	}
	// The refreshes fail now; the staleness shows and the values stay.
	testwait.Until(t, 10*time.Second, "a failed refresh to be counted", func() bool {
		return metricValue(t, f, "responder_metrics_refresh_failures_total") > 0
	})
}

// cachedMetric is metricValue for a gauge read in the background: NaN while it has no series yet.
func cachedMetric(t *testing.T, f *fixture, name string) float64 {
	t.Helper()
	mfs, err := f.app.Registry().Gather()
	must(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return metricValue(t, f, name)
		}
	}
	return math.NaN()
}
