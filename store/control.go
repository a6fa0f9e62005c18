package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/responder-sre/responder/vocab"
)

// PauseState is the kill switch.
type PauseState struct {
	Paused bool       `json:"paused"`
	By     string     `json:"by"`
	Reason string     `json:"reason"`
	At     time.Time  `json:"at"`
	Until  *time.Time `json:"until"`
}

// Active reports whether the switch is on at now (a pause with an end lapses by itself).
func (p PauseState) Active(now time.Time) bool {
	return p.Paused && (p.Until == nil || now.Before(*p.Until))
}

// pauseLock is the advisory lock that orders claims and pauses. Advisory locks queue fairly: a
// waiting pause is not starved by claims that overlap back to back (row share locks would be).
const pauseLock = 7_202_611_220

// PauseTx reads the kill switch under a shared transaction lock: a pause waits for the claims in
// flight, and every claim after its commit sees it.
func (s *Store) PauseTx(ctx context.Context, tx pgx.Tx) (PauseState, error) {
	var p PauseState
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, int64(pauseLock)); err != nil {
		return p, fmt.Errorf("kill switch lock: %w", err)
	}
	err := tx.QueryRow(ctx, `SELECT paused, by, reason, at, until FROM pause WHERE id = 1`).Scan(&p.Paused, &p.By, &p.Reason, &p.At, &p.Until)
	if err != nil {
		return p, fmt.Errorf("read kill switch: %w", err)
	}
	return p, nil
}

// Pause reads the kill switch.
func (s *Store) Pause(ctx context.Context) (PauseState, error) {
	var p PauseState
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		var err error
		p, err = s.PauseTx(ctx, tx)
		return err
	})
	return p, err
}

// SetPause turns the kill switch on (until may be nil: until resumed) or off, and audits it with
// who (by) and through what (via: web, api, slack).
func (s *Store) SetPause(ctx context.Context, paused bool, by, via, reason string, at time.Time, until *time.Time) (PauseState, error) {
	p := PauseState{Paused: paused, By: by, Reason: reason, At: at, Until: until}
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pauseLock)); err != nil {
			return fmt.Errorf("kill switch lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE pause SET paused = $1, by = $2, reason = $3, at = $4, until = $5, version = $6 WHERE id = 1`,
			paused, by, reason, at, until, s.version); err != nil {
			return fmt.Errorf("set kill switch: %w", err)
		}
		kind := vocab.ReasonResume
		if paused {
			kind = vocab.ReasonPause
		}
		detail := map[string]any{"reason": reason, "via": via}
		if until != nil {
			detail["until"] = until
		}
		return s.AuditTx(ctx, tx, []AuditInsert{{At: at, Kind: AuditControl, Actor: by, Reason: string(kind), Detail: detail}})
	})
	return p, err
}

// Approval decisions.
const (
	DecisionApprove = "approve"
	DecisionDeny    = "deny"
)

// ErrNotAwaiting is returned when a decision arrives for an action that is not waiting for one.
var ErrNotAwaiting = errors.New("the action is not awaiting approval")

// ErrAnonymousApprover is returned when an action needing several approvers gets an unnamed one.
var ErrAnonymousApprover = errors.New("this action needs distinct named approvers: say who approves")

// DecisionResult says what a decision did.
type DecisionResult struct {
	Action *Action
	// Replay is true when this approver had already decided the same way: nothing changed.
	Replay bool
}

// DecisionCheck is what an approval policy judges a decision by: the action as RecordDecision
// found it under its row lock, awaiting approval, with the approvals it needs.
type DecisionCheck struct {
	Action   Action
	Required int // approvals_required: distinct approvals the action needs (at least 1)
	Approver string
	Decision string
	At       time.Time
}

// RecordDecision records an approver's decision on an action awaiting approval, in one
// transaction that locks the action: replays, second approvals and replicas receiving the same
// decision all end with the action decided once. A deny ends the action (denied) and skips its
// later steps; enough distinct approvals make it approved, and the executor runs it. A decision on
// an action that is no longer awaiting approval returns ErrNotAwaiting (with the action), unless it
// is a replay; an unknown action returns ErrNotFound.
//
// The store records; it does not decide: policy (the engine's approval policy: approvals.ttl, who
// may approve) is called on the locked row before anything is written, and an error it returns
// refuses the decision (returned as is, with the action). A nil policy accepts every decision.
func (s *Store) RecordDecision(ctx context.Context, actionID int64, approver, decision, via string, at time.Time,
	policy func(DecisionCheck) error) (DecisionResult, error) {
	var res DecisionResult
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		res = DecisionResult{}
		var a Action
		var required int
		if err := scanAction(tx.QueryRow(ctx, `SELECT `+actionCols+`, a.approvals_required FROM actions a WHERE a.id = $1 FOR UPDATE`, actionID), &a, &required); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		res.Action = &a
		var prev string
		err := tx.QueryRow(ctx, `SELECT decision FROM approvals WHERE action_id = $1 AND approver = $2`, actionID, approver).Scan(&prev)
		switch {
		case err == nil && prev == decision:
			res.Replay = true
			return nil
		case err == nil:
			return fmt.Errorf("%w: %s already decided %s", ErrNotAwaiting, approver, prev)
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		if a.State != vocab.StateAwaitingApproval {
			return ErrNotAwaiting
		}
		if policy != nil {
			if err := policy(DecisionCheck{Action: a, Required: max(required, 1), Approver: approver, Decision: decision, At: at}); err != nil {
				return err
			}
		}
		return s.recordDecisionTx(ctx, tx, &a, required, approver, decision, via, at)
	})
	return res, err
}

// recordDecisionTx writes a decision RecordDecision accepted on the locked action a, and the
// action's new state when the decision settles it.
func (s *Store) recordDecisionTx(ctx context.Context, tx pgx.Tx, a *Action, required int, approver, decision, via string, at time.Time) error {
	actionID := a.ID
	if _, err := tx.Exec(ctx, `INSERT INTO approvals (action_id, approver, decision, via, at, version) VALUES ($1, $2, $3, $4, $5, $6)`,
		actionID, approver, decision, via, at, s.version); err != nil {
		return fmt.Errorf("record decision: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT approver FROM approvals WHERE action_id = $1 AND decision = 'approve' ORDER BY at, approver`, actionID)
	if err != nil {
		return err
	}
	approvers, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	reason := fmt.Sprintf("approval %d of %d", len(approvers), max(required, 1))
	switch {
	case decision == DecisionDeny:
		a.State, a.Reason, a.ApprovedBy, a.Error = vocab.StateDenied, vocab.ReasonDenied, strings.Join(approvers, ","), "denied by "+approver
		reason = string(vocab.ReasonDenied)
		if _, err := tx.Exec(ctx, `UPDATE actions SET state = `+lit(vocab.StateDenied)+`, reason = `+lit(vocab.ReasonDenied)+`, approved_by = $2, error = $3, finished_at = $4 WHERE id = $1`,
			actionID, a.ApprovedBy, a.Error, at); err != nil {
			return err
		}
		if err := s.CancelLaterStepsTx(ctx, tx, a.IncidentID, a.Phase, a.Step, at); err != nil {
			return err
		}
	case len(approvers) >= max(required, 1):
		a.State, a.ApprovedBy = vocab.StateApproved, strings.Join(approvers, ",")
		reason = string(vocab.StateApproved)
		if _, err := tx.Exec(ctx, `UPDATE actions SET state = `+lit(vocab.StateApproved)+`, approved_by = $2 WHERE id = $1`, actionID, a.ApprovedBy); err != nil {
			return err
		}
	}
	return s.AuditTx(ctx, tx, []AuditInsert{{At: at, IncidentID: a.IncidentID, ActionID: actionID, Kind: AuditApproval,
		Actor: approver, Reason: reason, RuleHash: a.RuleHash, Detail: map[string]any{"decision": decision, "via": via}}})
}

// PendingApprovals counts actions awaiting approval.
func (s *Store) PendingApprovals(ctx context.Context) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM actions WHERE state = `+lit(vocab.StateAwaitingApproval)).Scan(&n)
	return n, err
}
