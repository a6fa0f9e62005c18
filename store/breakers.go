package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
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

// RecordBreakerTx feeds one outcome of an action of (handler, scope) to its breaker: a success
// closes it (and ends a trial); a failure counts, opens it after threshold consecutive failures,
// and re-opens it when the trial failed. It returns the breaker's state after the outcome.
func (s *Store) RecordBreakerTx(ctx context.Context, tx pgx.Tx, k BreakerKey, actionID int64, failed bool, threshold int, now time.Time) (string, error) {
	var state string
	var err error
	if !failed {
		err = tx.QueryRow(ctx, `
INSERT INTO breakers (handler, scope, state, failures, updated_at) VALUES ($1, $2, 'closed', 0, $3)
ON CONFLICT (handler, scope) DO UPDATE
   SET state = CASE WHEN breakers.state = 'half_open' AND breakers.trial_action_id = $4 THEN 'closed'
                    WHEN breakers.state = 'closed' THEN 'closed' ELSE breakers.state END,
       failures = CASE WHEN breakers.state IN ('closed', 'half_open') AND (breakers.state = 'closed' OR breakers.trial_action_id = $4) THEN 0 ELSE breakers.failures END,
       trial_action_id = CASE WHEN breakers.trial_action_id = $4 THEN NULL ELSE breakers.trial_action_id END,
       opened_at = CASE WHEN breakers.state = 'half_open' AND breakers.trial_action_id = $4 THEN NULL ELSE breakers.opened_at END,
       updated_at = $3
RETURNING state`, k.Handler, k.Scope, now, actionID).Scan(&state)
	} else {
		err = tx.QueryRow(ctx, `
INSERT INTO breakers (handler, scope, state, failures, opened_at, updated_at)
VALUES ($1, $2, CASE WHEN $5 <= 1 THEN 'open' ELSE 'closed' END, 1, CASE WHEN $5 <= 1 THEN $3::timestamptz END, $3)
ON CONFLICT (handler, scope) DO UPDATE
   SET state = CASE WHEN breakers.state = 'half_open' AND breakers.trial_action_id = $4 THEN 'open'
                    WHEN breakers.state = 'closed' AND breakers.failures + 1 >= $5 THEN 'open'
                    ELSE breakers.state END,
       opened_at = CASE WHEN (breakers.state = 'half_open' AND breakers.trial_action_id = $4)
                           OR (breakers.state = 'closed' AND breakers.failures + 1 >= $5) THEN $3 ELSE breakers.opened_at END,
       failures = breakers.failures + 1,
       trial_action_id = CASE WHEN breakers.trial_action_id = $4 THEN NULL ELSE breakers.trial_action_id END,
       updated_at = $3
RETURNING state`, k.Handler, k.Scope, now, actionID, threshold).Scan(&state)
	}
	if err != nil {
		return "", fmt.Errorf("record breaker outcome: %w", err)
	}
	return state, nil
}

// ResetBreaker closes a breaker by hand and audits it.
func (s *Store) ResetBreaker(ctx context.Context, k BreakerKey, by string, now time.Time) (bool, error) {
	var ok bool
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE breakers SET state = 'closed', failures = 0, opened_at = NULL, trial_action_id = NULL, updated_at = $3
 WHERE handler = $1 AND scope = $2`, k.Handler, k.Scope, now)
		if err != nil {
			return err
		}
		ok = tag.RowsAffected() == 1
		if !ok {
			return nil
		}
		return s.AuditTx(ctx, tx, []AuditInsert{{At: now, Kind: AuditControl, Actor: by, Reason: "breaker_reset",
			Detail: map[string]any{"handler": k.Handler, "scope": k.Scope}}})
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
