package pgtest_test

import (
	"context"
	"testing"
	"time"

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
	deadline := time.Now().Add(20 * time.Second)
	for {
		var v int
		err := s.QueryRow(ctx, "SELECT v FROM replicated").Scan(&v)
		if err == nil && v == 42 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("row written on the primary not on the standby after 20s: %v", err)
		}
		<-time.After(20 * time.Millisecond) // polling replication of an external process
	}
}
