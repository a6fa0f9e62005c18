package pgtest_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func tableExists(t *testing.T, conn *pgx.Conn, name string) bool {
	t.Helper()
	var ok bool
	err := conn.QueryRow(context.Background(),
		"SELECT EXISTS (SELECT 1 FROM pg_tables WHERE tablename = $1)", name).Scan(&ok)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	return ok
}

func TestNewDatabaseIsolated(t *testing.T) {
	t.Parallel()
	urlA, urlB := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	if urlA == urlB {
		t.Fatalf("two NewDatabase calls returned the same URL %s", urlA)
	}
	a, b := connect(t, urlA), connect(t, urlB)
	if _, err := a.Exec(context.Background(), "CREATE TABLE only_in_a (id int)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	if !tableExists(t, a, "only_in_a") {
		t.Fatal("table missing in the database that created it")
	}
	if tableExists(t, b, "only_in_a") {
		t.Fatal("table created in database A is visible in database B")
	}
}

func TestNewDatabaseSettings(t *testing.T) {
	t.Parallel()
	conn := connect(t, pgtest.NewDatabase(t))
	for _, tc := range []struct{ name, want string }{
		{"fsync", "off"},
		{"full_page_writes", "off"},
		{"synchronous_commit", "off"},
		{"listen_addresses", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			if err := conn.QueryRow(context.Background(), "SELECT current_setting($1)", tc.name).Scan(&got); err != nil {
				t.Fatalf("current_setting: %v", err)
			}
			if got != tc.want {
				t.Errorf("%s = %q, want %q", tc.name, got, tc.want)
			}
		})
	}
}

func TestServerStopStart(t *testing.T) {
	t.Parallel()
	s := pgtest.StartServer(t)
	url := s.CreateDatabase(t, "app")
	if !strings.HasSuffix(strings.SplitN(url, "?", 2)[0], "/app") || url != s.URL("app") {
		t.Fatalf("CreateDatabase URL %q, URL(app) %q", url, s.URL("app"))
	}
	conn := connect(t, url)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('x')"); err != nil {
		t.Fatalf("write: %v", err)
	}

	s.Stop(t)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if c, err := pgx.Connect(cctx, url); err == nil {
		_ = c.Close(ctx)
		t.Fatal("connect succeeded while the server is stopped")
	}
	if err := conn.Ping(cctx); err == nil {
		t.Fatal("existing connection still works after Stop")
	}

	s.Start(t)
	s.Start(t) // idempotent while running
	again := connect(t, url)
	var v string
	if err := again.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != "x" {
		t.Fatalf("after restart: v=%q err=%v, want the row written before Stop", v, err)
	}
}

func TestMissingBinariesFail(t *testing.T) {
	// Runs the helper in a child process with PG_BIN pointing nowhere: it
	// must fail (not skip) with the install command.
	if os.Getenv("PGTEST_CHILD") == "1" {
		pgtest.StartServer(t)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestMissingBinariesFail$", "-test.v")
	cmd.Env = append(os.Environ(), "PGTEST_CHILD=1", "PG_BIN="+filepath.Join(t.TempDir(), "nowhere"))
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("child passed with no binaries:\n%s", out)
	}
	if !strings.Contains(string(out), pgtest.InstallHint) || !strings.Contains(string(out), "--- FAIL") {
		t.Fatalf("child output lacks a FAIL with %q:\n%s", pgtest.InstallHint, out)
	}
}
