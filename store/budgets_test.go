package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// BudgetsUsedTx counts each counter as BudgetUsedTx does, in its own window, in one statement.
func TestBudgetsUsedCountsEachCounterInItsWindow(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	t0 := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	d := vocab.ClassDisruptive
	ids := planOnTargets(t, s, t0, []vocab.Class{d, d, d, d}, []string{"a", "b", "c", "d"})
	spends := []struct {
		budget, key string
		at          time.Time
	}{
		{"fixes", "shop", t0.Add(-time.Minute)},
		{"fixes", "shop", t0.Add(-2 * time.Hour)}, // outside the hour
		{"fixes", "", t0.Add(-time.Minute)},
		{"restarts", "shop", t0.Add(-90 * time.Minute)}, // inside its two hours
	}
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		for i, sp := range spends {
			if _, err := tx.Exec(ctx, `INSERT INTO budget_spend (budget, key, action_id, at) VALUES ($1, $2, $3, $4)`,
				sp.budget, sp.key, ids[i], sp.at); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	reads := []store.BudgetRead{
		{BudgetKey: store.BudgetKey{Budget: "fixes", Key: "shop"}, Window: time.Hour},
		{BudgetKey: store.BudgetKey{Budget: "fixes", Key: ""}, Window: time.Hour},
		{BudgetKey: store.BudgetKey{Budget: "restarts", Key: "shop"}, Window: 2 * time.Hour},
		{BudgetKey: store.BudgetKey{Budget: "fixes", Key: "other"}, Window: time.Hour},
	}
	err = s.InTx(ctx, func(tx pgx.Tx) error {
		got, err := s.BudgetsUsedTx(ctx, tx, reads, t0)
		if err != nil {
			return err
		}
		for _, r := range reads {
			one, err := s.BudgetUsedTx(ctx, tx, r.Budget, r.Key, r.Window, t0)
			if err != nil {
				return err
			}
			if got[r.BudgetKey] != one {
				t.Errorf("%+v: %d, BudgetUsedTx says %d", r.BudgetKey, got[r.BudgetKey], one)
			}
		}
		if got[reads[0].BudgetKey] != 1 || got[reads[2].BudgetKey] != 1 || got[reads[3].BudgetKey] != 0 {
			t.Errorf("counts %v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
