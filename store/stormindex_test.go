package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/store"
)

// TestStormGuardReadsItsIndex: the storm guard's count, run on every executor pass that claimed a
// disruptive action, reads the window's rows through actions_storm_window, so it never scans every
// action kept. (Sequential scans are turned off: on a small table the planner would prefer one.)
func TestStormGuardReadsItsIndex(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	err := st.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "EXPLAIN "+store.StormyRulesQuery, []string{"r"}, time.Now(), 10)
		if err != nil {
			return err
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		plan := strings.Join(lines, "\n")
		if !strings.Contains(plan, "Index Scan using actions_storm_window") {
			t.Errorf("the storm guard's count does not read actions_storm_window:\n%s", plan)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
