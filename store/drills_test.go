package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

var drillT0 = time.Date(2026, 12, 12, 10, 0, 0, 0, time.UTC)

func startDrill(t *testing.T, st *store.Store, n store.NewDrillRun) store.DrillRun {
	t.Helper()
	d, ok, err := st.StartDrillRun(context.Background(), n)
	if err != nil || !ok {
		t.Fatalf("start %s: %v %v", n.Name, ok, err)
	}
	return d
}

// TestDrillStartFinish: a run starts with a run id of the contract's form, audited; finishing it
// records the outcome and the report once: a second finish changes nothing and audits nothing.
func TestDrillStartFinish(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	d := startDrill(t, st, store.NewDrillRun{Name: "api-down", Trigger: store.DrillTriggerCLI, Actor: "ci", RTO: 5 * time.Minute, At: drillT0})
	if !regexp.MustCompile(`^api-down-20261212T100000Z-[0-9a-f]{4}$`).MatchString(d.RunID) {
		t.Errorf("run id %q", d.RunID)
	}
	if d.Probes == nil || len(d.Probes) != 0 || d.Passed != nil || d.FinishedAt != nil || d.RTOSeconds != 300 || !d.Running() {
		t.Errorf("started run = %+v", d)
	}
	rec, inj := 42.5, drillT0.Add(time.Second)
	report := []byte(`{"name":"api-down","passed":true,"steps":[]}`)
	fin := store.DrillFinish{Passed: true, InjectedAt: &inj, RecoverSeconds: &rec, Report: report, At: drillT0.Add(time.Minute), Actor: "ci"}
	got, err := st.FinishDrillRun(ctx, d.ID, fin)
	if err != nil {
		t.Fatal(err)
	}
	if got.Passed == nil || !*got.Passed || got.RecoverSeconds == nil || *got.RecoverSeconds != 42.5 || got.FinishedAt == nil ||
		!got.FinishedAt.Equal(fin.At) || got.InjectedAt == nil || !got.InjectedAt.Equal(inj) || string(got.Report) != string(report) {
		t.Errorf("finished run = %+v (report %s)", got, got.Report)
	}
	// Again, failed this time: the first outcome stays.
	again, err := st.FinishDrillRun(ctx, d.ID, store.DrillFinish{Passed: false, Failure: "late", At: drillT0.Add(2 * time.Minute), Actor: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if *again.Passed != true || again.Failure != "" || !again.FinishedAt.Equal(fin.At) || string(again.Report) != string(report) {
		t.Errorf("second finish changed the run: %+v", again)
	}
	g, err := st.GetDrillRun(ctx, d.ID)
	if err != nil || string(g.Report) != string(report) || g.RunID != d.RunID {
		t.Fatalf("get = %+v, %v", g, err)
	}
	if _, err := st.GetDrillRun(ctx, d.ID+100); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown run: %v", err)
	}
	if _, err := st.FinishDrillRun(ctx, d.ID+100, fin); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("finish an unknown run: %v", err)
	}
	aud, _, err := st.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, e := range aud {
		if e.Kind != store.AuditDrill || e.Actor != "ci" || e.Detail["run_id"] != d.RunID {
			t.Errorf("audit row %+v", e)
		}
		reasons = append(reasons, e.Reason)
	}
	if !slices.Equal(reasons, []string{store.DrillPassed, store.DrillStarted}) {
		t.Errorf("audit reasons (newest first) = %v", reasons)
	}
}

// TestDrillScheduledSlotStartsOnce: replicas starting the same (name, scheduled_for) together
// get one run between them; the others are told which run holds the slot. The next slot, or a
// run from the CLI, is another run.
func TestDrillScheduledSlotStartsOnce(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	slot := drillT0.Add(time.Hour)
	n := store.NewDrillRun{Name: "nightly", Trigger: store.DrillTriggerSchedule, Actor: "schedule", ScheduledFor: &slot,
		Probes: []string{"pg"}, RTO: time.Minute, At: slot}
	const replicas = 4
	type res struct {
		d  store.DrillRun
		ok bool
	}
	out := make(chan res, replicas)
	var wg sync.WaitGroup
	for range replicas {
		wg.Go(func() {
			d, ok, err := st.StartDrillRun(ctx, n)
			if err != nil {
				t.Error(err)
			}
			out <- res{d, ok}
		})
	}
	wg.Wait()
	close(out)
	started, ids := 0, map[int64]bool{}
	for r := range out {
		if r.ok {
			started++
		}
		ids[r.d.ID] = true
	}
	if started != 1 || len(ids) != 1 {
		t.Fatalf("%d of %d replicas started a run; runs seen %v", started, replicas, ids)
	}
	next := slot.Add(time.Hour)
	n2 := n
	n2.ScheduledFor, n2.At = &next, next
	startDrill(t, st, n2)
	startDrill(t, st, store.NewDrillRun{Name: "nightly", Trigger: store.DrillTriggerCLI, Actor: "ci", At: slot})
	startDrill(t, st, store.NewDrillRun{Name: "nightly", Trigger: store.DrillTriggerCLI, Actor: "ci", At: slot})
	runs, _, err := st.ListDrillRuns(ctx, store.DrillFilter{Name: "nightly"})
	if err != nil || len(runs) != 4 {
		t.Fatalf("runs = %d, %v", len(runs), err)
	}
	aud, _, err := st.ListAudit(ctx, store.AuditFilter{})
	if err != nil || len(aud) != 4 {
		t.Fatalf("audit rows = %d (one per run started), %v", len(aud), err)
	}
	// The trigger is checked by the database.
	bad := n
	bad.Trigger, bad.ScheduledFor = "cron", nil
	if _, _, err := st.StartDrillRun(ctx, bad); err == nil {
		t.Error("trigger cron accepted")
	}
}

// TestActiveDrillProbes: the probes of unfinished runs started within maxAge, the newest run's
// id for a probe two runs list; finished and abandoned (too old) runs mark nothing.
func TestActiveDrillProbes(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	now := drillT0.Add(time.Hour)
	start := func(name string, age time.Duration, probes ...string) store.DrillRun {
		return startDrill(t, st, store.NewDrillRun{Name: name, Trigger: store.DrillTriggerCLI, Actor: "ci", Probes: probes, At: now.Add(-age)})
	}
	start("abandoned", 2*time.Hour, "pg", "old")
	older := start("older", 20*time.Minute, "pg", "redis")
	newer := start("newer", 5*time.Minute, "pg")
	done := start("done", time.Minute, "web")
	if _, err := st.FinishDrillRun(ctx, done.ID, store.DrillFinish{Passed: true, At: now}); err != nil {
		t.Fatal(err)
	}
	got, err := st.ActiveDrillProbes(ctx, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"pg": newer.RunID, "redis": older.RunID}
	if len(got) != len(want) || got["pg"] != want["pg"] || got["redis"] != want["redis"] {
		t.Errorf("active probes = %v, want %v", got, want)
	}
	if got, _ := st.ActiveDrillProbes(ctx, now, 10*time.Minute); len(got) != 1 || got["pg"] != newer.RunID {
		t.Errorf("within 10m: %v", got)
	}
}

// TestListDrillRunsAndLatest: newest first, by name, page by page; LatestDrillRuns is the newest
// finished run of each name.
func TestListDrillRunsAndLatest(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	var runs []store.DrillRun
	for i := range 5 {
		name := "a"
		if i%2 == 1 {
			name = "b"
		}
		runs = append(runs, startDrill(t, st, store.NewDrillRun{Name: name, Trigger: store.DrillTriggerCLI, Actor: "ci",
			At: drillT0.Add(time.Duration(i) * time.Minute)}))
	}
	// a: runs 0, 2, 4; b: 1, 3. Finish a's 0 (passed) and 2 (failed), b's 1; 4 and 3 run.
	for _, f := range []struct {
		i      int
		passed bool
	}{{0, true}, {2, false}, {1, true}} {
		if _, err := st.FinishDrillRun(ctx, runs[f.i].ID, store.DrillFinish{Passed: f.passed, Report: []byte(`{}`),
			At: drillT0.Add(time.Hour + time.Duration(f.i)*time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	var seen []int64
	cursor := ""
	for pages := 0; ; pages++ {
		items, next, err := st.ListDrillRuns(ctx, store.DrillFilter{Name: "a", Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range items {
			if d.Report != nil || d.Name != "a" {
				t.Errorf("listed %+v (report %s)", d, d.Report)
			}
			seen = append(seen, d.ID)
		}
		if next == "" || pages > 3 {
			break
		}
		cursor = next
	}
	if want := []int64{runs[4].ID, runs[2].ID, runs[0].ID}; !slices.Equal(seen, want) {
		t.Errorf("pages of a = %v, want %v", seen, want)
	}
	if _, _, err := st.ListDrillRuns(ctx, store.DrillFilter{Cursor: "x"}); err == nil {
		t.Error("invalid cursor accepted")
	}
	latest, err := st.LatestDrillRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(latest) != 2 || latest["a"].ID != runs[2].ID || *latest["a"].Passed || latest["b"].ID != runs[1].ID || !*latest["b"].Passed {
		t.Errorf("latest = %+v", latest)
	}
}

// TestIncidentDrillFields: an incident of a drill alert says its run id (and its actions do), the
// time its latest alert was received, and the drill filters keep a run's incidents and actions.
func TestIncidentDrillFields(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	// Runs the store started; "x-9" (p4's label) is none: its incident is no drill's.
	if _, err := st.Pool().Exec(ctx, `INSERT INTO drill_runs (run_id, name, trigger, actor, rto_seconds, started_at, version)
VALUES ('d-1', 'a', 'cli', 'test', 60, now(), 'test'), ('d-2', 'b', 'cli', 'test', 60, now(), 'test')`); err != nil {
		t.Fatal(err)
	}
	recv := drillT0.Add(3 * time.Second)
	mk := func(pod, run string) alert.Alert {
		a := alert.Alert{Source: alert.SourceAlertmanager, Status: alert.StatusFiring, StartsAt: drillT0, ReceivedAt: recv,
			Labels: map[string]string{alert.NameLabel: "TargetDown", "pod": pod}}
		if run != "" {
			a.Labels[alert.DrillLabel] = run
		}
		if err := a.Validate(); err != nil {
			t.Fatal(err)
		}
		return a
	}
	ups := []store.IncidentUpsert{
		{Rule: "r", RuleHash: "h", Alert: mk("p1", "d-1"), State: vocab.IncidentFiring, At: drillT0},
		{Rule: "r", RuleHash: "h", Alert: mk("p2", "d-2"), State: vocab.IncidentFiring, At: drillT0},
		{Rule: "r", RuleHash: "h", Alert: mk("p3", ""), State: vocab.IncidentFiring, At: drillT0},
		{Rule: "r", RuleHash: "h", Alert: mk("p4", "x-9"), State: vocab.IncidentFiring, At: drillT0},
	}
	ids := map[string]int64{}
	err := st.InTx(ctx, func(tx pgx.Tx) error {
		res, err := st.UpsertIncidentsTx(ctx, tx, ups)
		if err != nil {
			return err
		}
		var nas []store.NewAction
		for i, r := range res {
			ids[ups[i].Alert.Labels["pod"]] = r.ID
			nas = append(nas, store.NewAction{IncidentID: r.ID, Phase: vocab.PhaseActions, Rule: "r", RuleHash: "h", Handler: "http.request",
				Target: "t" + ups[i].Alert.Labels["pod"], Class: vocab.ClassNotify, Mode: vocab.ModeEnforce, Params: map[string]any{},
				Timeout: time.Second, State: vocab.StatePlanned, At: drillT0, BasisAt: drillT0})
		}
		_, err = st.InsertActionsTx(ctx, tx, nas)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	inc, err := st.GetIncident(ctx, ids["p1"])
	if err != nil {
		t.Fatal(err)
	}
	if inc.Drill != "d-1" || inc.ReceivedAt == nil || !inc.ReceivedAt.Equal(recv) || len(inc.Actions) != 1 || inc.Actions[0].Drill != "d-1" {
		t.Errorf("incident = drill %q received %v actions %+v", inc.Drill, inc.ReceivedAt, inc.Actions)
	}
	b, _ := json.Marshal(inc)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if m["drill"] != "d-1" || m["received_at"] == nil {
		t.Errorf("incident JSON: %s", b)
	}
	for _, pod := range []string{"p3", "p4"} {
		plain, err := st.GetIncident(ctx, ids[pod])
		if err != nil || plain.Drill != "" || plain.Actions[0].Drill != "" {
			t.Errorf("%s: not a drill's: %+v, %v", pod, plain, err)
		}
	}
	incs, _, err := st.ListIncidents(ctx, store.IncidentFilter{Drill: "d-2"})
	if err != nil || len(incs) != 1 || incs[0].ID != ids["p2"] || incs[0].Drill != "d-2" {
		t.Errorf("incidents of d-2 = %+v, %v", incs, err)
	}
	acts, _, err := st.ListActions(ctx, store.ActionFilter{Drill: "d-1"})
	if err != nil || len(acts) != 1 || acts[0].IncidentID != ids["p1"] || acts[0].Drill != "d-1" {
		t.Errorf("actions of d-1 = %+v, %v", acts, err)
	}
	all, _, err := st.ListIncidents(ctx, store.IncidentFilter{})
	if err != nil || len(all) != 4 {
		t.Errorf("all incidents = %d, %v", len(all), err)
	}
	// The filter's condition is one the partial expression index serves (with sequential scans
	// off: the table is tiny).
	err = st.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `EXPLAIN SELECT id FROM incidents WHERE labels ? 'responder_drill' AND labels->>'responder_drill' = 'd-1'`)
		if err != nil {
			return err
		}
		plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if !strings.Contains(strings.Join(plan, "\n"), "incidents_drill") {
			t.Errorf("the drill filter does not use incidents_drill:\n%s", strings.Join(plan, "\n"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
