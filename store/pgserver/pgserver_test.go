package pgserver

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestServerLifecycle(t *testing.T) {
	ctx := t.Context()
	s, err := Start(ctx, Options{MaxConnections: 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.WithoutCancel(ctx)); err != nil {
			t.Error(err)
		}
	})
	u, err := s.CreateDatabase(ctx, "lifecycle")
	if err != nil {
		t.Fatal(err)
	}
	query := func() int {
		t.Helper()
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, "SELECT 41 + 1").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := query(); n != 42 {
		t.Fatalf("got %d", n)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, u); err == nil {
		t.Fatal("connected to a stopped server")
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n := query(); n != 42 {
		t.Fatalf("after restart got %d", n)
	}
	if err := s.DropDatabase(ctx, "lifecycle"); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, u); err == nil {
		t.Fatal("connected to a dropped database")
	}
	if s.Major() < 10 || s.Port() == 0 || s.BinDir() == "" {
		t.Errorf("major %d port %d bin %q", s.Major(), s.Port(), s.BinDir())
	}
}

func TestMissingBinaries(t *testing.T) {
	t.Setenv("PG_BIN", t.TempDir())
	_, err := lookBinaries()
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("err = %v, want ErrNoBinaries", err)
	}
	if want := "apt-get install -y postgresql"; !contains(err.Error(), want) {
		t.Errorf("error %q lacks the install hint", err)
	}
}

func TestMajorVersion(t *testing.T) {
	for v, want := range map[string]int{"postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)": 15, "postgres (PostgreSQL) 17.2": 17, "garbage": 0} {
		if got := majorVersion(v); got != want {
			t.Errorf("majorVersion(%q) = %d, want %d", v, got, want)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// An immediate stop is a crash: sessions die at once, and Start recovers what was committed (with
// synchronous_commit on, which the server's own default turns off for speed).
func TestStopImmediateRecovers(t *testing.T) {
	ctx := t.Context()
	s, err := Start(ctx, Options{MaxConnections: 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.WithoutCancel(ctx)); err != nil {
			t.Error(err)
		}
	})
	u, err := s.CreateDatabase(ctx, "crash")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SET synchronous_commit = on; CREATE TABLE t (n int); INSERT INTO t VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	if err := s.StopImmediate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a session survived an immediate stop")
	}
	if _, err := pgx.Connect(ctx, u); err == nil {
		t.Fatal("connected to a stopped server")
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c2, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(context.WithoutCancel(ctx))
	var n int
	if err := c2.QueryRow(ctx, "SELECT n FROM t").Scan(&n); err != nil || n != 7 {
		t.Fatalf("after recovery: n = %d, err %v", n, err)
	}
	if !strings.Contains(s.LogTail(), "not properly shut down") && !strings.Contains(s.LogTail(), "automatic recovery") {
		t.Errorf("the server did not recover from a crash:\n%s", s.LogTail())
	}
}

// TestStopImmediateCommandFromOutside: pg_ctl run from outside (as a drill injects a fault) stops
// the server; its owner then finds it exited, and starts it again.
func TestStopImmediateCommandFromOutside(t *testing.T) {
	ctx := t.Context()
	s, err := Start(ctx, Options{MaxConnections: 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.WithoutCancel(ctx)); err != nil {
			t.Error(err)
		}
	})
	argv := s.StopImmediateCommand()
	if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
	if c, err := pgx.Connect(ctx, s.URL("postgres")); err == nil {
		c.Close(ctx)
		t.Fatal("connected after pg_ctl stop -m immediate")
	}
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start after an outside stop: %v", err)
	}
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
}
