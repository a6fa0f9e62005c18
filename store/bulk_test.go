package store_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
	"github.com/responder-sre/responder/vocab"
)

// The bulk paths (COPY, from store.BulkRows rows on) must write exactly what the one-statement
// paths write. Each test runs the same writes on two databases, in one batch (bulk) and in
// batches too small for COPY, and compares the results and the rows.

var bulkT0 = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), pgtest.NewDatabase(t), store.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func bulkAlert(i int, status alert.Status, received time.Time) alert.Alert {
	a := alert.Alert{Source: alert.SourceAlertmanager, Status: status, StartsAt: bulkT0, ReceivedAt: received,
		Labels:      map[string]string{alert.NameLabel: "KubePodCrashLooping", "namespace": "shop", "pod": fmt.Sprintf("web-%d", i)},
		Annotations: map[string]string{"summary": fmt.Sprintf("pod <web-%d> & co", i)}}
	if err := a.Validate(); err != nil {
		panic(err)
	}
	return a
}

// inChunks calls fn on consecutive chunks of n items.
func inChunks[T any](items []T, n int, fn func([]T) error) error {
	for len(items) > 0 {
		k := min(n, len(items))
		if err := fn(items[:k]); err != nil {
			return err
		}
		items = items[k:]
	}
	return nil
}

// dump returns the rows of a table as JSON without their ids, in key order.
func dump(t *testing.T, st *store.Store, query string) []string {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const (
	dumpIncidents = `SELECT (to_jsonb(i) - 'id')::text FROM incidents i ORDER BY rule, fingerprint, starts_at`
	dumpActions   = `SELECT (to_jsonb(a) - 'id' - 'incident_id')::text || i.fingerprint FROM actions a JOIN incidents i ON i.id = a.incident_id ORDER BY i.fingerprint, a.phase, a.step`
	dumpAudit     = `SELECT (to_jsonb(a) - 'id' - 'incident_id')::text || coalesce(i.fingerprint, '') FROM audit a LEFT JOIN incidents i ON i.id = a.incident_id ORDER BY a.id`
)

// upsertSetup gives a database 30 incidents: 10 firing, 10 pending, 10 resolved.
func upsertSetup(t *testing.T, st *store.Store) {
	t.Helper()
	ctx := context.Background()
	var ups []store.IncidentUpsert
	for i := range 30 {
		state := vocab.IncidentFiring
		if i >= 10 && i < 20 {
			state = vocab.IncidentPending
		}
		ups = append(ups, store.IncidentUpsert{Rule: "restart", RuleHash: "h1", Alert: bulkAlert(i, alert.StatusFiring, bulkT0), State: state, At: bulkT0})
	}
	err := st.InTx(ctx, func(tx pgx.Tx) error {
		if err := inChunks(ups, 10, func(c []store.IncidentUpsert) error { _, err := st.UpsertIncidentsTx(ctx, tx, c); return err }); err != nil {
			return err
		}
		var keys []store.ResolveKey
		for _, u := range ups[20:] {
			a := u.Alert
			a.Status = alert.StatusResolved
			keys = append(keys, store.ResolveKey{Fingerprint: a.Fingerprint, StartsAt: a.StartsAt, Alert: a})
		}
		_, err := st.ResolveIncidentsTx(ctx, tx, keys, bulkT0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// upsertBatch is 80 upserts against upsertSetup: re-sends of the firing, pending and resolved
// incidents, tombstones for open and for unknown episodes, and new incidents.
func upsertBatch() []store.IncidentUpsert {
	later := bulkT0.Add(time.Minute)
	var ups []store.IncidentUpsert
	add := func(i int, status alert.Status, state vocab.IncidentState) {
		ups = append(ups, store.IncidentUpsert{Rule: "restart", RuleHash: "h2", Alert: bulkAlert(i, status, later), State: state, At: later})
	}
	for i := range 30 {
		switch {
		case i >= 5 && i < 10: // tombstones for open incidents: left alone
			add(i, alert.StatusResolved, vocab.IncidentResolved)
		default: // re-sent: the open ones are refreshed, the resolved ones left alone
			add(i, alert.StatusFiring, vocab.IncidentFiring)
			if i%2 == 0 { // received before the last one: last_seen_at stays
				ups[len(ups)-1].Alert.ReceivedAt = bulkT0.Add(-time.Minute)
			}
		}
	}
	for i := 30; i < 80; i++ {
		switch {
		case i < 35:
			add(i, alert.StatusResolved, vocab.IncidentResolved)
		case i%2 == 0:
			add(i, alert.StatusFiring, vocab.IncidentPending)
		default:
			add(i, alert.StatusFiring, vocab.IncidentFiring)
		}
	}
	slices.SortFunc(ups, func(a, b store.IncidentUpsert) int { return strings.Compare(a.Alert.Fingerprint, b.Alert.Fingerprint) })
	return ups
}

// results are upsert results by fingerprint, with each id checked against the row it names.
func results(t *testing.T, st *store.Store, res []store.UpsertResult) map[string]store.UpsertResult {
	t.Helper()
	out := map[string]store.UpsertResult{}
	for _, r := range res {
		var id int64
		if err := st.Pool().QueryRow(context.Background(), `SELECT id FROM incidents WHERE rule = $1 AND fingerprint = $2 AND starts_at = $3`,
			r.Rule, r.Fingerprint, r.StartsAt).Scan(&id); err != nil || id != r.ID {
			t.Fatalf("result %+v: the incident's id is %d (%v)", r, id, err)
		}
		r.ID = 0
		out[r.Fingerprint] = r
	}
	return out
}

func TestBulkUpsertWritesWhatTheStatementWrites(t *testing.T) {
	ctx := context.Background()
	ups := upsertBatch()
	if len(ups) < store.BulkRows {
		t.Fatalf("%d upserts do not take the bulk path", len(ups))
	}
	var got [2]map[string]store.UpsertResult
	var rows [2][]string
	for k, chunk := range []int{len(ups), 10} {
		st := openStore(t)
		upsertSetup(t, st)
		var res []store.UpsertResult
		err := st.InTx(ctx, func(tx pgx.Tx) error {
			return inChunks(ups, chunk, func(c []store.IncidentUpsert) error {
				r, err := st.UpsertIncidentsTx(ctx, tx, c)
				res = append(res, r...)
				return err
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		got[k], rows[k] = results(t, st, res), dump(t, st, dumpIncidents)
	}
	if d := cmp.Diff(got[1], got[0]); d != "" {
		t.Errorf("bulk results differ (-statement +bulk):\n%s", d)
	}
	if d := cmp.Diff(rows[1], rows[0]); d != "" {
		t.Errorf("bulk rows differ (-statement +bulk):\n%s", d)
	}
	if n := len(got[0]); n != 5+10+50 {
		t.Errorf("%d results, want 65 (the 10 resolved re-sent and the 5 tombstones for open incidents are not returned)", n)
	}
}

// A concurrent transaction inserts one of the incidents the bulk upsert found missing: the COPY
// is refused, and the upsert falls back to the statement, as if it had run alone after it.
func TestBulkUpsertFallsBackWhenAnIncidentAppears(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	ups := upsertBatch()
	other, err := st.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Rollback(ctx) }()
	i := slices.IndexFunc(ups, func(u store.IncidentUpsert) bool {
		return u.State == vocab.IncidentFiring && u.Alert.ReceivedAt.After(bulkT0)
	})
	first := ups[i]
	first.At, first.Alert.ReceivedAt = bulkT0, bulkT0
	if _, err := st.UpsertIncidentsTx(ctx, other, []store.IncidentUpsert{first}); err != nil {
		t.Fatal(err)
	}
	done := make(chan []store.UpsertResult, 1)
	go func() {
		var res []store.UpsertResult
		err := st.InTx(ctx, func(tx pgx.Tx) error {
			var err error
			res, err = st.UpsertIncidentsTx(ctx, tx, ups)
			return err
		})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	// The bulk upsert's COPY waits for the other transaction's row.
	testwait.Until(t, 10*time.Second, "the COPY waits for the concurrent insert", func() bool {
		var n int
		err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'COPY%'`).Scan(&n)
		return err == nil && n == 1
	})
	if err := other.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if len(res) != len(ups) {
		t.Fatalf("%d results, want %d", len(res), len(ups))
	}
	for _, r := range res {
		if want := r.Fingerprint != first.Alert.Fingerprint; r.Inserted != want {
			t.Errorf("%s: inserted %v, want %v", r.Fingerprint, r.Inserted, want)
		}
	}
	var seen time.Time
	if err := st.Pool().QueryRow(ctx, `SELECT last_seen_at FROM incidents WHERE fingerprint = $1`, first.Alert.Fingerprint).Scan(&seen); err != nil || !seen.Equal(ups[i].Alert.ReceivedAt) {
		t.Errorf("the concurrent incident was not refreshed: last seen %v (%v)", seen, err)
	}
}

// fill sets every field of v (a struct) to a value that is not zero, so a field one path writes
// and the other forgets shows in the rows.
func fill(v reflect.Value, i int) {
	for f := range v.NumField() {
		fv := v.Field(f)
		switch fv.Kind() {
		case reflect.String:
			fv.SetString(fmt.Sprintf("%s-%d", v.Type().Field(f).Name, i))
		case reflect.Int, reflect.Int64:
			if fv.Type() == reflect.TypeFor[time.Duration]() {
				fv.SetInt(int64(time.Duration(i+1) * time.Second))
			} else {
				fv.SetInt(int64(i%3 + 2))
			}
		case reflect.Map:
			fv.Set(reflect.ValueOf(map[string]any{"target": fmt.Sprintf("pod <%d>", i), "n": i, "list": []any{true, nil, 1.5}}))
		case reflect.Struct:
			fv.Set(reflect.ValueOf(bulkT0.Add(time.Duration(i+f) * time.Second)))
		case reflect.Pointer:
			if fv.Type() != reflect.TypeFor[*store.Chain]() {
				panic("fill: a field of type " + fv.Type().String())
			}
			fv.Set(reflect.ValueOf(&store.Chain{Params: map[string]any{"body": fmt.Sprintf("{{ steps.s%d.result.f }}", i)}, Steps: map[string]int{fmt.Sprintf("s%d", i): i % 3}}))
		default:
			panic("fill: a field of kind " + fv.Kind().String())
		}
	}
}

func TestBulkPlanActionsWritesWhatInsertWrites(t *testing.T) {
	ctx := context.Background()
	var rows [2][]string
	for k, bulk := range []bool{true, false} {
		st := openStore(t)
		ups := upsertBatch()
		err := st.InTx(ctx, func(tx pgx.Tx) error {
			res, err := st.UpsertIncidentsTx(ctx, tx, ups)
			if err != nil {
				return err
			}
			as := make([]store.NewAction, len(res))
			for i, r := range res {
				fill(reflect.ValueOf(&as[i]).Elem(), i)
				as[i].IncidentID = r.ID
				as[i].Phase, as[i].Class, as[i].Mode = vocab.PhaseActions, vocab.ClassDisruptive, vocab.ModeEnforce
				as[i].State, as[i].Reason = []vocab.State{vocab.StatePlanned, vocab.StateAwaitingApproval, vocab.StateFailed}[i%3], ""
				if i%4 == 0 {
					as[i].Member, as[i].BasisAt, as[i].ApprovalsRequired, as[i].Chain = "", time.Time{}, 0, nil
				}
			}
			if bulk {
				if len(as) < store.BulkRows {
					t.Fatalf("%d actions do not take the bulk path", len(as))
				}
				return st.PlanActionsTx(ctx, tx, as)
			}
			return inChunks(as, 10, func(c []store.NewAction) error { _, err := st.InsertActionsTx(ctx, tx, c); return err })
		})
		if err != nil {
			t.Fatal(err)
		}
		rows[k] = dump(t, st, dumpActions)
	}
	if d := cmp.Diff(rows[1], rows[0]); d != "" {
		t.Errorf("bulk rows differ (-insert +bulk):\n%s", d)
	}
}

// An action that exists is left alone, in bulk too.
func TestBulkPlanActionsKeepsExistingSteps(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	err := st.InTx(ctx, func(tx pgx.Tx) error {
		res, err := st.UpsertIncidentsTx(ctx, tx, upsertBatch())
		if err != nil {
			return err
		}
		as := make([]store.NewAction, len(res))
		for i, r := range res {
			as[i] = store.NewAction{IncidentID: r.ID, Phase: vocab.PhaseActions, Rule: "restart", Handler: "test.fix", Target: fmt.Sprint(i),
				Mode: vocab.ModeEnforce, State: vocab.StatePlanned, At: bulkT0, Params: map[string]any{"first": true}}
		}
		if _, err := st.InsertActionsTx(ctx, tx, as[3:4]); err != nil {
			return err
		}
		as[3].Params = map[string]any{"second": true}
		return st.PlanActionsTx(ctx, tx, as)
	})
	if err != nil {
		t.Fatal(err)
	}
	var n, kept int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE params::text LIKE '%first%') FROM actions`).Scan(&n, &kept); err != nil {
		t.Fatal(err)
	}
	if n != 80 || kept != 80 {
		t.Fatalf("%d actions, %d with the first params; want 80 and 80", n, kept)
	}
}

func TestBulkAuditWritesWhatTheStatementWrites(t *testing.T) {
	ctx := context.Background()
	var rows [2][]string
	for k, chunk := range []int{100, 10} {
		st := openStore(t)
		err := st.InTx(ctx, func(tx pgx.Tx) error {
			res, err := st.UpsertIncidentsTx(ctx, tx, upsertBatch())
			if err != nil {
				return err
			}
			var es []store.AuditInsert
			for i, r := range res {
				e := store.AuditInsert{At: bulkT0.Add(time.Duration(i) * time.Millisecond), Kind: store.AuditIncident, Actor: "engine",
					Reason: string(r.State), RuleHash: "h", Detail: map[string]any{"alert": "<x>", "fingerprint": r.Fingerprint, "step": i, "state": r.State}}
				switch i % 3 {
				case 0:
					e.IncidentID = r.ID
				case 1:
					e.IncidentID, e.ActionID, e.Detail = r.ID, int64(i), nil
				}
				es = append(es, e)
			}
			if k == 0 && len(es) < store.BulkRows {
				t.Fatalf("%d audit rows do not take the bulk path", len(es))
			}
			return inChunks(es, chunk, func(c []store.AuditInsert) error { return st.AuditTx(ctx, tx, c) })
		})
		if err != nil {
			t.Fatal(err)
		}
		rows[k] = dump(t, st, dumpAudit)
	}
	if d := cmp.Diff(rows[1], rows[0]); d != "" {
		t.Errorf("bulk rows differ (-statement +bulk):\n%s", d)
	}
}
