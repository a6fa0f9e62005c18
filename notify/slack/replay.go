package slack

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// ReplayMargin is how long past MaxSkew a request's signature stays in the replay cache: replicas
// whose clocks differ by up to this much still recognise a replay.
const ReplayMargin = time.Minute

// inboundRequest is a verified request from Slack: its form and what identifies it.
type inboundRequest struct {
	endpoint   string
	form       url.Values
	signature  string    // X-Slack-Signature: an HMAC of the timestamp and the body
	sentAt     time.Time // X-Slack-Request-Timestamp
	remoteAddr string
}

// newInboundRequest describes r, whose signature Verify accepted (so its headers parse).
func newInboundRequest(endpoint string, r *http.Request, form url.Values) inboundRequest {
	ts, _ := strconv.ParseInt(r.Header.Get("X-Slack-Request-Timestamp"), 10, 64)
	return inboundRequest{endpoint: endpoint, form: form, signature: r.Header.Get("X-Slack-Signature"),
		sentAt: time.Unix(ts, 0), remoteAddr: r.RemoteAddr}
}

// changesState reports whether a command verb has a side effect (and so is refused when replayed).
func changesState(verb string) bool {
	switch verb {
	case VerbApprove, VerbDeny, VerbPause, VerbResume:
		return true
	}
	return false
}

func decisionOf(verb string) string {
	switch verb {
	case VerbApprove:
		return store.DecisionApprove
	case VerbDeny:
		return store.DecisionDeny
	}
	return ""
}

// refuseReplay records a verified request that changes state in the replay cache the replicas
// share, and refuses it (true, with the answer for the user) when it was seen before: the same
// body with the same timestamp and signature, which only a replay produces (Slack signs every
// command and click afresh). A refusal is counted, logged and audited (reason replayed) and
// changes nothing. A decision replayed answers as a repeated decision does (a decision is
// idempotent for one approver), so a double click still reads "You had already approved".
//
// When the cache cannot be read the request is refused too: acting without knowing would let a
// replay through; the user sends the command again.
func (s *Slack) refuseReplay(ctx context.Context, req inboundRequest, user, what string, actionID int64, decision string) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	now := s.now()
	seen, err := s.st.SeenSlackRequest(ctx, req.signature, req.endpoint, now, req.sentAt.Add(MaxSkew+ReplayMargin))
	if err != nil {
		s.log.Warn("slack: could not check the replay cache", "endpoint", req.endpoint, "err", err)
		return ":warning: The request could not be recorded (database unavailable); try again.", true
	}
	if !seen {
		return "", false
	}
	s.m.refusals.WithLabelValues(ReasonReplayed).Inc()
	s.log.Warn("slack: refused a replayed request", "endpoint", req.endpoint, "user", user, "command", what,
		"action_id", actionID, "remote_addr", req.remoteAddr)
	if s.auditLimiter.Allow() {
		if err := s.st.Audit(ctx, store.AuditInsert{At: now, ActionID: actionID, Kind: store.AuditSlack, Actor: approver(user),
			Reason: ReasonReplayed, Detail: map[string]any{"endpoint": req.endpoint, "command": what, "remote_addr": req.remoteAddr,
				"sent_at": req.sentAt.UTC().Format(time.RFC3339)}}); err != nil {
			s.log.Warn("slack: could not audit a replayed request", "err", err)
		}
	}
	if decision != "" {
		if answer, ok := s.repeatedDecision(ctx, user, actionID, decision); ok {
			return answer, true
		}
	}
	return ":no_entry: This Slack request was already received: a replayed request is refused and changed nothing. " +
		"Type the command again to repeat it.", true
}

// repeatedDecision is the answer to a decision user already recorded on the action (false when
// they did not, or it cannot be read).
func (s *Slack) repeatedDecision(ctx context.Context, user string, actionID int64, decision string) (string, bool) {
	prev, a, err := s.st.ApproverDecision(ctx, actionID, approver(user))
	if err != nil || prev != decision {
		return "", false
	}
	return alreadyDecided(decision, fmt.Sprintf("action %d (%s on %s)", actionID, a.Handler, a.Target), a.State), true
}

func alreadyDecided(decision, what string, state vocab.State) string {
	return fmt.Sprintf(":repeat: You had already %s %s; nothing changed (it is %s).", pastTense(decision), what, state)
}
