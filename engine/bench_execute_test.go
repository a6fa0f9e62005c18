package engine_test

import (
	"testing"
	"time"

	"github.com/responder-sre/responder/engine"
)

// BenchmarkExecute measures the executor's guards: each iteration plans a batch of actions of one
// disruptive rule (a cooldown, a budget, the storm guard and the breaker apply) and times the
// executor passes that decide them all, reporting actions decided per second. dry_run evaluates
// every guard and records dry_run (a budget read per action); enforce claims the cooldowns and the
// budget and starts the handlers (the recorder returns at once).
func BenchmarkExecute(b *testing.B) {
	const batch = 1024
	for _, mode := range []string{"dry_run", "enforce"} {
		b.Run(mode, func(b *testing.B) {
			h := newHarness(b, singleRule, func(o *engine.Options) {
				o.DryRun = mode == "dry_run"
				o.MaxConcurrent = batch
				o.Budgets = []engine.Budget{{Name: "fixes", Match: "test.*", Per: "global", Max: batch * 1000, Window: time.Hour}}
				o.StormMaxTargets = batch * 1000
			})
			var spent time.Duration
			for i := range b.N {
				h.process(benchBatch(i, batch, h.clock.Now())...)
				start := time.Now()
				h.settle()
				spent += time.Since(start)
			}
			b.ReportMetric(float64(b.N*batch)/spent.Seconds(), "actions/s")
		})
	}
}
