package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// basebackupTimeout bounds pg_basebackup (a fresh cluster is a few MiB of files).
const basebackupTimeout = 60 * time.Second

// StartStandby starts a streaming-replication standby of primary for the test: pg_basebackup -R
// copies primary (which must be running, e.g. from StartServer) into a new temporary directory
// and the standby starts on its own free port, replaying primary's WAL as it arrives. Like
// StartServer it is stopped and its directory removed when the test ends; Stop and Start work on
// it too. It is read-only: connect to it with URL.
func StartStandby(t testing.TB, primary *Server) *Server {
	t.Helper()
	s, err := newStandby(t.Context(), primary)
	if err != nil {
		t.Fatalf("pgtest: standby: %v", err)
	}
	t.Cleanup(func() {
		if err := s.stop(context.WithoutCancel(t.Context())); err != nil {
			t.Errorf("pgtest: stop standby: %v", err)
		}
		s.removeDir()
	})
	if err := s.start(t.Context()); err != nil {
		t.Fatalf("pgtest: standby: %v", err)
	}
	return s
}

func newStandby(ctx context.Context, primary *Server) (*Server, error) {
	b := primary.bins
	basebackup := filepath.Join(b.dir, "pg_basebackup")
	if _, err := os.Stat(basebackup); err != nil {
		return nil, fmt.Errorf("%s (pg_basebackup missing in %s)", InstallHint, b.dir)
	}
	dir, err := os.MkdirTemp(baseDir(), dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	// A hot standby needs max_connections at least the primary's.
	s := &Server{bins: b, dir: dir, maxConn: primary.maxConn}
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		s.removeDir()
		return nil, fmt.Errorf("owner file: %w", err)
	}
	if err := chownTree(dir, b.cred); err != nil {
		s.removeDir()
		return nil, err
	}
	bctx, cancel := context.WithTimeout(ctx, basebackupTimeout)
	defer cancel()
	// -R writes standby.signal and primary_conninfo; -X stream brings the WAL the copy needs;
	// -c fast checkpoints at once instead of waiting for the next one.
	cmd := exec.CommandContext(bctx, basebackup,
		"-D", s.dataDir(), "-h", "127.0.0.1", "-p", strconv.Itoa(primary.port), "-U", "postgres",
		"-R", "-X", "stream", "-c", "fast", "--no-sync")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: b.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		s.removeDir()
		return nil, fmt.Errorf("pg_basebackup: %w\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		s.removeDir()
		return nil, err
	}
	s.port = port
	return s, nil
}
