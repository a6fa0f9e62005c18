package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/vocab"
)

// Rule-level verify (issue 19): the last step of a rule with `verify` goes running → verifying
// when its handler succeeded (VerifyActionTx), with its deadline in verify_deadline. Whoever locks
// the row settles it (ClaimVerifyingTx, FinishVerifyingTx): succeeded when the rule's condition
// held, failed (not_recovered) at the deadline. The row is the timer: it survives restarts, and of
// two replicas only the one that locked it first changes it.

// VerifyActionTx moves a running action owner holds to verifying until deadline, with its
// handler's result and result fields (nil: none), and frees its lease. It reports false when the
// action is no longer owner's (another replica expired its lease and recorded it).
func (s *Store) VerifyActionTx(ctx context.Context, tx pgx.Tx, owner string, id int64, deadline time.Time, result string, fields map[string]any) (bool, error) {
	var rf *string // NULL: no result fields
	if fields != nil {
		b, err := json.Marshal(fields)
		if err != nil {
			return false, fmt.Errorf("action %d result fields: %w", id, err)
		}
		f := string(b)
		rf = &f
	}
	tag, err := tx.Exec(ctx, `
UPDATE actions SET state = `+lit(vocab.StateVerifying)+`, verify_deadline = $3, result = $4, result_fields = $5::jsonb,
       reason = '', error = '', lease_until = NULL
 WHERE id = $1 AND state = `+lit(vocab.StateRunning)+` AND owner = $2`, id, owner, deadline, result, rf)
	if err != nil {
		return false, fmt.Errorf("verify action %d: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ClaimVerifyingTx locks up to limit verifying actions that are to be judged at now (FOR UPDATE
// SKIP LOCKED: another replica judging them skips them): those whose deadline passed, those whose
// incident resolved, and every one of the rules named (a batch of alerts came in: their verify
// `when` may hold now). Deadlines first.
func (s *Store) ClaimVerifyingTx(ctx context.Context, tx pgx.Tx, now time.Time, rules []string, limit int) ([]Claimed, error) {
	if rules == nil {
		rules = []string{}
	}
	rows, err := tx.Query(ctx, `
SELECT `+actionCols+claimedCols+`
  FROM actions a JOIN incidents i ON i.id = a.incident_id
 WHERE a.state = `+lit(vocab.StateVerifying)+`
   AND (a.verify_deadline <= $1 OR i.state = `+lit(vocab.IncidentResolved)+` OR a.rule = ANY($3::text[]))
 ORDER BY a.verify_deadline, a.id
 LIMIT $2
 FOR UPDATE OF a SKIP LOCKED`, now, limit, rules)
	if err != nil {
		return nil, fmt.Errorf("claim verifying actions: %w", err)
	}
	return collectClaimed(rows)
}

// FinishVerifyingTx records the outcomes of verifying actions (succeeded, or failed with reason
// not_recovered). Only an action still verifying is changed; it returns the ids it changed.
func (s *Store) FinishVerifyingTx(ctx context.Context, tx pgx.Tx, os []Outcome) ([]int64, error) {
	if len(os) == 0 {
		return nil, nil
	}
	n := len(os)
	ids := make([]int64, n)
	states, reasons, errs := make([]string, n), make([]string, n), make([]string, n)
	ats := make([]time.Time, n)
	for i, o := range os {
		ids[i], states[i], reasons[i], errs[i], ats[i] = o.ID, string(o.State), string(o.Reason), o.Error, o.At
	}
	rows, err := tx.Query(ctx, `
UPDATE actions a
   SET state = u.state, reason = u.reason, error = u.err, finished_at = u.at
  FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS u(id, state, reason, err, at)
 WHERE a.id = u.id AND a.state = `+lit(vocab.StateVerifying)+`
RETURNING a.id`, ids, states, reasons, errs, ats)
	if err != nil {
		return nil, fmt.Errorf("record verify outcomes: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}
