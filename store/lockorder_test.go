package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store"
)

// TestRefreshLocksIncidentsInIDOrder: two transactions refresh the same two incidents. The
// first holds the lower id; the second, refreshing both in one statement, must lock in id order
// and so wait for the first without holding the higher one: the first can then refresh that one
// too, and both commit. Locked in the order named (or the plan's), they could deadlock (40P01).
func TestRefreshLocksIncidentsInIDOrder(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	upsertSetup(t, st) // incidents 0-9 firing
	key := func(i int) store.RefreshKey {
		return store.RefreshKey{Alert: bulkAlert(i, alert.StatusFiring, bulkT0.Add(time.Minute))}
	}
	rules := []string{"restart"}

	for _, tc := range []struct {
		name  string
		first []store.RefreshKey // refreshed by the first transaction, which then waits
		both  []store.RefreshKey // refreshed by the second, in one statement
		then  []store.RefreshKey // refreshed by the first while the second waits
	}{
		{"the second names the higher id first", []store.RefreshKey{key(0)}, []store.RefreshKey{key(9), key(0)}, []store.RefreshKey{key(9)}},
		{"the second names them in id order", []store.RefreshKey{key(0)}, []store.RefreshKey{key(0), key(9)}, []store.RefreshKey{key(9)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx1, err := st.Pool().Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx1.Rollback(ctx) }()
			if err := st.RefreshIncidentsTx(ctx, tx1, rules, tc.first); err != nil {
				t.Fatal(err)
			}
			second := make(chan error, 1)
			go func() {
				second <- st.InTx(ctx, func(tx pgx.Tx) error { return st.RefreshIncidentsTx(ctx, tx, rules, tc.both) })
			}()
			waitBlocked(t, st)
			// Whether the second locks the other incident before waiting decides this one.
			done := make(chan error, 1)
			go func() { done <- st.RefreshIncidentsTx(ctx, tx1, rules, tc.then) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("the first transaction's second refresh: %v", err)
				}
			case err := <-second:
				t.Fatalf("the second transaction ended before the first committed: %v", err)
			}
			if err := tx1.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-second; err != nil {
				t.Fatalf("the second transaction: %v", err)
			}
		})
	}
}

// waitBlocked waits until a session of st waits for a row lock.
func waitBlocked(t *testing.T, st *store.Store) {
	t.Helper()
	testwait.Until(t, 10*time.Second, "a session waits for a lock", func() bool {
		var n int
		err := st.Pool().QueryRow(context.Background(),
			`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return err == nil && n > 0
	})
}
