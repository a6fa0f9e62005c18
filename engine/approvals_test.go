package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// Engine.Decide applies the approval policy (who may approve, approvals.ttl) on the row the real
// store locks and records: the API's and Slack's path.
func TestEngineDecideAppliesThePolicy(t *testing.T) {
	h := newHarness(t, approvalRule, func(o *engine.Options) { o.ApprovalTTL = 15 * time.Minute })
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "a"}))
	h.settle()
	id := h.actionID("actions", 0)
	ctx := context.Background()
	if _, err := h.eng.Decide(ctx, id, "api", store.DecisionApprove, "api"); !errors.Is(err, store.ErrAnonymousApprover) {
		t.Fatalf("anonymous approval of a two-person action: %v", err)
	}
	if res, err := h.eng.Decide(ctx, id, "api:alice", store.DecisionApprove, "api"); err != nil || res.Action.State != vocab.StateAwaitingApproval {
		t.Fatalf("first approval: %+v %v", res, err)
	}
	if res, err := h.eng.Decide(ctx, id, "api:alice", store.DecisionApprove, "api"); err != nil || !res.Replay {
		t.Fatalf("the same approver again must be a replay: %+v %v", res, err)
	}
	if res, err := h.eng.Decide(ctx, id, "slack:U2", store.DecisionApprove, "slack"); err != nil || res.Action.State != vocab.StateApproved {
		t.Fatalf("second approval: %+v %v", res, err)
	}
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix succeeded ", "actions/1 test.fix succeeded ")
	if _, err := h.eng.Decide(ctx, id, "api:carol", store.DecisionDeny, "api"); !errors.Is(err, store.ErrNotAwaiting) {
		t.Fatalf("a decision after the fact: %v, want ErrNotAwaiting", err)
	}
	if _, err := h.eng.Decide(ctx, 1<<40, "api:carol", store.DecisionDeny, "api"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an unknown action: %v, want ErrNotFound", err)
	}
}

func TestEngineDecideAfterTheApprovalTTL(t *testing.T) {
	h := newHarness(t, approvalRule, func(o *engine.Options) { o.ApprovalTTL = 15 * time.Minute })
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "a"}))
	h.settle()
	id := h.actionID("actions", 0)
	h.clock.Add(20 * time.Minute) // the executor has not expired it yet
	_, err := h.eng.Decide(context.Background(), id, "api:alice", store.DecisionApprove, "api")
	if !errors.Is(err, store.ErrNotAwaiting) || !strings.Contains(err.Error(), "approvals.ttl 15m0s") {
		t.Fatalf("approval after approvals.ttl: %v, want ErrNotAwaiting", err)
	}
	if n := h.count(`SELECT count(*) FROM approvals`); n != 0 {
		t.Fatalf("a refused decision was recorded: %d approvals", n)
	}
}
