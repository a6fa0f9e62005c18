package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
	"github.com/responder-sre/responder/vocab"
)

func retentionStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), pgtest.NewDatabase(t), store.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// retentionIncident records an incident of alert name in state, last received at seen.
func retentionIncident(t *testing.T, s *store.Store, name string, state vocab.IncidentState, seen time.Time) int64 {
	t.Helper()
	ctx := context.Background()
	a := alert.Alert{Status: alert.StatusFiring, Labels: map[string]string{"alertname": name}, StartsAt: seen, ReceivedAt: seen}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	var id int64
	if err := s.InTx(ctx, func(tx pgx.Tx) error {
		res, err := s.UpsertIncidentsTx(ctx, tx, []store.IncidentUpsert{{Rule: "r", RuleHash: "h", Alert: a, State: state, At: seen}})
		if err != nil {
			return err
		}
		id = res[0].ID
		return s.RecordFiringTx(ctx, tx, []alert.Alert{a}, seen)
	}); err != nil {
		t.Fatal(err)
	}
	return id
}

func countRows(t *testing.T, s *store.Store, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := s.Pool().QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// An incident whose resolution never came is closed as abandoned once nobody heard of it for the
// retention period: its pending actions are cancelled and its `for` timer (which would re-check
// and audit forever) deleted. The timer's old re-check audit rows and the firing_alerts rows not
// seen since go too; incidents still heard of stay open.
func TestRetentionAbandonsIncidentsNeverResolved(t *testing.T) {
	ctx := context.Background()
	s := retentionStore(t)
	keep := 90 * 24 * time.Hour
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	old := now.Add(-keep - time.Hour)
	firing := retentionIncident(t, s, "LostResolution", vocab.IncidentFiring, old)
	pending := retentionIncident(t, s, "NeverHolds", vocab.IncidentPending, old)
	alive := retentionIncident(t, s, "StillSent", vocab.IncidentFiring, now.Add(-time.Hour))
	noErr(t, s.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := s.InsertActionsTx(ctx, tx, []store.NewAction{{IncidentID: firing, Phase: vocab.PhaseActions, Rule: "r", RuleHash: "h",
			Handler: "http.request", Target: "t", Scope: "s", Class: "disruptive", Mode: "enforce", Params: map[string]any{},
			Approval: "required", State: vocab.StateAwaitingApproval, At: old, BasisAt: old}}); err != nil {
			return err
		}
		return s.InsertTimersTx(ctx, tx, []store.TimerInsert{{IncidentID: pending, Kind: store.TimerFor, DueAt: now.Add(time.Minute)}})
	}))
	// The `for` timer's failed re-checks: one from long ago, one recent.
	for _, at := range []time.Time{old, now.Add(-time.Minute)} {
		noErr(t, s.Audit(ctx, store.AuditInsert{At: at, IncidentID: pending, Kind: store.AuditTimer, Actor: "engine", Reason: "recheck_failed"}))
	}

	rep, err := s.Retain(ctx, now.Add(-keep), now, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, a := range rep.Abandoned {
		got = append(got, a.ID)
	}
	slices.Sort(got)
	if !slices.Equal(got, []int64{firing, pending}) {
		t.Fatalf("abandoned %v, want %v", got, []int64{firing, pending})
	}
	for id, want := range map[int64]vocab.IncidentState{firing: vocab.IncidentAbandoned, pending: vocab.IncidentAbandoned, alive: vocab.IncidentFiring} {
		inc, err := s.GetIncident(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if inc.State != want {
			t.Errorf("incident %d (%s) is %s, want %s", id, inc.AlertName, inc.State, want)
		}
		if want == vocab.IncidentAbandoned && (inc.ResolvedAt == nil || !inc.ResolvedAt.Equal(now)) {
			t.Errorf("abandoned incident %d: resolved_at %v, want the pass's time", id, inc.ResolvedAt)
		}
	}
	if n := countRows(t, s, `SELECT count(*) FROM actions WHERE incident_id = $1 AND state = 'skipped' AND reason = 'cancelled'`, firing); n != 1 {
		t.Errorf("the abandoned incident's awaiting action was not cancelled (%d cancelled)", n)
	}
	if n := countRows(t, s, `SELECT count(*) FROM timers`); n != 0 {
		t.Errorf("%d timers left: the abandoned incident would be re-checked (and audited) forever", n)
	}
	if n := countRows(t, s, `SELECT count(*) FROM audit WHERE kind = 'timer' AND at < $1`, now.Add(-keep)); n != 0 {
		t.Errorf("%d re-check audit rows older than the retention left", n)
	}
	if n := countRows(t, s, `SELECT count(*) FROM audit WHERE kind = 'timer'`); n != 1 {
		t.Errorf("%d re-check audit rows, want the recent one kept", n)
	}
	if n := countRows(t, s, `SELECT count(*) FROM audit WHERE kind = 'incident' AND reason = 'abandoned' AND actor = 'retention'`); n != 2 {
		t.Errorf("%d abandonments audited, want 2", n)
	}
	if n := countRows(t, s, `SELECT count(*) FROM firing_alerts WHERE last_seen < $1`, now.Add(-keep)); n != 0 {
		t.Errorf("%d firing_alerts rows not seen for the retention period left", n)
	}
	if n := countRows(t, s, `SELECT count(*) FROM firing_alerts`); n != 1 {
		t.Errorf("%d firing_alerts rows, want the one still sent", n)
	}

	// Abandoned incidents then age out like resolved ones.
	later := now.Add(keep + time.Hour)
	if _, err := s.Retain(ctx, later.Add(-keep), later, nil); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, s, `SELECT count(*) FROM incidents WHERE id = ANY($1)`, []int64{firing, pending}); n != 0 {
		t.Errorf("%d abandoned incidents left a retention period after they were abandoned", n)
	}
}

// Retention deletes an unreplayed dead letter only after handing it to the caller (to count and
// log) while it still exists, and audits it; replayed ones go without fuss; recent ones stay.
func TestRetentionHandsOverUnreplayedDeadLettersBeforeDeleting(t *testing.T) {
	ctx := context.Background()
	s := retentionStore(t)
	keep := 90 * 24 * time.Hour
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	old := now.Add(-keep - time.Hour)
	ids := map[string]int64{}
	for _, name := range []string{"old-unreplayed", "old-replayed", "recent"} {
		at := old
		if name == "recent" {
			at = now
		}
		id, err := s.RecordDeadLetter(ctx, store.DeadLetterInsert{MsgID: name, Reason: "permanent: boom", Data: []byte(`[]`), Deliveries: 3, At: at})
		noErr(t, err)
		ids[name] = id
	}
	ok, err := s.MarkDeadLetterReplayed(ctx, ids["old-replayed"], "api:alice", "old-replayed/replay-2", old.Add(time.Minute))
	if err != nil || !ok {
		t.Fatalf("mark replayed: %v %v", ok, err)
	}
	var handed []store.DeadLetter
	existed := false
	rep, err := s.Retain(ctx, now.Add(-keep), now, func(ds []store.DeadLetter) {
		handed = ds
		_, err := s.GetDeadLetter(ctx, ids["old-unreplayed"])
		existed = err == nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(handed) != 1 || handed[0].ID != ids["old-unreplayed"] || handed[0].Reason != "permanent" || handed[0].Deliveries != 3 {
		t.Fatalf("handed over %+v, want only the old unreplayed dead letter", handed)
	}
	if !existed {
		t.Error("the unreplayed dead letter was deleted before it was handed over")
	}
	if len(rep.Expired) != 1 {
		t.Errorf("report: %+v", rep)
	}
	left, _, err := s.ListDeadLetters(ctx, store.DeadLetterFilter{})
	noErr(t, err)
	if len(left) != 1 || left[0].ID != ids["recent"] {
		t.Errorf("dead letters left: %+v, want only the recent one", left)
	}
	if n := countRows(t, s, `SELECT count(*) FROM audit WHERE kind = 'dead_letter' AND reason = 'expired_unreplayed'`); n != 1 {
		t.Errorf("%d expiries audited, want 1", n)
	}
}

func TestDeadLetterReplayIsRecordedOnce(t *testing.T) {
	ctx := context.Background()
	s := retentionStore(t)
	at := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	id, err := s.RecordDeadLetter(ctx, store.DeadLetterInsert{MsgID: "m", Reason: "undecodable: bad", Data: []byte("\xff\xfe"), At: at})
	noErr(t, err)
	if n, err := s.UnreplayedDeadLetters(ctx); err != nil || n != 1 {
		t.Fatalf("unreplayed = %d, %v", n, err)
	}
	for i, want := range []bool{true, false} {
		ok, err := s.MarkDeadLetterReplayed(ctx, id, "api", "m/replay-1", at.Add(time.Duration(i+1)*time.Minute))
		if err != nil || ok != want {
			t.Fatalf("mark #%d: %v %v, want %v", i+1, ok, err, want)
		}
	}
	d, err := s.GetDeadLetter(ctx, id)
	noErr(t, err)
	if d.ReplayedAt == nil || !d.ReplayedAt.Equal(at.Add(time.Minute)) || d.ReplayedBy != "api" || string(d.Data) != "\xff\xfe" {
		t.Fatalf("dead letter %+v", d)
	}
	if n, err := s.UnreplayedDeadLetters(ctx); err != nil || n != 0 {
		t.Fatalf("unreplayed = %d, %v", n, err)
	}
	unreplayed, _, err := s.ListDeadLetters(ctx, store.DeadLetterFilter{Unreplayed: true})
	if err != nil || len(unreplayed) != 0 {
		t.Fatalf("unreplayed list = %+v, %v", unreplayed, err)
	}
	if _, err := s.GetDeadLetter(ctx, id+1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown id: %v, want ErrNotFound", err)
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentRetentionAuditsEachExpiryOnce: two replicas' retention passes list the same
// unreplayed dead letter; the one that deletes it reports and audits it, the other neither.
func TestConcurrentRetentionAuditsEachExpiryOnce(t *testing.T) {
	ctx := context.Background()
	s := retentionStore(t)
	keep := 90 * 24 * time.Hour
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	_, err := s.RecordDeadLetter(ctx, store.DeadLetterInsert{MsgID: "old", Reason: "permanent: boom", Data: []byte(`[]`), At: now.Add(-keep - time.Hour)})
	noErr(t, err)
	var other store.RetentionReport
	// The first pass has listed the dead letter; the other runs to its end before it deletes.
	first, err := s.Retain(ctx, now.Add(-keep), now, func([]store.DeadLetter) {
		var err error
		other, err = s.Retain(ctx, now.Add(-keep), now, nil)
		noErr(t, err)
	})
	noErr(t, err)
	if len(other.Expired) != 1 || len(first.Expired) != 0 {
		t.Errorf("reported expired: by the pass that deleted %d, by the one that came second %d; want 1 and 0", len(other.Expired), len(first.Expired))
	}
	if n := countRows(t, s, `SELECT count(*) FROM audit WHERE kind = 'dead_letter' AND reason = 'expired_unreplayed'`); n != 1 {
		t.Errorf("%d expiries audited, want 1", n)
	}
}

// Retention deletes a drill run that ended (or, never finished, started) before the cutoff once
// no incident names it; a run an incident still names is kept (the incident is a drill's only
// while its run is known), and so is a recent one.
func TestRetentionDeletesOldDrillRunsNoIncidentNames(t *testing.T) {
	ctx := context.Background()
	s := retentionStore(t)
	now := time.Date(2026, 12, 12, 10, 0, 0, 0, time.UTC)
	cutoff := now.Add(-30 * 24 * time.Hour)
	old := cutoff.Add(-time.Hour)
	start := func(name string, at time.Time, finish bool) store.DrillRun {
		t.Helper()
		d, ok, err := s.StartDrillRun(ctx, store.NewDrillRun{Name: name, Trigger: store.DrillTriggerCLI, Actor: "ci", RTO: time.Minute, At: at})
		if err != nil || !ok {
			t.Fatalf("start %s: %v %v", name, ok, err)
		}
		if finish {
			if _, err := s.FinishDrillRun(ctx, d.ID, store.DrillFinish{Passed: true, At: at.Add(time.Minute), Actor: "ci"}); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	gone := start("gone", old, true)
	crashed := start("crashed", old, false)
	named := start("named", old, true)
	recent := start("recent", now.Add(-time.Hour), true)

	// An incident of the run "named", still open and heard of recently (retention keeps it).
	a := alert.Alert{Status: alert.StatusFiring, Labels: map[string]string{"alertname": "ApiDown", alert.DrillLabel: named.RunID},
		StartsAt: now.Add(-time.Minute), ReceivedAt: now.Add(-time.Minute)}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := s.InTx(ctx, func(tx pgx.Tx) error {
		_, err := s.UpsertIncidentsTx(ctx, tx, []store.IncidentUpsert{{Rule: "r", RuleHash: "h", Alert: a, State: vocab.IncidentFiring, At: a.ReceivedAt}})
		return err
	}); err != nil {
		t.Fatal(err)
	}

	if _, err := s.DeleteBefore(ctx, cutoff); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		run  store.DrillRun
		kept bool
	}{{gone, false}, {crashed, false}, {named, true}, {recent, true}} {
		if n := countRows(t, s, `SELECT count(*) FROM drill_runs WHERE id = $1`, tc.run.ID); (n == 1) != tc.kept {
			t.Errorf("drill run %s: %d rows after retention, want kept %v", tc.run.Name, n, tc.kept)
		}
	}
}
