package probe

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

// TestPostgres: role and value on a real primary and its streaming standby; lag is 0 while the
// standby is caught up (even with no traffic) and grows while replay is paused behind received
// WAL.
func TestPostgres(t *testing.T) {
	t.Parallel()
	primary := pgtest.StartServer(t)
	standby := pgtest.StartStandby(t, primary)
	r := newRunner(t, parseProbes(t, fmt.Sprintf(`
  - {name: primary, postgres: {dsn: %q}}
  - {name: standby, postgres: {dsn: %q}, firing_when: value > 0}
  - {name: nobody, postgres: {dsn: "postgres://postgres:SECRET-pw@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2"}}
`, primary.URL("postgres"), standby.URL("postgres"))), Options{})

	res := runOnce(t, r, "primary")
	if !res.Success || res.Labels[LabelRole] != RolePrimary || res.Value <= 0 || res.Value > 5 {
		t.Errorf("primary: %+v, want success, role primary, the latency", res)
	}
	if !strings.HasSuffix(res.Labels[LabelInstance], "/postgres") || strings.Contains(res.Labels[LabelInstance], "postgres@") {
		t.Errorf("instance = %q, want host:port/db", res.Labels[LabelInstance])
	}

	ctx := context.Background()
	p, err := pgx.Connect(ctx, primary.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	s, err := pgx.Connect(ctx, standby.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if _, err := p.Exec(ctx, "CREATE TABLE ticks (at timestamptz); INSERT INTO ticks VALUES (now())"); err != nil {
		t.Fatal(err)
	}
	testwait.UntilDetail(t, 20*time.Second, "the insert replayed on the standby", func() (bool, string) {
		var n int
		err := s.QueryRow(ctx, "SELECT count(*) FROM ticks").Scan(&n)
		return err == nil && n == 1, fmt.Sprint(err)
	})
	// Caught up: the probe says 0 (firing_when value > 0 does not hold).
	testwait.UntilDetail(t, 20*time.Second, "standby caught up", func() (bool, string) {
		res := runOnce(t, r, "standby")
		return res.Success && res.Value == 0 && res.Labels[LabelRole] == RoleStandby, fmt.Sprintf("%+v", res)
	})

	// Pause replay, write on the primary: received WAL is not replayed, the lag grows.
	if _, err := s.Exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exec(ctx, "INSERT INTO ticks VALUES (now())"); err != nil {
		t.Fatal(err)
	}
	testwait.UntilDetail(t, 20*time.Second, "lag while replay is paused", func() (bool, string) {
		res := runOnce(t, r, "standby")
		return !res.Success && res.Value > 0 && res.Value < 60 && res.Firing && res.Labels[LabelRole] == RoleStandby, fmt.Sprintf("%+v", res)
	})
	if _, err := s.Exec(ctx, "SELECT pg_wal_replay_resume()"); err != nil {
		t.Fatal(err)
	}
	testwait.UntilDetail(t, 20*time.Second, "caught up after resume", func() (bool, string) {
		res := runOnce(t, r, "standby")
		return res.Success && res.Value == 0 && !res.Firing, fmt.Sprintf("%+v", res)
	})

	res = runOnce(t, r, "nobody")
	if res.Success || !strings.Contains(res.Reason, "127.0.0.1:1") || strings.Contains(res.Reason, "SECRET") {
		t.Errorf("unreachable: %+v, want a connect failure naming the target, never the password", res)
	}
}
