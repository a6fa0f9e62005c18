package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/responder-sre/responder/vocab"
)

// Breaker states.
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half_open"
)

// Breaker is the circuit breaker of one (handler, scope).
type Breaker struct {
	Handler       string     `json:"handler"`
	Scope         string     `json:"scope"`
	State         string     `json:"state"`
	Failures      int        `json:"failures"`
	OpenedAt      *time.Time `json:"opened_at"`
	TrialActionID *int64     `json:"trial_action_id"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

// BreakerKey names a breaker.
type BreakerKey struct{ Handler, Scope string }

const breakerCols = `handler, scope, state, failures, opened_at, trial_action_id, updated_at`

func scanBreaker(r pgx.Row, b *Breaker) error {
	return r.Scan(&b.Handler, &b.Scope, &b.State, &b.Failures, &b.OpenedAt, &b.TrialActionID, &b.UpdatedAt)
}

// BreakersTx returns the breakers of keys that exist (a missing one is closed).
func (s *Store) BreakersTx(ctx context.Context, tx pgx.Tx, keys []BreakerKey) (map[BreakerKey]Breaker, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	hs, ss := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		hs[i], ss[i] = k.Handler, k.Scope
	}
	rows, err := tx.Query(ctx, `SELECT `+breakerCols+` FROM breakers b
  JOIN unnest($1::text[], $2::text[]) AS u(h, s) ON b.handler = u.h AND b.scope = u.s`, hs, ss)
	if err != nil {
		return nil, fmt.Errorf("read breakers: %w", err)
	}
	out := map[BreakerKey]Breaker{}
	var b Breaker
	_, err = pgx.ForEachRow(rows, []any{&b.Handler, &b.Scope, &b.State, &b.Failures, &b.OpenedAt, &b.TrialActionID, &b.UpdatedAt}, func() error {
		out[BreakerKey{b.Handler, b.Scope}] = b
		return nil
	})
	return out, err
}

// ClaimBreakerTrialTx makes actionID the one half-open trial of an open breaker whose open period
// ended by now (compare-and-set: exactly one replica wins). It reports whether this action got it.
func (s *Store) ClaimBreakerTrialTx(ctx context.Context, tx pgx.Tx, k BreakerKey, openFor time.Duration, now time.Time, actionID int64) (bool, error) {
	tag, err := tx.Exec(ctx, `
UPDATE breakers SET state = 'half_open', trial_action_id = $3, updated_at = $4
 WHERE handler = $1 AND scope = $2
   AND ((state = 'open' AND opened_at <= $5) OR (state = 'half_open' AND trial_action_id IS NULL))`,
		k.Handler, k.Scope, actionID, now, now.Add(-openFor))
	if err != nil {
		return false, fmt.Errorf("claim breaker trial: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// BreakerMachine is the shared state of one breaker's gobreaker state machine, bound to a
// transaction: it implements gobreaker.SharedDataStore (without importing it) over a copy in
// memory. BreakerMachineTx reads the row once (creating it if needed) and locks it FOR UPDATE, so
// the read-modify-write of the state is serialised across replicas until the transaction ends;
// gobreaker then only reads and writes the copy, and Flush writes it back.
//
// None of its SharedDataStore methods can fail, on purpose: gobreaker v2.4.0's
// NewDistributedCircuitBreaker, when the store fails after its lock is taken, returns a nil breaker
// and then calls unlock on it in a deferred function, a nil pointer dereference that ended the
// whole process when the database went away (issue 13; TestGobreakerPanicsOnAFailingStore in
// engine reproduces it). Every database error is met here, in BreakerMachineTx and Flush, where it
// is an ordinary error.
type BreakerMachine struct {
	tx    pgx.Tx
	key   BreakerKey
	row   Breaker
	data  []byte
	dirty bool
}

// BreakerMachineTx returns the machine of k in tx, with its row locked and read.
func (s *Store) BreakerMachineTx(ctx context.Context, tx pgx.Tx, k BreakerKey, now time.Time) (*BreakerMachine, error) {
	if _, err := tx.Exec(ctx, `INSERT INTO breakers (handler, scope, state, updated_at) VALUES ($1, $2, 'closed', $3)
ON CONFLICT (handler, scope) DO NOTHING`, k.Handler, k.Scope, now); err != nil {
		return nil, fmt.Errorf("create breaker: %w", err)
	}
	m := &BreakerMachine{tx: tx, key: k}
	b := &m.row
	err := tx.QueryRow(ctx, `SELECT `+breakerCols+`, machine FROM breakers WHERE handler = $1 AND scope = $2 FOR UPDATE`,
		k.Handler, k.Scope).Scan(&b.Handler, &b.Scope, &b.State, &b.Failures, &b.OpenedAt, &b.TrialActionID, &b.UpdatedAt, &m.data)
	if err != nil {
		return nil, fmt.Errorf("lock breaker: %w", err)
	}
	return m, nil
}

// Row is the breaker row as read under the lock.
func (m *BreakerMachine) Row() Breaker { return m.row }

// Lock is a no-op: BreakerMachineTx holds the row lock.
func (m *BreakerMachine) Lock(string) error { return nil }

// Unlock is a no-op: the row lock ends with the transaction.
func (m *BreakerMachine) Unlock(string) error { return nil }

// GetData returns the machine's state (nil before the first outcome). It never fails.
func (m *BreakerMachine) GetData(string) ([]byte, error) { return m.data, nil }

// SetData keeps the machine's state for Flush. It never fails.
func (m *BreakerMachine) SetData(_ string, data []byte) error {
	m.data, m.dirty = data, true
	return nil
}

// Flush writes the machine's state back to its row if it changed.
func (m *BreakerMachine) Flush(ctx context.Context) error {
	if !m.dirty {
		return nil
	}
	if _, err := m.tx.Exec(ctx, `UPDATE breakers SET machine = $3 WHERE handler = $1 AND scope = $2`,
		m.key.Handler, m.key.Scope, m.data); err != nil {
		return fmt.Errorf("store breaker machine: %w", err)
	}
	m.dirty = false
	return nil
}

// SetBreakerTx records a breaker's state as its machine decided it: opened_at is set when it
// opens (and kept while it stays open), cleared otherwise; the half-open trial ends with any
// transition.
func (s *Store) SetBreakerTx(ctx context.Context, tx pgx.Tx, k BreakerKey, state string, failures int, now time.Time) error {
	_, err := tx.Exec(ctx, `
UPDATE breakers SET
       opened_at = CASE WHEN $3 = 'open' AND state = 'open' THEN opened_at WHEN $3 = 'open' THEN $5::timestamptz END,
       trial_action_id = CASE WHEN $3 = state THEN trial_action_id END,
       state = $3, failures = $4, updated_at = $5
 WHERE handler = $1 AND scope = $2`, k.Handler, k.Scope, state, failures, now)
	if err != nil {
		return fmt.Errorf("record breaker state: %w", err)
	}
	return nil
}

// ResetBreaker closes a breaker by hand and audits it with who (by) and through what (via).
func (s *Store) ResetBreaker(ctx context.Context, k BreakerKey, by, via string, now time.Time) (bool, error) {
	var ok bool
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE breakers SET state = 'closed', failures = 0, opened_at = NULL, trial_action_id = NULL, machine = NULL, updated_at = $3
 WHERE handler = $1 AND scope = $2`, k.Handler, k.Scope, now)
		if err != nil {
			return err
		}
		ok = tag.RowsAffected() == 1
		if !ok {
			return nil
		}
		return s.AuditTx(ctx, tx, []AuditInsert{{At: now, Kind: AuditControl, Actor: by, Reason: string(vocab.ReasonBreakerReset),
			Detail: map[string]any{"handler": k.Handler, "scope": k.Scope, "via": via}}})
	})
	return ok, err
}

// Breakers lists every breaker.
func (s *Store) Breakers(ctx context.Context) ([]Breaker, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+breakerCols+` FROM breakers ORDER BY handler, scope`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Breaker, error) {
		var b Breaker
		err := scanBreaker(r, &b)
		return b, err
	})
}

// ReleaseBreakerTrialTx frees the half-open trial slot held by actionID (its outcome said nothing
// about the target: its replica died, a PDB refused it), so another action can be the trial.
func (s *Store) ReleaseBreakerTrialTx(ctx context.Context, tx pgx.Tx, k BreakerKey, actionID int64) error {
	_, err := tx.Exec(ctx, `UPDATE breakers SET trial_action_id = NULL WHERE handler = $1 AND scope = $2 AND trial_action_id = $3`,
		k.Handler, k.Scope, actionID)
	return err
}
