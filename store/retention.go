package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/responder-sre/responder/vocab"
)

// maxExpiredPerPass bounds how many unreplayed dead letters one retention pass lists (and then
// deletes); the rest wait for the next pass, listed in their turn.
const maxExpiredPerPass = 10_000

// Abandoned is an open incident retention closed.
type Abandoned struct {
	ID         int64
	Rule       string
	PrevState  vocab.IncidentState
	LastSeenAt time.Time
}

// RetentionReport says what one retention pass did.
type RetentionReport struct {
	Abandoned []Abandoned
	// Expired are the unreplayed dead letters the pass deleted (after handing them to the caller;
	// a concurrent pass may have handed over the same ones, but only one deletes each).
	Expired []DeadLetter
	// Deleted counts every row deleted, Expired included.
	Deleted int64
}

// Retain applies safety.retention: cutoff = now - retention.
//   - Open incidents (pending, firing, suppressed) last heard of before cutoff are closed as
//     abandoned: their resolution was lost. Their actions not started yet are cancelled (skipped,
//     reason cancelled) and their timers deleted (no more re-checks); each is audited.
//   - Dead letters older than cutoff are deleted, but an unreplayed one never silently: the
//     unreplayed ones are handed to beforeDelete (to count and log them) and audited first.
//   - DeleteBefore's tables.
//
// Safe on several replicas at once: every step is idempotent and skips locked rows.
func (s *Store) Retain(ctx context.Context, cutoff, now time.Time, beforeDelete func([]DeadLetter)) (RetentionReport, error) {
	var rep RetentionReport
	var err error
	if rep.Abandoned, err = s.abandonIncidents(ctx, cutoff, now); err != nil {
		return rep, err
	}
	var n int64
	rep.Expired, n, err = s.expireDeadLetters(ctx, cutoff, now, beforeDelete)
	rep.Deleted += n
	if err != nil {
		return rep, err
	}
	n, err = s.DeleteBefore(ctx, cutoff)
	rep.Deleted += n
	return rep, err
}

// abandonIncidents closes the open incidents last seen before cutoff.
func (s *Store) abandonIncidents(ctx context.Context, cutoff, now time.Time) ([]Abandoned, error) {
	var out []Abandoned
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
WITH gone AS (
    SELECT id, state FROM incidents
     WHERE state IN `+sqlUnended+` AND last_seen_at < $1
     ORDER BY id
     FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE incidents i SET state = `+lit(vocab.IncidentAbandoned)+`, resolved_at = $2, updated_at = $2
  FROM gone
 WHERE i.id = gone.id
RETURNING i.id, i.rule, gone.state, i.last_seen_at`, cutoff, now)
		if err != nil {
			return fmt.Errorf("abandon incidents: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Abandoned, error) {
			var a Abandoned
			err := r.Scan(&a.ID, &a.Rule, &a.PrevState, &a.LastSeenAt)
			return a, err
		})
		if err != nil || len(out) == 0 {
			return err
		}
		ids := make([]int64, len(out))
		audit := make([]AuditInsert, len(out))
		for i, a := range out {
			ids[i] = a.ID
			audit[i] = AuditInsert{At: now, IncidentID: a.ID, Kind: AuditIncident, Actor: "retention", Reason: string(vocab.ReasonAbandoned),
				Detail: map[string]any{"previous_state": a.PrevState, "last_seen_at": a.LastSeenAt}}
		}
		if _, err := tx.Exec(ctx, `
UPDATE actions SET state = `+lit(vocab.StateSkipped)+`, reason = `+lit(vocab.ReasonCancelled)+`, finished_at = $2
 WHERE incident_id = ANY($1) AND state IN `+sqlWaiting, ids, now); err != nil {
			return fmt.Errorf("abandon incidents: cancel actions: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM timers WHERE incident_id = ANY($1)`, ids); err != nil {
			return fmt.Errorf("abandon incidents: delete timers: %w", err)
		}
		return s.AuditTx(ctx, tx, audit)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// expireDeadLetters deletes the dead letters older than cutoff. The unreplayed ones among them
// are read first, handed to beforeDelete, audited, and only then deleted (by id: one that arrives
// or is replayed meanwhile is not deleted unseen).
func (s *Store) expireDeadLetters(ctx context.Context, cutoff, now time.Time, beforeDelete func([]DeadLetter)) ([]DeadLetter, int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+deadLetterCols+` FROM dead_letters
 WHERE at < $1 AND replayed_at IS NULL ORDER BY id LIMIT $2`, cutoff, maxExpiredPerPass)
	if err != nil {
		return nil, 0, fmt.Errorf("retention: list expired dead letters: %w", err)
	}
	expired, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetter, error) {
		var d DeadLetter
		err := scanDeadLetter(r, &d)
		return d, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("retention: list expired dead letters: %w", err)
	}
	if len(expired) > 0 && beforeDelete != nil {
		beforeDelete(expired)
	}
	ids := make([]int64, len(expired))
	for i, d := range expired {
		ids[i] = d.ID
	}
	var deleted []int64
	var mine []DeadLetter
	err = s.InTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
DELETE FROM dead_letters WHERE id = ANY($1) OR (at < $2 AND replayed_at IS NOT NULL) RETURNING id`, ids, cutoff)
		if err != nil {
			return err
		}
		if deleted, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
			return err
		}
		// Report and audit only what this pass deleted: a concurrent pass (another replica) may
		// have been first, and it audits those.
		mine = slices.DeleteFunc(slices.Clone(expired), func(d DeadLetter) bool { return !slices.Contains(deleted, d.ID) })
		audit := make([]AuditInsert, len(mine))
		for i, d := range mine {
			audit[i] = AuditInsert{At: now, Kind: AuditDeadLetter, Actor: "retention", Reason: DeadLetterExpired,
				Detail: map[string]any{"dead_letter_id": d.ID, "msg_id": d.MsgID, "reason": d.Reason, "error": d.Error,
					"created_at": d.At, "bytes": d.Size}}
		}
		return s.AuditTx(ctx, tx, audit)
	})
	if err != nil {
		return nil, 0, fmt.Errorf("retention: delete dead letters: %w", err)
	}
	return mine, int64(len(deleted)), nil
}
