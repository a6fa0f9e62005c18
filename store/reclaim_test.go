package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
	"github.com/responder-sre/responder/vocab"
)

// A marked action another transaction holds locked for a moment (another executor's claim that
// locked it and then dropped it because the mark hides it keeps the lock until it ends) is taken
// back once that lock goes: skipping it would leave it hidden until the mark lapses (30 s), the
// executor stall a busy dry run showed.
func TestReclaimWaitsForABrieflyLockedAction(t *testing.T) {
	ctx := context.Background()
	s, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Version: "v-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	var ids []int64
	err = s.InTx(ctx, func(tx pgx.Tx) error {
		a := alert.Alert{Status: alert.StatusFiring, Labels: map[string]string{"alertname": "X"}, StartsAt: t0, ReceivedAt: t0}
		if err := a.Validate(); err != nil {
			return err
		}
		res, err := s.UpsertIncidentsTx(ctx, tx, []store.IncidentUpsert{{Rule: "r", RuleHash: "h", Alert: a, State: vocab.IncidentFiring, At: t0}})
		if err != nil {
			return err
		}
		var nas []store.NewAction
		for i := range 3 {
			nas = append(nas, store.NewAction{IncidentID: res[0].ID, Phase: vocab.PhaseActions, Step: i, Rule: "r", RuleHash: "h",
				Handler: "http.request", Target: fmt.Sprintf("POST h/%d", i), Scope: "h", Class: vocab.ClassNotify,
				Mode: vocab.ModeEnforce, State: vocab.StatePlanned, At: t0, BasisAt: t0})
		}
		ids, err = s.InsertActionsTx(ctx, tx, nas)
		return err
	})
	if err != nil || len(ids) != 3 {
		t.Fatalf("ids %v, err %v", ids, err)
	}
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
	released := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond) // the holder's transaction goes on a moment, then ends
		released <- holder.Rollback(ctx)
	}()
	var got []store.Claimed
	err = s.InTx(ctx, func(tx pgx.Tx) error {
		got, err = s.ReclaimCheckedTx(ctx, tx, ids, "replica-a", mark)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("reclaimed %d of the 3 marked actions; one held locked for a moment was skipped", len(got))
	}
	for i, c := range got {
		if c.ID != ids[i] {
			t.Fatalf("reclaimed %v, want %v in id order", got, ids)
		}
	}
}
