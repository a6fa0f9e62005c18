package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/engine"
)

// BenchmarkTimersPass measures what rule-level verify adds to the timers loop's pass (run every
// Poll, 250ms, and after each batch that opened or resolved incidents): each iteration runs the
// `for` timers (the pass as it was before verify) and then FireVerifications (the part verify
// added), timed apart in the same run, and reports both per pass and their ratio. "idle": no
// verifying action; "verifying-when-100": 100 verifying actions whose rule has a verify `when`,
// each pass after a batch (all of them claimed and evaluated, none settled).
func BenchmarkTimersPass(b *testing.B) {
	ctx := context.Background()
	for _, verifying := range []int{0, 100} {
		name := "idle"
		if verifying > 0 {
			name = fmt.Sprint("verifying-when-", verifying)
		}
		b.Run(name, func(b *testing.B) {
			h := newHarness(b, verifyRule(`{within: 1h, when: 'alert.value < 0'}`), nil)
			for i := range verifying {
				h.process(withValue(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0.Add(-time.Minute), map[string]string{"pod": fmt.Sprint("web-", i)}), 5))
			}
			h.settle()
			if n := h.count(`SELECT count(*) FROM actions WHERE state = 'verifying'`); n != verifying {
				b.Fatalf("verifying = %d, want %d", n, verifying)
			}
			batch := withValue(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0.Add(-time.Minute), map[string]string{"pod": "web-0"}), 5)
			var timers, verify time.Duration
			b.ResetTimer()
			for range b.N {
				if verifying > 0 {
					b.StopTimer()
					h.process(batch) // marks the pass: every verify `when` is evaluated
					b.StartTimer()
				}
				start := time.Now()
				if n, err := engine.FireForTimers(h.eng, ctx); err != nil || n != 0 {
					b.Fatalf("timers: n=%d err=%v", n, err)
				}
				mid := time.Now()
				if n, err := h.eng.FireVerifications(ctx); err != nil || n != 0 {
					b.Fatalf("verifications: n=%d err=%v", n, err)
				}
				timers, verify = timers+mid.Sub(start), verify+time.Since(mid)
			}
			b.ReportMetric(float64(timers.Nanoseconds())/float64(b.N), "timers-ns/pass")
			b.ReportMetric(float64(verify.Nanoseconds())/float64(b.N), "verify-ns/pass")
			b.ReportMetric(float64(verify)/float64(timers), "verify/timers")
		})
	}
}
