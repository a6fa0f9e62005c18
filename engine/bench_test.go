package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/engine"
)

// BenchmarkProcess measures Process (rule evaluation, incident upsert, action planning and audit,
// one transaction) on batches of 2560 alerts, the size of one bus fetch, and in the same run a
// baseline: as many rows written by one pgx CopyFrom in one transaction. It reports alerts/s,
// the baseline's rows/s and their ratio.
func BenchmarkProcess(b *testing.B) {
	const batch = 2560
	h := newHarness(b, singleRule, func(o *engine.Options) { o.DryRun = true })
	ctx := context.Background()
	batches := make([][]alert.Alert, b.N)
	for i := range batches {
		batches[i] = benchBatch(i, batch, t0)
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if err := h.eng.Process(ctx, batches[i]); err != nil {
			b.Fatal(err)
		}
	}
	processed := time.Since(start)
	b.StopTimer()

	if _, err := h.st.Pool().Exec(ctx, `CREATE TABLE baseline (fp text, starts timestamptz, labels jsonb, alert jsonb)`); err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	for i := range b.N {
		rows := make([][]any, batch)
		for j, a := range batches[i] {
			rows[j] = []any{a.Fingerprint, a.StartsAt, a.Labels, a}
		}
		err := pgx.BeginFunc(ctx, h.st.Pool(), func(tx pgx.Tx) error {
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"baseline"}, []string{"fp", "starts", "labels", "alert"}, pgx.CopyFromRows(rows))
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	copied := time.Since(start)
	rate := float64(b.N*batch) / processed.Seconds()
	base := float64(b.N*batch) / copied.Seconds()
	b.ReportMetric(rate, "alerts/s")
	b.ReportMetric(base, "baseline_rows/s")
	b.ReportMetric(rate/base, "ratio")
}

func benchBatch(i, n int, t time.Time) []alert.Alert {
	as := make([]alert.Alert, n)
	for j := range as {
		as[j] = mkAlert("KubePodCrashLooping", alert.StatusFiring, t, map[string]string{"namespace": "shop", "pod": fmt.Sprintf("p-%d-%d", i, j)})
	}
	return as
}
