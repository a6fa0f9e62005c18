package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// A marked action another transaction holds locked for a moment (another executor's claim that
// locked it and then dropped it because the mark hides it keeps the lock until it ends) is taken
// back once that lock goes: skipping it would leave it hidden until the mark lapses (30 s), the
// executor stall a busy dry run showed.
func TestReclaimWaitsForABrieflyLockedAction(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	t0 := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	n := vocab.ClassNotify
	ids := planOnTargets(t, s, t0, []vocab.Class{n, n, n}, []string{"POST h/0", "POST h/1", "POST h/2"})
	mark := t0.Add(30 * time.Second)
	if err := s.InTx(ctx, func(tx pgx.Tx) error { return s.MarkCheckingTx(ctx, tx, ids, "replica-a", mark) }); err != nil {
		t.Fatal(err)
	}

	holder, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, `SELECT 1 FROM actions WHERE id = $1 FOR UPDATE`, ids[1]); err != nil {
		t.Fatal(err)
	}
	type reclaimed struct {
		got []store.Claimed
		err error
	}
	out := make(chan reclaimed, 1)
	go func() {
		var r reclaimed
		r.err = s.InTx(ctx, func(tx pgx.Tx) error {
			var err error
			r.got, err = s.ReclaimCheckedTx(ctx, tx, ids, "replica-a", mark)
			return err
		})
		out <- r
	}()
	// The reclaim must wait for the row, not skip it: once it waits on the lock, the holder ends.
	testwait.Until(t, 10*time.Second, "the reclaim waiting on the held row's lock", func() bool {
		var n int
		err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		  WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return err == nil && n > 0
	})
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-out
	if r.err != nil {
		t.Fatal(r.err)
	}
	got := r.got
	if len(got) != 3 {
		t.Fatalf("reclaimed %d of the 3 marked actions; one held locked for a moment was skipped", len(got))
	}
	for i, c := range got {
		if c.ID != ids[i] {
			t.Fatalf("reclaimed %v, want %v in id order", got, ids)
		}
	}
}
