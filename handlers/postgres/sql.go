package postgres

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// LSN is a PostgreSQL WAL location.
type LSN uint64

// ParseLSN parses "16/B374D848".
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("invalid LSN %q", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("invalid LSN %q", s)
	}
	return LSN(h<<32 | l), nil
}

func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint32(l)) }

// node is one configured server of a streaming cluster.
type node struct {
	name string
	cfg  *pgx.ConnConfig
	addr string // host:port, for messages (never the DSN)
}

func newNode(n config.PostgresNode) (node, error) {
	cfg, err := pgx.ParseConfig(n.DSN.Value())
	if err != nil {
		// pgx may echo the connection string, password included.
		return node{}, fmt.Errorf("%s: invalid connection string", n.Name)
	}
	return node{name: n.Name, cfg: cfg, addr: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))}, nil
}

func (n node) String() string { return n.name + " (" + n.addr + ")" }

// connect opens one connection, bounded by timeout.
func (n node) connect(ctx context.Context, timeout time.Duration) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := pgx.ConnectConfig(cctx, n.cfg.Copy())
	if err != nil {
		// pgx's ConnectError names host, user and database, never the password.
		return nil, fmt.Errorf("connect %s: %w", n, err)
	}
	return c, nil
}

func closeConn(ctx context.Context, c *pgx.Conn) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = c.Close(cctx)
}

// state is what one read of a server shows.
type state struct {
	reachable  bool
	err        error // why it was not reachable
	inRecovery bool
	received   LSN // standby: last received (0 when never streamed)
	hasRecv    bool
	replayed   LSN // standby: last replayed
	current    LSN // primary: WAL insert position
	readOnly   bool
	fenced     string // responder.fenced marker, "" when absent
	paused     bool   // standby: replay paused
	receiver   string // standby: walreceiver status ("" when none)
}

func (s state) String() string {
	switch {
	case !s.reachable:
		return "unreachable"
	case s.inRecovery:
		r := "standby, received " + s.received.String()
		if !s.hasRecv {
			r = "standby, received nothing by streaming"
		}
		r += ", replayed " + s.replayed.String()
		if s.receiver != "" {
			r += ", walreceiver " + s.receiver
		}
		if s.paused {
			r += ", replay PAUSED"
		}
		return r
	default:
		r := "primary at " + s.current.String()
		if s.readOnly {
			r += ", read-only"
		}
		if s.fenced != "" {
			r += ", fenced " + s.fenced
		}
		return r
	}
}

// stateQuery reads a server's role and positions in one round trip.
const stateQuery = `SELECT pg_is_in_recovery(),
       coalesce(pg_last_wal_receive_lsn()::text, ''),
       coalesce(pg_last_wal_replay_lsn()::text, ''),
       CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_current_wal_insert_lsn()::text END,
       current_setting('default_transaction_read_only') = 'on',
       coalesce(current_setting('responder.fenced', true), ''),
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END,
       coalesce((SELECT status FROM pg_stat_wal_receiver LIMIT 1), '')`

func readState(ctx context.Context, c *pgx.Conn) (state, error) {
	var s state
	var recv, repl, cur string
	if err := c.QueryRow(ctx, stateQuery).Scan(&s.inRecovery, &recv, &repl, &cur, &s.readOnly, &s.fenced, &s.paused, &s.receiver); err != nil {
		return s, fmt.Errorf("read state: %w", err)
	}
	s.reachable = true
	var err error
	for _, p := range []struct {
		src string
		dst *LSN
		ok  *bool
	}{{recv, &s.received, &s.hasRecv}, {repl, &s.replayed, nil}, {cur, &s.current, nil}} {
		if p.src == "" {
			continue
		}
		if *p.dst, err = ParseLSN(p.src); err != nil {
			return s, err
		}
		if p.ok != nil {
			*p.ok = true
		}
	}
	return s, nil
}

// probe connects and reads the state; an unreachable server is a state, not an error.
func (b *base) probe(ctx context.Context, n node) state {
	c, err := n.connect(ctx, b.connect)
	if err != nil {
		return state{err: err}
	}
	defer closeConn(ctx, c)
	qctx, cancel := context.WithTimeout(ctx, b.connect)
	defer cancel()
	s, err := readState(qctx, c)
	if err != nil {
		return state{err: fmt.Errorf("%s: %w", n, err)}
	}
	return s
}

// fenceSQL makes a primary read-only for new transactions, marks it and ends the other client
// sessions (replication connections stay, so the standby receives the last WAL).
func fenceSQL(ctx context.Context, c *pgx.Conn, marker string) (terminated int, err error) {
	for _, q := range []string{
		// A custom setting must exist in the session before ALTER SYSTEM accepts it.
		`SET responder.fenced = ` + quoteLiteral(marker),
		`ALTER SYSTEM SET default_transaction_read_only = on`,
		`ALTER SYSTEM SET responder.fenced = ` + quoteLiteral(marker),
		`SELECT pg_reload_conf()`,
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			return 0, fmt.Errorf("%s: %w", strings.SplitN(q, " =", 2)[0], err)
		}
	}
	err = c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'`).Scan(&terminated)
	if err != nil {
		return 0, fmt.Errorf("terminate sessions: %w", err)
	}
	return terminated, nil
}

// flushWAL makes the fenced primary flush all its WAL (transactions committed with
// synchronous_commit = off included) by committing, synchronously, one transaction that writes
// WAL (a temporary table) in this session, and returns the flushed position: what the standby
// must receive before the promotion.
func flushWAL(ctx context.Context, c *pgx.Conn) (LSN, error) {
	tx, err := c.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadWrite})
	if err != nil {
		return 0, fmt.Errorf("flush WAL: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for _, q := range []string{
		`SET LOCAL synchronous_commit = on`,
		`CREATE TEMPORARY TABLE responder_fence_flush (x int) ON COMMIT DROP`,
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return 0, fmt.Errorf("flush WAL: %s: %w", q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("flush WAL: commit: %w", err)
	}
	var s string
	if err := c.QueryRow(ctx, `SELECT pg_current_wal_flush_lsn()::text`).Scan(&s); err != nil {
		return 0, fmt.Errorf("flush WAL: %w", err)
	}
	return ParseLSN(s)
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// promote runs pg_promote and waits up to wait for it.
func promote(ctx context.Context, c *pgx.Conn, wait time.Duration) error {
	var ok bool
	secs := max(int(wait.Seconds()), 1)
	if err := c.QueryRow(ctx, `SELECT pg_promote(wait => true, wait_seconds => $1)`, secs).Scan(&ok); err != nil {
		return fmt.Errorf("pg_promote: %w", err)
	}
	if !ok {
		return handlers.Fail(vocab.ReasonNotRecovered, "pg_promote did not finish within %ds", secs)
	}
	return nil
}

// timeline reads the timeline a primary writes WAL on (the first 8 hex digits of its current WAL
// file's name): after a promotion, the new one.
func timeline(ctx context.Context, c *pgx.Conn) (int, error) {
	var name string
	if err := c.QueryRow(ctx, `SELECT pg_walfile_name(pg_current_wal_lsn())`).Scan(&name); err != nil {
		return 0, fmt.Errorf("read timeline: %w", err)
	}
	if len(name) < 8 {
		return 0, fmt.Errorf("read timeline: WAL file name %q", name)
	}
	tl, err := strconv.ParseUint(name[:8], 16, 32)
	if err != nil {
		return 0, fmt.Errorf("read timeline: WAL file name %q: %w", name, err)
	}
	return int(tl), nil
}

// testWrite proves the server accepts writes with its default settings (a temporary table:
// nothing is left behind).
func testWrite(ctx context.Context, c *pgx.Conn) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return fmt.Errorf("test write: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `CREATE TEMPORARY TABLE responder_failover_check (at timestamptz) ON COMMIT DROP`); err != nil {
		return fmt.Errorf("test write: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO responder_failover_check VALUES (now())`); err != nil {
		return fmt.Errorf("test write: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("test write: %w", err)
	}
	return nil
}
