package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
	"github.com/responder-sre/responder/vocab"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestMigrationsNamedByUTCTimestamp(t *testing.T) {
	names, err := store.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no migrations embedded")
	}
	for _, n := range names {
		if _, err := time.Parse("20060102150405", n[:14]); err != nil {
			t.Errorf("migration %s does not start with a UTC timestamp: %v", n, err)
		}
	}
}

func TestReplicasMigrateOnceConcurrently(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := store.Open(ctx, url, store.Options{Version: "test"})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
	s, err := store.Open(ctx, url, store.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var v int
	if err := s.Pool().QueryRow(ctx, `SELECT version FROM responder_schema_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	names, _ := store.Migrations()
	if v != len(names) {
		t.Fatalf("schema version %d, want %d", v, len(names))
	}
}

func TestListPagination(t *testing.T) {
	ctx := context.Background()
	s, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Version: "v-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	var ups []store.IncidentUpsert
	for i := range 5 {
		a := alert.Alert{Status: alert.StatusFiring, Labels: map[string]string{"alertname": "X", "i": string(rune('a' + i))}, StartsAt: t0, ReceivedAt: t0}
		if err := a.Validate(); err != nil {
			t.Fatal(err)
		}
		ups = append(ups, store.IncidentUpsert{Rule: "r", RuleHash: "h", Alert: a, State: vocab.IncidentFiring, At: t0})
	}
	if err := s.InTx(ctx, func(tx pgx.Tx) error { _, err := s.UpsertIncidentsTx(ctx, tx, ups); return err }); err != nil {
		t.Fatal(err)
	}
	var seen []int64
	cursor := ""
	for range 10 {
		items, next, err := s.ListIncidents(ctx, store.IncidentFilter{Page: store.Page{Limit: 2, Cursor: cursor}})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			seen = append(seen, it.ID)
			if it.Version != "v-test" || it.RuleHash != "h" {
				t.Fatalf("row not stamped: %+v", it)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != 5 {
		t.Fatalf("paged through %v, want 5 incidents", seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] >= seen[i-1] {
			t.Fatalf("not newest first: %v", seen)
		}
	}
	if _, _, err := s.ListIncidents(ctx, store.IncidentFilter{Page: store.Page{Cursor: "x"}}); err == nil {
		t.Fatal("a bad cursor must be an error")
	}
}

func TestDeadLetterIsRecordedAndAudited(t *testing.T) {
	ctx := context.Background()
	s, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	if err := s.InsertDeadLetter(ctx, "msg-1", "undecodable: invalid character", []byte("{not json"), at); err != nil {
		t.Fatal(err)
	}
	dls, _, err := s.ListDeadLetters(ctx, store.DeadLetterFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].MsgID != "msg-1" || dls[0].Preview != "{not json" || dls[0].Size != 9 ||
		dls[0].Reason != "undecodable" || dls[0].Error != "invalid character" {
		t.Fatalf("dead letters = %+v", dls)
	}
	aud, _, err := s.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(aud) != 1 || aud[0].Kind != store.AuditDeadLetter || aud[0].Reason == "" {
		t.Fatalf("audit = %+v", aud)
	}
	// Retention removes it once old enough, after handing it over (it was never replayed), and
	// audits that: the dead letter and the old audit row go, the expiry's audit row stays.
	var handed []store.DeadLetter
	rep, err := s.Retain(ctx, at.Add(time.Hour), at.Add(time.Hour), func(ds []store.DeadLetter) { handed = ds })
	if err != nil || rep.Deleted != 2 || len(rep.Expired) != 1 || len(handed) != 1 || handed[0].MsgID != "msg-1" {
		t.Fatalf("retention: %+v, handed %+v (err %v), want 2 rows deleted and msg-1 handed over", rep, handed, err)
	}
}

func TestIsTransient(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"deadlock", &pgconn.PgError{Code: "40P01"}, true},
		{"target busy", &pgconn.PgError{Code: "23505", ConstraintName: "actions_one_running_per_target"}, true},
		{"target busy in the incident", &pgconn.PgError{Code: "23505", ConstraintName: "actions_one_running_per_incident_target"}, true},
		{"target busy, an index a later migration adds", &pgconn.PgError{Code: "23505", ConstraintName: "actions_one_running_per_scope"}, true},
		{"other unique violation", &pgconn.PgError{Code: "23505", ConstraintName: "x"}, false},
		{"other constraint on such an index", &pgconn.PgError{Code: "23514", ConstraintName: "actions_one_running_per_target"}, false},
		{"bad jsonb", &pgconn.PgError{Code: "22P05"}, false},
		{"refused", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), true},
		{"json", errors.New("json: unsupported value: NaN"), false},
		{"engine bug", errors.New("incident 3 does not match any alert of the batch"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := store.IsTransient(tc.err); got != tc.want {
				t.Fatalf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
