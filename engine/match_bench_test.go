package engine_test

import (
	"context"
	"testing"

	"github.com/responder-sre/responder/engine"
)

// BenchmarkProcessResend measures Process on a batch of 2560 alerts whose incidents are already
// open: Alertmanager's re-send of every firing alert each group_interval. Nothing is planned; the
// batch refreshes the incidents' alert.
func BenchmarkProcessResend(b *testing.B) {
	const batch = 2560
	h := newHarness(b, singleRule, func(o *engine.Options) { o.DryRun = true })
	ctx := context.Background()
	as := benchBatch(0, batch, t0)
	if err := h.eng.Process(ctx, as); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := h.eng.Process(ctx, as); err != nil {
			b.Fatal(err)
		}
	}
}
