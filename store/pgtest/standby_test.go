package pgtest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

func TestStandbyReplicates(t *testing.T) {
	t.Parallel()
	primary := pgtest.StartServer(t)
	standby := pgtest.StartStandby(t, primary)
	p, s := connect(t, primary.URL("postgres")), connect(t, standby.URL("postgres"))
	ctx := context.Background()

	var recovering bool
	if err := s.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&recovering); err != nil || !recovering {
		t.Fatalf("standby pg_is_in_recovery() = %v, %v; want true", recovering, err)
	}
	if _, err := p.Exec(ctx, "CREATE TABLE replicated AS SELECT 42 AS v"); err != nil {
		t.Fatal(err)
	}
	testwait.UntilDetail(t, 20*time.Second, "the row written on the primary on the standby", func() (bool, string) {
		var v int
		err := s.QueryRow(ctx, "SELECT v FROM replicated").Scan(&v)
		return err == nil && v == 42, fmt.Sprintf("v %d, err %v", v, err)
	})
}

// A failover: the primary stops, the promoted standby takes writes and keeps what was replicated.
func TestStandbyPromote(t *testing.T) {
	t.Parallel()
	primary := pgtest.StartServer(t)
	standby := pgtest.StartStandby(t, primary)
	ctx := context.Background()
	if _, err := connect(t, primary.URL("postgres")).Exec(ctx, "CREATE TABLE before AS SELECT 1 AS v"); err != nil {
		t.Fatal(err)
	}
	s := connect(t, standby.URL("postgres"))
	testwait.Until(t, 20*time.Second, "the table on the standby", func() bool {
		var v int
		return s.QueryRow(ctx, "SELECT v FROM before").Scan(&v) == nil
	})
	if _, err := s.Exec(ctx, "CREATE TABLE refused (v int)"); err == nil {
		t.Fatal("the standby took a write before its promotion")
	}
	primary.Stop(t)
	standby.Promote(t)
	var recovering bool
	if err := s.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&recovering); err != nil || recovering {
		t.Fatalf("after Promote pg_is_in_recovery() = %v, %v; want false", recovering, err)
	}
	if _, err := s.Exec(ctx, "INSERT INTO before VALUES (2)"); err != nil {
		t.Fatalf("write on the promoted standby: %v", err)
	}
}
