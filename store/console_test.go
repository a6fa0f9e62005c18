package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
	"github.com/responder-sre/responder/vocab"
)

// TestAuditFilterAndIncidentAlert: the console's audit search (incident, rule, time range) and
// an incident's latest alert (its annotations).
func TestAuditFilterAndIncidentAlert(t *testing.T) {
	ctx := context.Background()
	s, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	var ups []store.IncidentUpsert
	for _, rule := range []string{"a", "b"} {
		al := alert.Alert{Status: alert.StatusFiring, Labels: map[string]string{"alertname": "X", "rule": rule},
			Annotations: map[string]string{"runbook_url": "https://runbooks/" + rule}, StartsAt: t0, ReceivedAt: t0}
		if err := al.Validate(); err != nil {
			t.Fatal(err)
		}
		ups = append(ups, store.IncidentUpsert{Rule: rule, RuleHash: "h", Alert: al, State: vocab.IncidentFiring, At: t0})
	}
	var res []store.UpsertResult
	if err := s.InTx(ctx, func(tx pgx.Tx) error { res, err = s.UpsertIncidentsTx(ctx, tx, ups); return err }); err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	for _, r := range res {
		ids[r.Rule] = r.ID
	}
	ida, idb := ids["a"], ids["b"]
	// One row per incident and minute, and one without an incident.
	var es []store.AuditInsert
	for i := range 3 {
		at := t0.Add(time.Duration(i) * time.Minute)
		es = append(es, store.AuditInsert{At: at, IncidentID: ida, Kind: store.AuditAction, Actor: "x"},
			store.AuditInsert{At: at, IncidentID: idb, Kind: store.AuditAction, Actor: "x"})
	}
	es = append(es, store.AuditInsert{At: t0, Kind: store.AuditControl, Actor: "alice"})
	if err := s.Audit(ctx, es...); err != nil {
		t.Fatal(err)
	}
	count := func(f store.AuditFilter) int {
		t.Helper()
		items, _, err := s.ListAudit(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return len(items)
	}
	for _, tc := range []struct {
		name string
		f    store.AuditFilter
		want int
	}{
		{"all", store.AuditFilter{}, 7},
		{"incident", store.AuditFilter{IncidentID: ida}, 3},
		{"rule", store.AuditFilter{Rule: "b"}, 3},
		{"no such rule", store.AuditFilter{Rule: "c"}, 0},
		{"since", store.AuditFilter{Rule: "a", Since: t0.Add(time.Minute)}, 2},
		{"until", store.AuditFilter{Rule: "a", Until: t0.Add(time.Minute)}, 1},
		{"range", store.AuditFilter{Since: t0.Add(time.Minute), Until: t0.Add(2 * time.Minute)}, 2},
	} {
		if got := count(tc.f); got != tc.want {
			t.Errorf("%s: %d entries, want %d", tc.name, got, tc.want)
		}
	}
	al, err := s.IncidentAlert(ctx, idb)
	if err != nil || al.Annotations["runbook_url"] != "https://runbooks/b" {
		t.Fatalf("IncidentAlert = %+v, %v", al, err)
	}
	if _, err := s.IncidentAlert(ctx, 99999); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("IncidentAlert of a missing incident: %v", err)
	}
}
