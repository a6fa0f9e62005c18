// Package store keeps responder's truth in PostgreSQL: incidents, timers, actions, cooldowns, the
// audit trail and dead letters. It owns every SQL statement; the engine decides, the store records.
//
// Migrations are embedded SQL files named by UTC timestamp (migrations/YYYYMMDDhhmmss_name.sql),
// applied in name order at startup by tern under its advisory lock, so replicas starting together
// migrate once. Every method takes ctx first; methods named *Tx run inside the caller's transaction.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path"
	"regexp"
	"slices"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

var migrationName = regexp.MustCompile(`^\d{14}_[a-z0-9_]+\.sql$`)

// Store is a pool of connections to responder's database.
type Store struct {
	pool    *pgxpool.Pool
	version string
}

// Options configure Open.
type Options struct {
	MaxConns int32
	// Version stamps every row that records a decision.
	Version string
}

// Open connects to url, applies pending migrations and returns the store.
func Open(ctx context.Context, url string, o Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", redact(err))
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	s := &Store{pool: pool, version: o.Version}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// redact drops the connection string pgx may echo in a parse error (it can hold a password).
func redact(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("invalid connection string")
	}
	return err
}

// Migrations returns the embedded migration names in the order they apply.
func Migrations() ([]string, error) {
	ents, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if !migrationName.MatchString(e.Name()) {
			return nil, fmt.Errorf("migration %q is not named YYYYMMDDhhmmss_name.sql", e.Name())
		}
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names, nil
}

func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect to database: %w", err)
	}
	defer conn.Release()
	m, err := migrate.NewMigrator(ctx, conn.Conn(), "responder_schema_version")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	names, err := Migrations()
	if err != nil {
		return err
	}
	for _, n := range names {
		b, err := migrationFS.ReadFile(path.Join("migrations", n))
		if err != nil {
			return err
		}
		up, down, _ := strings.Cut(string(b), "---- create above / drop below ----")
		m.AppendMigration(strings.TrimSuffix(n, ".sql"), up, down)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Version is the responder version stamped on rows.
func (s *Store) Version() string { return s.version }

// Pool exposes the pool to tests and tools in this module.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// InTx runs fn in a transaction, committing when it returns nil.
func (s *Store) InTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}

// IsTargetBusy reports whether err is an index refusing a second running action on a target: a
// second disruptive one (actions_one_running_per_target), or a second one of one incident
// (actions_one_running_per_incident_target). Any unique index named actions_one_running… is one
// of those, so that a replica still running this code during a rolling upgrade reads an index a
// later migration adds the same way.
func IsTargetBusy(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && strings.HasPrefix(pe.ConstraintName, targetBusyIndexPrefix)
}

// targetBusyIndexPrefix starts the name of every unique index that refuses a second running action.
const targetBusyIndexPrefix = "actions_one_running"

// IsTransient reports whether err is worth retrying as is, after a backoff. Only errors about the
// data are permanent (a value that does not fit, a constraint the data violates, a bug in a query):
// retrying them forever would block the consumer, so they count toward dead-lettering. Everything
// about the database rather than the data is transient: it is unreachable or going away
// (connection errors, network errors, server shutdown or overload, a cancelled context), a
// serialization failure, deadlock or lock timeout, a read-only transaction (25006: a pool still
// connected to a demoted primary, or a database set read-only for maintenance), a permission or
// authentication error (a role or grant being rotated), or a relation or database that does not
// exist (yet: a restore or a migration by a newer replica in progress). Those heal when an
// operator or a failover fixes the database, and the messages wait for it instead of being
// dead-lettered.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "40001", pe.Code == "40P01", pe.Code == "55P03": // serialization, deadlock, lock not available
			return true
		case pe.Code == "25006", pe.Code == "25P03": // read-only transaction, idle-in-transaction timeout
			return true
		case pe.Code == "42501", pe.Code == "42P01", pe.Code == "3D000": // insufficient privilege, undefined table or database
			return true
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "57"), strings.HasPrefix(pe.Code, "53"),
			strings.HasPrefix(pe.Code, "28"), strings.HasPrefix(pe.Code, "58"):
			// connection exception, operator intervention (shutdown), insufficient resources,
			// invalid authorization, system error (I/O)
			return true
		}
		return IsTargetBusy(err)
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &ce), errors.As(err, &ne), pgconn.SafeToRetry(err), pgconn.Timeout(err):
		return true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED):
		return true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	// pgx reports a connection lost mid-transaction as "conn closed" / "conn busy" without a type.
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "conn busy") || strings.Contains(msg, "closed pool")
}
