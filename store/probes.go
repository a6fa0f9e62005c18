package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// LoadProbeStates returns every saved probe state by probe name. Each state is the JSON document
// the probe runner saved (source/probe owns its shape).
func (s *Store) LoadProbeStates(ctx context.Context) (map[string][]byte, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, state FROM probe_states`)
	if err != nil {
		return nil, fmt.Errorf("load probe states: %w", err)
	}
	out := map[string][]byte{}
	var name string
	var state []byte
	if _, err := pgx.ForEachRow(rows, []any{&name, &state}, func() error {
		out[name] = append([]byte(nil), state...)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("load probe states: %w", err)
	}
	return out, nil
}

// SaveProbeState stores the state (a JSON document) of probe name, replacing the previous one.
func (s *Store) SaveProbeState(ctx context.Context, name string, state []byte) error {
	return saveProbeState(ctx, s.pool, name, state)
}

// SaveProbeStateTx is SaveProbeState inside the caller's transaction, e.g. after CheckFence so a
// stale leader cannot overwrite the new leader's state.
func (s *Store) SaveProbeStateTx(ctx context.Context, tx pgx.Tx, name string, state []byte) error {
	return saveProbeState(ctx, tx, name, state)
}

type probeExecer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func saveProbeState(ctx context.Context, db probeExecer, name string, state []byte) error {
	if _, err := db.Exec(ctx, `
INSERT INTO probe_states (name, state, updated_at) VALUES ($1, $2::jsonb, now())
ON CONFLICT (name) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at`,
		name, string(state)); err != nil {
		return fmt.Errorf("save probe state %s: %w", name, err)
	}
	return nil
}
