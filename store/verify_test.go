package store_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// A running action goes verifying only for its owner; the claim hands out what is due (or all);
// the outcome is recorded only while the action still verifies.
func TestVerifyingLifecycle(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	t0 := time.Date(2026, 12, 10, 3, 0, 0, 0, time.UTC)
	id := planOnTargets(t, s, t0, []vocab.Class{vocab.ClassDisruptive}, []string{"T"})[0]
	deadline := t0.Add(5 * time.Minute)
	tx := func(fn func(pgx.Tx) error) {
		t.Helper()
		if err := s.InTx(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	tx(func(tx pgx.Tx) error { return s.StartActionTx(ctx, tx, id, "a", t0, t0.Add(time.Minute)) })
	tx(func(tx pgx.Tx) error {
		if ok, err := s.VerifyActionTx(ctx, tx, "b", id, deadline, "done", nil); ok || err != nil {
			t.Errorf("another owner moved it to verifying: %v %v", ok, err)
		}
		ok, err := s.VerifyActionTx(ctx, tx, "a", id, deadline, "done", map[string]any{"workload": "shop/api"})
		if !ok {
			t.Errorf("the owner could not: %v", err)
		}
		return err
	})
	a, err := s.GetAction(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if a.State != vocab.StateVerifying || a.VerifyDeadline == nil || !a.VerifyDeadline.Equal(deadline) || a.LeaseUntil != nil ||
		a.FinishedAt != nil || a.Result != "done" {
		t.Fatalf("action = %+v", a)
	}
	if a.ResultFields["workload"] != "shop/api" {
		t.Errorf("result fields of the verifying action = %v, want its handler's", a.ResultFields)
	}
	claim := func(now time.Time, all bool) int {
		var rules []string
		if all {
			rules = []string{"other", "r"}
		}
		var n int
		tx(func(tx pgx.Tx) error {
			cs, err := s.ClaimVerifyingTx(ctx, tx, now, rules, 10)
			n = len(cs)
			return err
		})
		return n
	}
	if n := claim(t0, false); n != 0 {
		t.Errorf("claimed %d before the deadline", n)
	}
	if n := claim(t0, true); n != 1 {
		t.Errorf("claimed %d of its rule's", n)
	}
	tx(func(tx pgx.Tx) error {
		if cs, err := s.ClaimVerifyingTx(ctx, tx, t0, []string{"other"}, 10); len(cs) != 0 || err != nil {
			t.Errorf("claimed %d of another rule's: %v", len(cs), err)
		}
		return nil
	})
	if n := claim(deadline, false); n != 1 {
		t.Errorf("claimed %d at the deadline", n)
	}
	out := store.Outcome{ID: id, State: vocab.StateFailed, Reason: vocab.ReasonNotRecovered, Error: "still firing", At: deadline}
	for i, want := range []int{1, 0} {
		tx(func(tx pgx.Tx) error {
			ids, err := s.FinishVerifyingTx(ctx, tx, []store.Outcome{out})
			if len(ids) != want {
				t.Errorf("finish %d changed %v, want %d", i, ids, want)
			}
			return err
		})
		out.State, out.Reason = vocab.StateSucceeded, ""
	}
	if a, _ := s.GetAction(ctx, id); a.State != vocab.StateFailed || a.Reason != vocab.ReasonNotRecovered || a.FinishedAt == nil || !a.VerifyDeadline.Equal(deadline) {
		t.Fatalf("action = %+v", a)
	}
	if n := claim(deadline.Add(time.Hour), true); n != 0 {
		t.Errorf("claimed %d after the outcome", n)
	}
}

// ProbeAlerts: the probes' firing alerts, with their values, from open incidents and from the
// recorded firing set; not other sources' alerts, nor resolved ones.
func TestProbeAlerts(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	now := time.Date(2026, 12, 10, 3, 0, 0, 0, time.UTC)
	mk := func(name, source string, status alert.Status, v *float64) alert.Alert {
		a := alert.Alert{Source: source, Status: status, Labels: map[string]string{"alertname": name, "probe_kind": "http"},
			StartsAt: now.Add(-time.Minute), ReceivedAt: now, Value: v}
		if status == alert.StatusResolved {
			a.EndsAt = now
		}
		if err := a.Validate(); err != nil {
			t.Fatal(err)
		}
		return a
	}
	v1, v2 := 503.0, 2.5
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := s.UpsertIncidentsTx(ctx, tx, []store.IncidentUpsert{
			{Rule: "r", Alert: mk("api-health", alert.SourceProbe, alert.StatusFiring, &v1), State: vocab.IncidentFiring, At: now},
			{Rule: "r", Alert: mk("NotAProbe", alert.SourceAlertmanager, alert.StatusFiring, &v1), State: vocab.IncidentFiring, At: now},
		}); err != nil {
			return err
		}
		return s.RecordFiringTx(ctx, tx, []alert.Alert{
			mk("db-lag", alert.SourceProbe, alert.StatusFiring, &v2),
			mk("no-value", alert.SourceProbe, alert.StatusFiring, nil),
			mk("gone", alert.SourceProbe, alert.StatusFiring, nil),
			mk("gone", alert.SourceProbe, alert.StatusResolved, nil),
		}, now)
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ProbeAlerts(ctx, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"api-health": "503", "db-lag": "2.5", "no-value": "none"}
	seen := map[string]string{}
	for _, o := range got {
		v := "none"
		if o.Value != nil {
			v = strconv.FormatFloat(*o.Value, 'g', -1, 64)
		}
		if o.Source != alert.SourceProbe {
			t.Errorf("%s: source %q", o.Name, o.Source)
		}
		seen[o.Name] = v
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("ProbeAlerts = %v, want %v", seen, want)
	}
}
