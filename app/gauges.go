package app

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/store"
)

// DefaultMetricsRefreshInterval is how often every replica reads the database-backed gauges.
const DefaultMetricsRefreshInterval = 10 * time.Second

// gaugeRefreshTimeout bounds one refresh (its queries together).
const gaugeRefreshTimeout = 5 * time.Second

// gauges serves the metrics whose truth is in PostgreSQL (responder_approvals_pending,
// responder_budget_remaining, responder_breaker_state) from values a background loop reads every
// MetricsRefreshInterval, so that a scrape never queries the database: a scrape costs nothing
// however often Prometheus (or several of them) asks, and answers at once, with the last values
// read, while the database is slow or down. Every replica refreshes its own copy (the values are
// global, and every replica is a scrape target). The staleness is visible:
// responder_metrics_refresh_timestamp_seconds is the time of the last complete refresh.
type gauges struct {
	a     *App
	every time.Duration

	pending   prometheus.GaugeFunc
	dead      prometheus.Gauge // responder_dead_letters: not replayed yet
	remaining *prometheus.GaugeVec
	breakers  *prometheus.Desc
	refreshed prometheus.Gauge
	failures  prometheus.Counter

	mu            sync.Mutex
	pendingValue  float64         // NaN until read: unknown, not "nothing pending"
	breakerValues []store.Breaker // as last read
}

func newGauges(a *App) *gauges {
	g := &gauges{a: a, every: a.o.MetricsRefreshInterval, pendingValue: math.NaN()}
	if g.every <= 0 {
		g.every = DefaultMetricsRefreshInterval
	}
	g.pending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "responder", Name: "approvals_pending",
		Help: "Actions awaiting approval (read in the background; see responder_metrics_refresh_timestamp_seconds)."}, g.pendingNow)
	g.dead = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "responder", Name: "dead_letters",
		Help: "Dead letters not replayed yet (read in the background)."})
	g.dead.Set(math.NaN()) // unknown until the first refresh, not "none"
	g.remaining = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "responder", Name: "budget_remaining",
		Help: "Actions a budget still allows in its window, for its most used scope (read in the background)."}, []string{"budget"})
	for _, b := range a.cur().budgets {
		g.remaining.WithLabelValues(b.Name).Set(math.NaN()) // unknown until the first refresh
	}
	g.breakers = prometheus.NewDesc("responder_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open (read in the background).",
		[]string{"handler", "scope"}, nil)
	g.refreshed = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "responder", Name: "metrics_refresh_timestamp_seconds",
		Help: "Unix time of the last complete refresh of the database-backed gauges (approvals_pending, budget_remaining, breaker_state)."})
	g.failures = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "responder", Name: "metrics_refresh_failures_total",
		Help: "Refreshes of the database-backed gauges that failed (the gauges keep their last values)."})
	return g
}

// collectors are what the registry serves.
func (g *gauges) collectors() []prometheus.Collector {
	return []prometheus.Collector{g.pending, g.dead, g.remaining, breakerCollector{g}, g.refreshed, g.failures}
}

func (g *gauges) pendingNow() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pendingValue
}

// refresh reads every gauge from the store. A failed read keeps that gauge's last value.
func (g *gauges) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, gaugeRefreshTimeout)
	defer cancel()
	var errs []error
	if n, err := g.a.st.PendingApprovals(ctx); err != nil {
		errs = append(errs, err)
	} else {
		g.mu.Lock()
		g.pendingValue = float64(n)
		g.mu.Unlock()
	}
	if n, err := g.a.st.UnreplayedDeadLetters(ctx); err != nil {
		errs = append(errs, err)
	} else {
		g.dead.Set(float64(n))
	}
	for _, b := range g.a.cur().budgets {
		used, err := g.a.st.BudgetMostUsed(ctx, b.Name, b.Window, g.a.o.Now())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		g.remaining.WithLabelValues(b.Name).Set(float64(b.Max - used))
	}
	if bs, err := g.a.st.Breakers(ctx); err != nil {
		errs = append(errs, err)
	} else {
		g.mu.Lock()
		g.breakerValues = bs
		g.mu.Unlock()
	}
	if err := g.a.drills.refresh(ctx, g.a.st); err != nil {
		errs = append(errs, err)
	}
	g.a.drills.schedules(g.a.conf().Drills.Scenarios, g.a.o.Now())
	if err := errors.Join(errs...); err != nil {
		g.failures.Inc()
		return err
	}
	g.refreshed.Set(float64(g.a.o.Now().UnixNano()) / 1e9)
	return nil
}

// setBudgets follows a reload's budgets: the series of a budget gone are deleted, a new
// budget's is unknown (NaN) until the next refresh.
func (g *gauges) setBudgets(old, next []engine.Budget) {
	kept := map[string]bool{}
	for _, b := range next {
		kept[b.Name] = true
	}
	for _, b := range old {
		if !kept[b.Name] {
			g.remaining.DeleteLabelValues(b.Name)
		}
	}
	for _, b := range next {
		if !slices.ContainsFunc(old, func(o engine.Budget) bool { return o.Name == b.Name }) {
			g.remaining.WithLabelValues(b.Name).Set(math.NaN())
		}
	}
}

// run refreshes the gauges every interval until ctx ends.
func (g *gauges) run(ctx context.Context) {
	t := time.NewTicker(g.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := g.refresh(ctx); err != nil && ctx.Err() == nil {
			g.a.log.Warn("could not refresh the database-backed metrics; serving the last values", "err", err)
		}
	}
}

// breakerCollector reports responder_breaker_state from the breakers last read.
type breakerCollector struct{ g *gauges }

func (c breakerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.g.breakers }

func (c breakerCollector) Collect(ch chan<- prometheus.Metric) {
	c.g.mu.Lock()
	bs := c.g.breakerValues
	c.g.mu.Unlock()
	for _, b := range bs {
		v := 0.0
		switch b.State {
		case store.BreakerHalfOpen:
			v = 1
		case store.BreakerOpen:
			v = 2
		}
		ch <- prometheus.MustNewConstMetric(c.g.breakers, prometheus.GaugeValue, v, b.Handler, b.Scope)
	}
}
