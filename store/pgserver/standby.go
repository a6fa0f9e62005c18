package pgserver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// basebackupTimeout bounds pg_basebackup (a fresh cluster is a few MiB of files).
const basebackupTimeout = 60 * time.Second

// NewStandby prepares, without starting it, a streaming-replication standby of primary (which
// must be running): pg_basebackup -R copies primary into a new temporary directory and the standby
// gets its own free port; once started it replays primary's WAL as it arrives. It is read-only.
func NewStandby(ctx context.Context, primary *Server) (*Server, error) {
	b := primary.bins
	basebackup := filepath.Join(b.dir, "pg_basebackup")
	if _, err := os.Stat(basebackup); err != nil {
		return nil, fmt.Errorf("%w (pg_basebackup missing in %s)", ErrNoBinaries, b.dir)
	}
	// A hot standby needs max_connections at least the primary's.
	s, err := newDir(b, primary.maxConn)
	if err != nil {
		return nil, err
	}
	if err := chownTree(s.dir, b.cred); err != nil {
		s.Remove()
		return nil, err
	}
	bctx, cancel := context.WithTimeout(ctx, basebackupTimeout)
	defer cancel()
	// -R writes standby.signal and primary_conninfo; -X stream brings the WAL the copy needs;
	// -c fast checkpoints at once instead of waiting for the next one.
	cmd := exec.CommandContext(bctx, basebackup,
		"-D", s.DataDir(), "-h", "127.0.0.1", "-p", strconv.Itoa(primary.port), "-U", "postgres",
		"-R", "-X", "stream", "-c", "fast", "--no-sync")
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: b.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		s.Remove()
		return nil, fmt.Errorf("pg_basebackup: %w\n%s", err, out)
	}
	return s, nil
}
