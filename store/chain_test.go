package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// TestChainedStepRoundTrip: a chained step's chain is stored when it is planned; the claim hands
// it out with the earlier steps of its incident and phase (state and result fields, from the
// rows) once they passed; the outcome keeps the result fields; the rendered params are recorded.
func TestChainedStepRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	chain := &store.Chain{Params: map[string]any{"body": "{{ steps.promote.result.new_primary }}"}, Steps: map[string]int{"promote": 0}}
	var ids []int64
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		a := alert.Alert{Status: alert.StatusFiring, Labels: map[string]string{"alertname": "DatabaseDown"}, StartsAt: t0, ReceivedAt: t0}
		if err := a.Validate(); err != nil {
			return err
		}
		res, err := s.UpsertIncidentsTx(ctx, tx, []store.IncidentUpsert{{Rule: "failover", RuleHash: "h", Alert: a, State: vocab.IncidentFiring, At: t0}})
		if err != nil {
			return err
		}
		base := store.NewAction{IncidentID: res[0].ID, Phase: vocab.PhaseActions, Rule: "failover", RuleHash: "h", Scope: "s",
			Class: vocab.ClassDisruptive, Mode: vocab.ModeEnforce, State: vocab.StatePlanned, At: t0, BasisAt: t0}
		promote, repoint := base, base
		promote.Handler, promote.Target = "postgres.promote", "postgres/orders"
		repoint.Step, repoint.Handler, repoint.Target, repoint.Chain = 1, "http.request", "PUT config.internal/db", chain
		repoint.Params = map[string]any{"url": "http://config.internal/db", "body": chain.Params["body"]}
		ids, err = s.InsertActionsTx(ctx, tx, []store.NewAction{promote, repoint})
		return err
	})
	if err != nil || len(ids) != 2 {
		t.Fatalf("ids %v, err %v", ids, err)
	}
	claim := func() []store.Claimed {
		t.Helper()
		var cs []store.Claimed
		err := s.InTx(ctx, func(tx pgx.Tx) error {
			var err error
			cs, err = s.ClaimRunnableTx(ctx, tx, t0, 10)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	// Only the first step is claimable; it carries no chain.
	cs := claim()
	if len(cs) != 1 || cs[0].ID != ids[0] || cs[0].RawChain != nil || cs[0].RawEarlier != nil {
		t.Fatalf("claimed %+v, want only the first step, without a chain", cs)
	}
	fields := map[string]any{"new_primary": "10.0.0.7:5432", "timeline": float64(2)}
	err = s.InTx(ctx, func(tx pgx.Tx) error {
		if err := s.StartActionTx(ctx, tx, ids[0], "r1", t0, t0.Add(time.Minute)); err != nil {
			return err
		}
		_, err := s.FinishActionsTx(ctx, tx, "r1", []store.Outcome{{ID: ids[0], State: vocab.StateSucceeded, Result: "promoted", Fields: fields, At: t0}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	cs = claim()
	if len(cs) != 1 || cs[0].ID != ids[1] {
		t.Fatalf("claimed %+v, want the chained step", cs)
	}
	gotChain, earlier, err := cs[0].DecodeChain()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(chain, gotChain); diff != "" {
		t.Errorf("chain (-stored +claimed):\n%s", diff)
	}
	want := map[int]store.Earlier{0: {State: vocab.StateSucceeded, Fields: fields}}
	if diff := cmp.Diff(want, earlier); diff != "" {
		t.Errorf("earlier steps (-want +got):\n%s", diff)
	}
	rendered := map[string]any{"url": "http://config.internal/db", "body": "10.0.0.7:5432"}
	if err := s.InTx(ctx, func(tx pgx.Tx) error {
		return s.SetParamsTx(ctx, tx, []store.ParamsUpdate{{ID: ids[1], Params: rendered}})
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetAction(ctx, ids[1])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rendered, got.Params); diff != "" {
		t.Errorf("params (-rendered +stored):\n%s", diff)
	}
	first, err := s.GetAction(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fields, first.ResultFields); diff != "" || got.ResultFields != nil {
		t.Errorf("result fields (-want +got):\n%s; the unfinished step's: %v", diff, got.ResultFields)
	}
}
