// Package pgtest runs throwaway PostgreSQL servers for tests, on top of store/pgserver (which
// holds the server logic and states the server contract: binaries, settings, initdb cache,
// temporary directories, running as the postgres user when root, parent-death signal).
//
// NewDatabase gives each test a fresh, empty database on a server shared by the whole package
// run; StartServer gives a test a dedicated server it may Stop and Start; StartStandby gives it a
// streaming-replication standby of one. When the server binaries are missing the test fails
// (never skips) with InstallHint, the command that installs them.
//
// Lifecycle of the shared server: it is started lazily by the first NewDatabase. A package that
// uses it should stop it cleanly with
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// Without that, the server still never outlives the test process: every server is started with
// a parent-death signal (Linux), so it shuts down when the test binary exits, and the next run
// removes directories left behind by dead runs.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/responder-sre/responder/store/pgserver"
)

// InstallHint is the message a test fails with when the server binaries are missing.
const InstallHint = pgserver.InstallHint

var (
	sharedOnce sync.Once
	shared     *pgserver.Server
	sharedErr  error
	dbCounter  atomic.Int64
)

// Main runs the package's tests and then stops the shared server. Use it as
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// Run is Main for a TestMain that has its own cleanup to do: it runs the tests, stops the shared
// server and returns the exit code.
func Run(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		// The test binary's own root: no test (and no test context) is running any more.
		if err := shared.Close(context.Background()); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stopping shared server: %v\n", err)
		}
	}
	return code
}

// NewDatabase creates a fresh database on the package's shared server and returns its URL. The
// database is dropped when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	sharedOnce.Do(func() {
		var s *pgserver.Server
		s, sharedErr = pgserver.Start(t.Context(), pgserver.Options{MaxConnections: 300})
		if sharedErr == nil {
			shared = s
		}
	})
	if sharedErr != nil {
		t.Fatalf("pgtest: shared server: %v", sharedErr)
	}
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), dbCounter.Add(1))
	u := (&Server{srv: shared}).CreateDatabase(t, name)
	t.Cleanup(func() {
		// t.Context() is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 10*time.Second)
		defer cancel()
		if err := shared.DropDatabase(ctx, name); err != nil {
			t.Logf("pgtest: %v", err)
		}
	})
	return u
}

// Server is one PostgreSQL server with its own data directory and port.
type Server struct {
	srv *pgserver.Server
}

// StartServer starts a dedicated server for the test; it is stopped and its directory removed
// when the test ends.
func StartServer(t testing.TB) *Server {
	t.Helper()
	s, err := pgserver.New(pgserver.Options{MaxConnections: 100})
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return startDedicated(t, s, "")
}

// startDedicated starts s for the test and closes it when the test ends; what ("" or "standby")
// names it in failures.
func startDedicated(t testing.TB, s *pgserver.Server, what string) *Server {
	t.Helper()
	stopMsg, startMsg := "pgtest: stop", "pgtest: "
	if what != "" {
		stopMsg, startMsg = stopMsg+" "+what, startMsg+what+": "
	}
	t.Cleanup(func() {
		// t.Context() is already cancelled when cleanups run.
		if err := s.Close(context.WithoutCancel(t.Context())); err != nil {
			t.Errorf("%s: %v", stopMsg, err)
		}
	})
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("%s%v", startMsg, err)
	}
	return &Server{srv: s}
}

// URL returns the connection URL of database db on this server.
func (s *Server) URL(db string) string { return s.srv.URL(db) }

// CreateDatabase creates database name and returns its URL.
func (s *Server) CreateDatabase(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	u, err := s.srv.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

// Stop shuts the server down (fast shutdown: open sessions are ended) and waits until it has
// exited. Connecting fails until Start.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.srv.Stop(t.Context()); err != nil {
		t.Fatalf("pgtest: stop: %v", err)
	}
}

// StopImmediate stops the server like `pg_ctl stop -m immediate` (as in a crash) and waits until
// it has exited. Connecting fails until Start, which recovers from the WAL.
func (s *Server) StopImmediate(t testing.TB) {
	t.Helper()
	if err := s.srv.StopImmediate(t.Context()); err != nil {
		t.Fatalf("pgtest: stop immediate: %v", err)
	}
}

// Start starts a stopped server again on the same port and data directory.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if err := s.srv.Start(t.Context()); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// StopImmediateCommand is the command line that stops the server like StopImmediate, from
// outside (pg_ctl on its data directory): see pgserver.Server.StopImmediateCommand.
func (s *Server) StopImmediateCommand() []string { return s.srv.StopImmediateCommand() }
