package engine_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/handlers/httpreq"
	"github.com/responder-sre/responder/internal/testwait"
)

// BenchmarkExecute measures the executor's guards: each iteration plans a batch of actions of one
// disruptive rule (a cooldown, a budget, the storm guard and the breaker apply) and times the
// executor passes that decide them all, reporting actions decided per second. dry_run evaluates
// every guard and records dry_run: the recorder's Check is called (a callout between two
// transactions); dry_run_uncheckable is the same with http.request, whose Check calls nobody
// (handlers.NotCheckable), as in the end-to-end bench: one transaction. enforce claims the
// cooldowns and the budget and starts the handlers (the recorder returns at once).
func BenchmarkExecute(b *testing.B) {
	const batch = 1024
	httpRule := strings.Replace(singleRule, `handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}`, `handler: http.request
        params: {url: "http://127.0.0.1:9/restart", body: '{{ alert.labels.pod }}'}`, 1)
	for _, mode := range []struct {
		name, rule string
		dry        bool
	}{{"dry_run", singleRule, true}, {"dry_run_uncheckable", httpRule, true}, {"enforce", singleRule, false}} {
		b.Run(mode.name, func(b *testing.B) {
			hr := httpreq.New(httpreq.Options{AllowedHosts: []string{"127.0.0.1:9"}, Version: "bench"})
			h := newHarnessWith(b, mode.rule, func(o *engine.Options) {
				o.DryRun = mode.dry
				o.MaxConcurrent = batch
				o.Budgets = []engine.Budget{{Name: "fixes", Match: "*", Per: "global", Max: batch * 1000, Window: time.Hour}}
				o.StormMaxTargets = batch * 1000
			}, hr)
			var spent time.Duration
			for i := range b.N {
				h.process(benchBatch(i, batch, h.clock.Now())...)
				start := time.Now()
				h.settle()
				spent += time.Since(start)
			}
			if n := h.count(`SELECT count(*) FROM actions WHERE state IN ('dry_run', 'succeeded')`); n != b.N*batch {
				b.Fatalf("%d actions decided, want %d", n, b.N*batch)
			}
			b.ReportMetric(float64(b.N*batch)/spent.Seconds(), "actions/s")
		})
	}
}

// BenchmarkExecuteNotifyOneTarget measures the executor running notify actions that all go to
// one target: each iteration plans notifyBatch http.request actions (class notify) to one URL of a
// local sink and times them until the last one is recorded, with the executor running as in
// production (Engine.Run: its loops, the poll interval and the kicks). It reports actions
// executed per second.
func BenchmarkExecuteNotifyOneTarget(b *testing.B) {
	const notifyBatch = 1000
	var hits atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(sink.Close)
	u, err := url.Parse(sink.URL)
	if err != nil {
		b.Fatal(err)
	}
	hr := httpreq.New(httpreq.Options{AllowedHosts: []string{u.Host}, Version: "bench"})
	rule := fmt.Sprintf(`
rules:
  - name: notify-sink
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: http.request
        params: {url: %q, class: notify, body: '{"pod": "{{ alert.labels.pod }}"}'}
`, sink.URL+"/hook")
	h := newHarnessWith(b, rule, func(o *engine.Options) { o.Now = time.Now }, hr)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- h.eng.Run(ctx, 10*time.Second) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			b.Error(err)
		}
	}()
	var spent time.Duration
	for i := range b.N {
		h.process(benchBatch(i, notifyBatch, time.Now())...)
		start := time.Now()
		want := (i + 1) * notifyBatch
		testwait.UntilDetail(b, 10*time.Minute, "every notify action succeeded", func() (bool, string) {
			n := h.count(`SELECT count(*) FROM actions WHERE state = 'succeeded'`)
			return n == want, fmt.Sprintf("%d of %d succeeded; actions %v", n, want, h.count(`SELECT count(*) FROM actions`))
		})
		var last time.Time
		if err := h.st.Pool().QueryRow(context.Background(), `SELECT max(finished_at) FROM actions`).Scan(&last); err != nil {
			b.Fatal(err)
		}
		spent += last.Sub(start)
	}
	if got := hits.Load(); got != int64(b.N*notifyBatch) {
		b.Fatalf("the sink got %d requests, want %d", got, b.N*notifyBatch)
	}
	b.ReportMetric(float64(b.N*notifyBatch)/spent.Seconds(), "actions/s")
}
