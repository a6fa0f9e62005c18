package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/responder-sre/responder/store"
)

// Approvals decides approval decisions (the approval guard's policy) and has the store record the
// ones it accepts. The store records in one transaction that locks the action and calls the policy
// on the locked row, so replays, second approvals and replicas receiving the same decision end
// with the action decided once (store.RecordDecision).
//
// The policy:
//   - approvals.ttl: a decision later than TTL after the action was planned is refused with
//     store.ErrNotAwaiting (the executor expires the action);
//   - who may decide: an action that needs more than one approval (two-person rule) refuses an
//     anonymous approver ("" or "api", the shared admin token without a name) with
//     store.ErrAnonymousApprover, since two-person approval needs two names. Who is an approver
//     at all is the caller's to check (the API's admin token, slack.approvers).
type Approvals struct {
	Store DecisionStore
	// TTL is approvals.ttl (0: decisions never come too late).
	TTL time.Duration
	// Now is the clock decisions are made at (default time.Now).
	Now func() time.Time
}

// Decide records approver's decision (store.DecisionApprove or store.DecisionDeny) on an action
// awaiting approval, received via ("api", "slack"), if the policy accepts it. A decision on an
// action that is no longer awaiting approval returns store.ErrNotAwaiting (with the action) unless
// it is a replay; an unknown action store.ErrNotFound.
func (a Approvals) Decide(ctx context.Context, actionID int64, approver, decision, via string) (store.DecisionResult, error) {
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	return a.Store.RecordDecision(ctx, actionID, approver, decision, via, now(), a.policy)
}

// policy judges one decision on the locked action (see Approvals).
func (a Approvals) policy(d store.DecisionCheck) error {
	if a.TTL > 0 && d.Action.CreatedAt.Before(d.At.Add(-a.TTL)) {
		return fmt.Errorf("%w: its approval window (approvals.ttl %s) has passed", store.ErrNotAwaiting, a.TTL)
	}
	if d.Required > 1 && d.Decision == store.DecisionApprove && anonymous(d.Approver) {
		return store.ErrAnonymousApprover
	}
	return nil
}

// anonymous reports whether an approver has no name: the API's shared admin token without a
// "by", or nobody.
func anonymous(approver string) bool { return approver == "" || approver == "api" }

// Decide records an approver's decision on an action awaiting approval under the approval policy
// (Approvals, with Options.ApprovalTTL and the engine's clock). The API and Slack decide through
// it; they wake the executor (Kick) afterwards.
func (e *Engine) Decide(ctx context.Context, actionID int64, approver, decision, via string) (store.DecisionResult, error) {
	return Approvals{Store: e.st, TTL: e.cur().ApprovalTTL, Now: e.now}.Decide(ctx, actionID, approver, decision, via)
}
