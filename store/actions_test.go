package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// planOnTargets plans one action per class in classes, each in an incident of its own, on the
// targets given, and returns their ids.
func planOnTargets(t *testing.T, s *store.Store, at time.Time, classes []vocab.Class, targets []string) []int64 {
	t.Helper()
	ctx := context.Background()
	var ids []int64
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		var ups []store.IncidentUpsert
		for i := range classes {
			a := alert.Alert{Status: alert.StatusFiring, Labels: map[string]string{"alertname": "X", "pod": fmt.Sprint(i)}, StartsAt: at, ReceivedAt: at}
			if err := a.Validate(); err != nil {
				return err
			}
			ups = append(ups, store.IncidentUpsert{Rule: "r", RuleHash: "h", Alert: a, State: vocab.IncidentFiring, At: at})
		}
		res, err := s.UpsertIncidentsTx(ctx, tx, ups)
		if err != nil {
			return err
		}
		var nas []store.NewAction
		for i, r := range res {
			nas = append(nas, store.NewAction{IncidentID: r.ID, Phase: vocab.PhaseActions, Rule: "r", RuleHash: "h",
				Handler: "h." + string(classes[i]), Target: targets[i], Scope: "s", Class: classes[i],
				Mode: vocab.ModeEnforce, State: vocab.StatePlanned, At: at, BasisAt: at})
		}
		ids, err = s.InsertActionsTx(ctx, tx, nas)
		return err
	})
	if err != nil || len(ids) != len(classes) {
		t.Fatalf("ids %v, err %v", ids, err)
	}
	return ids
}

// Only disruptive actions run one at a time per target: the claim skips a disruptive action whose
// target runs a disruptive action, and the index refuses to start it, but neither holds back a
// notify action, nor a disruptive one whose target runs only notify actions.
func TestOneRunningDisruptiveActionPerTarget(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	t0 := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	d, n := vocab.ClassDisruptive, vocab.ClassNotify
	ids := planOnTargets(t, s, t0, []vocab.Class{d, d, n, n, n, d}, []string{"T", "T", "T", "T", "U", "U"})
	start := func(tx pgx.Tx, id int64) error {
		return s.StartActionTx(ctx, tx, id, "replica-a", t0, t0.Add(time.Minute))
	}
	// Running: the first disruptive and the first notify action on T, the notify action on U.
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		for _, id := range []int64{ids[0], ids[2], ids[4]} {
			if err := start(tx, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var claimed []int64
	err = s.InTx(ctx, func(tx pgx.Tx) error {
		cs, err := s.ClaimRunnableTx(ctx, tx, t0, 10)
		for _, c := range cs {
			claimed = append(claimed, c.ID)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{ids[3], ids[5]}; !slices.Equal(claimed, want) {
		t.Fatalf("claimed %v, want %v: the second notify action on T and the disruptive one on U", claimed, want)
	}
	err = s.InTx(ctx, func(tx pgx.Tx) error {
		if err := start(tx, ids[3]); err != nil {
			return fmt.Errorf("a second notify action on T: %w", err)
		}
		return start(tx, ids[5])
	})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	err = s.InTx(ctx, func(tx pgx.Tx) error { return start(tx, ids[1]) })
	if !store.IsTargetBusy(err) {
		t.Fatalf("a second disruptive action on T started: %v", err)
	}
	var running int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM actions WHERE state = 'running'`).Scan(&running); err != nil || running != 5 {
		t.Fatalf("%d running (%v), want 5", running, err)
	}
}

// Within one incident, notify actions still run one at a time per target: a page's resolve event
// is neither claimed nor started while its trigger runs.
func TestOneRunningNotifyActionPerIncidentAndTarget(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	t0 := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	ids := planOnTargets(t, s, t0, []vocab.Class{vocab.ClassNotify}, []string{"POST pager/x"})
	var resolve int64
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		if err := s.StartActionTx(ctx, tx, ids[0], "replica-a", t0, t0.Add(time.Minute)); err != nil {
			return err
		}
		var inc int64
		if err := tx.QueryRow(ctx, `SELECT incident_id FROM actions WHERE id = $1`, ids[0]).Scan(&inc); err != nil {
			return err
		}
		rs, err := s.InsertActionsTx(ctx, tx, []store.NewAction{{IncidentID: inc, Phase: vocab.PhaseResolve, Rule: "r", RuleHash: "h",
			Handler: "h.notify", Target: "POST pager/x", Scope: "s", Class: vocab.ClassNotify, Mode: vocab.ModeEnforce,
			State: vocab.StatePlanned, At: t0, BasisAt: t0}})
		if err == nil {
			resolve = rs[0]
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.InTx(ctx, func(tx pgx.Tx) error {
		cs, err := s.ClaimRunnableTx(ctx, tx, t0, 10)
		if err == nil && len(cs) != 0 {
			err = fmt.Errorf("claimed %d actions, want none: the resolve waits for its trigger", len(cs))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.InTx(ctx, func(tx pgx.Tx) error { return s.StartActionTx(ctx, tx, resolve, "replica-a", t0, t0.Add(time.Minute)) })
	if !store.IsTargetBusy(err) {
		t.Fatalf("the resolve started while its trigger runs: %v", err)
	}
}
