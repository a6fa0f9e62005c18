package pgserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
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

// Promote ends the recovery of a standby (SELECT pg_promote(), which waits up to 60 s for the
// promotion to finish) so that it takes writes: a failover, once its primary is gone. It fails if
// the server is not a standby or did not finish promoting in time.
func (s *Server) Promote(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return fmt.Errorf("promote: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var done bool
	if err := conn.QueryRow(ctx, `SELECT pg_promote(true, 60)`).Scan(&done); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	if !done {
		return errors.New("promote: the standby did not finish promoting within 60s")
	}
	return nil
}
