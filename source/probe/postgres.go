package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/config"
)

// Roles a postgres probe reports in the role label.
const (
	RolePrimary = "primary"
	RoleStandby = "standby"
)

// postgresQuery is the probe's liveness query (it stands for SELECT 1) and reads the role and,
// on a standby, the replication lag in seconds:
//   - caught up (everything received is replayed) while the WAL receiver streams: 0, even when
//     the last replayed commit is old because the primary has had no traffic (now() minus
//     pg_last_xact_replay_timestamp() would grow without bound on an idle primary);
//   - otherwise now() - pg_last_xact_replay_timestamp(): replay is behind, or the standby is
//     not streaming (disconnected, restoring from an archive) and so falls behind in time;
//   - 0 when nothing was replayed since the standby started (no timestamp to measure from).
//
// Without pg_read_all_stats (or superuser) pg_stat_wal_receiver hides its status: a receiver
// that exists then counts as streaming.
const postgresQuery = `
WITH s AS (
  SELECT pg_is_in_recovery() AS standby,
         pg_last_wal_receive_lsn() AS received,
         pg_last_wal_replay_lsn() AS replayed,
         EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 AS since_replay,
         (SELECT coalesce(status, 'streaming') FROM pg_stat_wal_receiver LIMIT 1) AS receiver
)
SELECT standby,
       CASE WHEN NOT standby THEN 0
            WHEN receiver = 'streaming' AND received IS NOT NULL AND received = replayed THEN 0
            ELSE coalesce(greatest(since_replay, 0), 0)
       END
  FROM s`

type postgresCheck struct {
	cfg  *pgx.ConnConfig
	inst string
}

func newPostgresCheck(c *config.PostgresProbe) (*postgresCheck, error) {
	cfg, inst, err := parseDSN(c.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &postgresCheck{cfg: cfg, inst: inst}, nil
}

// parseDSN parses a probe's connection string and returns it with the instance label
// (host:port/database, no credentials).
func parseDSN(dsn config.Secret) (*pgx.ConnConfig, string, error) {
	cfg, err := pgx.ParseConfig(dsn.Value())
	if err != nil {
		// pgx may echo the connection string, password included.
		return nil, "", errors.New("invalid connection string")
	}
	inst := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if cfg.Database != "" {
		inst += "/" + cfg.Database
	}
	return cfg, inst, nil
}

func (c *postgresCheck) instance() string { return c.inst }

// check connects (a fresh connection each run, as a client would) and runs postgresQuery. The
// value is the lag on a standby and the latency (connect + query) on a primary.
func (c *postgresCheck) check(ctx context.Context) Measurement {
	start := time.Now()
	conn, err := pgx.ConnectConfig(ctx, c.cfg.Copy())
	if err != nil {
		return Measurement{Value: nanValue, Err: fmt.Errorf("postgres %s: %w", c.inst, err), Duration: time.Since(start)}
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = conn.Close(cctx)
		cancel()
	}()
	var standby bool
	var lag float64
	if err := conn.QueryRow(ctx, postgresQuery).Scan(&standby, &lag); err != nil {
		return Measurement{Value: nanValue, Err: fmt.Errorf("postgres %s: %w", c.inst, err), Duration: time.Since(start)}
	}
	d := time.Since(start)
	if standby {
		return Measurement{Value: lag, Labels: map[string]string{LabelRole: RoleStandby}, Duration: d}
	}
	return Measurement{Value: d.Seconds(), Labels: map[string]string{LabelRole: RolePrimary}, Duration: d}
}
