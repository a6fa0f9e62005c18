package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// AuditReplayed is the audit (and refusal) reason of a Slack request seen before.
const AuditReplayed = "replayed"

// SeenSlackRequest records a verified Slack request by its signature until expires and reports
// whether it was seen before (by any replica): a replay. Rows past their expiry are removed in the
// same statement, so the cache holds only the requests of the last few minutes.
func (s *Store) SeenSlackRequest(ctx context.Context, signature, endpoint string, at, expires time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
WITH expired AS (DELETE FROM slack_requests WHERE expires_at < $3)
INSERT INTO slack_requests (signature, endpoint, received_at, expires_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (signature) DO NOTHING`, signature, endpoint, at, expires)
	if err != nil {
		return false, fmt.Errorf("slack replay cache: %w", err)
	}
	return tag.RowsAffected() == 0, nil
}

// SlackRequestsCached returns how many requests the replay cache holds (for tests and status).
func (s *Store) SlackRequestsCached(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM slack_requests`).Scan(&n); err != nil {
		return 0, fmt.Errorf("slack replay cache: %w", err)
	}
	return n, nil
}

// ApproverDecision returns the decision approver recorded on an action ("" when none) and the
// action; ErrNotFound when there is no such action.
func (s *Store) ApproverDecision(ctx context.Context, actionID int64, approver string) (string, *Action, error) {
	a, err := s.GetAction(ctx, actionID)
	if err != nil {
		return "", nil, err
	}
	var decision string
	err = s.pool.QueryRow(ctx, `SELECT decision FROM approvals WHERE action_id = $1 AND approver = $2`, actionID, approver).Scan(&decision)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", a, nil
	}
	if err != nil {
		return "", a, fmt.Errorf("decision of %s on action %d: %w", approver, actionID, err)
	}
	return decision, a, nil
}
