package slack

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

func TestVerify(t *testing.T) {
	now := time.Now()
	body := "command=%2Fresponder&text=approve+42&user_id=U0APPROVER1"
	good := sign(testSecret, now, body)
	for _, tc := range []struct {
		name   string
		hdr    http.Header
		body   string
		reason string // "" = verified
	}{
		{"good", good, body, ""},
		{"wrong secret", sign("another-secret", now, body), body, ReasonBadSignature},
		{"one changed byte in the body", good, strings.Replace(body, "42", "43", 1), ReasonBadSignature},
		{"one changed byte in the signature", func() http.Header {
			h := good.Clone()
			s := []byte(h.Get("X-Slack-Signature"))
			s[len(s)-1] ^= 1
			h.Set("X-Slack-Signature", string(s))
			return h
		}(), body, ReasonBadSignature},
		{"missing v0= prefix", func() http.Header {
			h := good.Clone()
			h.Set("X-Slack-Signature", strings.TrimPrefix(h.Get("X-Slack-Signature"), "v0="))
			return h
		}(), body, ReasonBadSignature},
		{"v1 prefix", func() http.Header {
			h := good.Clone()
			h.Set("X-Slack-Signature", "v1="+strings.TrimPrefix(h.Get("X-Slack-Signature"), "v0="))
			return h
		}(), body, ReasonBadSignature},
		{"stale timestamp", sign(testSecret, now.Add(-MaxSkew-time.Minute), body), body, ReasonStaleTimestamp},
		{"future timestamp", sign(testSecret, now.Add(MaxSkew+time.Minute), body), body, ReasonStaleTimestamp},
		{"timestamp changed after signing", func() http.Header {
			h := good.Clone()
			h.Set("X-Slack-Request-Timestamp", strconv.FormatInt(now.Unix()-1, 10))
			return h
		}(), body, ReasonBadSignature},
		{"no signature", func() http.Header { h := good.Clone(); h.Del("X-Slack-Signature"); return h }(), body, ReasonMissingHeaders},
		{"no timestamp", func() http.Header { h := good.Clone(); h.Del("X-Slack-Request-Timestamp"); return h }(), body, ReasonMissingHeaders},
		{"timestamp not a number", func() http.Header { h := good.Clone(); h.Set("X-Slack-Request-Timestamp", "soon"); return h }(), body, ReasonStaleTimestamp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.hdr, []byte(tc.body), testSecret, now)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Verify = %v, want nil", err)
				}
				return
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Reason != tc.reason {
				t.Fatalf("Verify = %v, want reason %s", err, tc.reason)
			}
		})
	}
	if err := Verify(good, []byte(body), "", now); err == nil {
		t.Error("Verify with no secret configured succeeded")
	}
}

// A request that fails verification is a 401 with no side effect but an audit row.
func TestUnverifiedRequestsHaveNoEffect(t *testing.T) {
	e := newEnv(t)
	_, ids := e.incident("api-1", 1, vocab.StateAwaitingApproval)
	for _, h := range []http.Handler{e.s.CommandsHandler(), e.s.InteractionsHandler()} {
		for _, body := range []string{
			url.Values{"text": {"approve " + strconv.FormatInt(ids[0], 10)}, "user_id": {approverU1}}.Encode(),
			e.buttonPayload(approverU1, ButtonApprove, ids[0]),
		} {
			w := e.post(h, body, sign("not-the-secret", time.Now(), body))
			if w.Code != http.StatusUnauthorized {
				t.Errorf("badly signed request: %d, want 401", w.Code)
			}
			w = e.post(h, body, sign(testSecret, time.Now().Add(-10*time.Minute), body))
			if w.Code != http.StatusUnauthorized {
				t.Errorf("stale request: %d, want 401", w.Code)
			}
		}
	}
	if a := e.action(ids[0]); a.State != vocab.StateAwaitingApproval || e.approvals(ids[0]) != 0 {
		t.Errorf("an unverified request changed the action: %s, %d approvals", a.State, e.approvals(ids[0]))
	}
	if n := len(e.audit(store.AuditSlack, ReasonBadSignature)); n != 4 {
		t.Errorf("%d bad_signature audit rows, want 4", n)
	}
	if n := len(e.audit(store.AuditSlack, ReasonStaleTimestamp)); n != 4 {
		t.Errorf("%d stale_timestamp audit rows, want 4", n)
	}
	// Other methods and oversized bodies are refused before anything else.
	req := e.post(e.s.CommandsHandler(), "", http.Header{})
	if req.Code != http.StatusUnauthorized {
		t.Errorf("unsigned empty request: %d, want 401", req.Code)
	}
	big := strings.Repeat("a", MaxBodyBytes+1)
	if w := e.post(e.s.CommandsHandler(), big, sign(testSecret, time.Now(), big)); w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d, want 413", w.Code)
	}
}

func TestApproveByCommand(t *testing.T) {
	e := newEnv(t)
	_, ids := e.incident("api-2", 1, vocab.StateAwaitingApproval)
	id := strconv.FormatInt(ids[0], 10)

	got := e.command(approverU1, "approve "+id)
	if !strings.Contains(got, "You approved action "+id) {
		t.Errorf("answer = %q", got)
	}
	a := e.action(ids[0])
	if a.State != vocab.StateApproved || a.ApprovedBy != "slack:"+approverU1 {
		t.Errorf("action = %s by %q, want approved by slack:%s", a.State, a.ApprovedBy, approverU1)
	}
	if e.kicks.Load() == 0 {
		t.Error("the engine was not kicked after the approval")
	}
	var via string
	if err := e.st.Pool().QueryRow(context.Background(), `SELECT via FROM approvals WHERE action_id = $1`, ids[0]).Scan(&via); err != nil || via != "slack" {
		t.Errorf("approval via = %q (%v), want slack", via, err)
	}
	// Once decided, a deny is refused by Decide, and says so.
	if got := e.command(approverU3, "deny "+id+" too risky"); !strings.Contains(got, "not awaiting approval") {
		t.Errorf("deny after approval: %q", got)
	}
	if got := e.command(approverU1, "approve 999999"); !strings.Contains(got, "no action 999999") {
		t.Errorf("unknown action: %q", got)
	}
}

func TestDenyByCommandRecordsReason(t *testing.T) {
	e := newEnv(t)
	_, ids := e.incident("api-3", 1, vocab.StateAwaitingApproval, vocab.StatePlanned)
	id := strconv.FormatInt(ids[0], 10)
	if got := e.command(approverU3, "deny "+id+" not during the sale"); !strings.Contains(got, "You denied") {
		t.Errorf("answer = %q", got)
	}
	if a := e.action(ids[0]); a.State != vocab.StateDenied {
		t.Errorf("action is %s, want denied", a.State)
	}
	if a := e.action(ids[1]); a.State != vocab.StateSkipped || a.Reason != "cancelled" {
		t.Errorf("later step is %s/%s, want skipped/cancelled", a.State, a.Reason)
	}
	rs := e.audit(store.AuditApproval, "deny_reason")
	if len(rs) != 1 || rs[0].Detail["reason"] != "not during the sale" || rs[0].Actor != "slack:"+approverU3 {
		t.Errorf("deny reason audit = %+v", rs)
	}
}

func TestNonApproverIsRefused(t *testing.T) {
	e := newEnv(t)
	_, ids := e.incident("api-4", 1, vocab.StateAwaitingApproval)
	id := strconv.FormatInt(ids[0], 10)
	for _, try := range []func() string{
		func() string { return e.command(outsider, "approve "+id) },
		func() string { return e.click(outsider, ButtonApprove, ids[0]) },
		func() string { return e.command(outsider, "pause 10m") },
	} {
		if got := try(); !strings.Contains(got, "Only approvers may") || !strings.Contains(got, "<@"+approverU1+">") {
			t.Errorf("refusal = %q", got)
		}
	}
	if a := e.action(ids[0]); a.State != vocab.StateAwaitingApproval || e.approvals(ids[0]) != 0 {
		t.Errorf("a non-approver changed the action: %s", a.State)
	}
	if p, _ := e.st.Pause(context.Background()); p.Paused {
		t.Error("a non-approver paused responder")
	}
	rs := e.audit(store.AuditSlack, ReasonNotApprover)
	if len(rs) != 3 || rs[0].Actor != "slack:"+outsider {
		t.Errorf("refusal audit = %+v, want 3 rows by slack:%s", rs, outsider)
	}
	// The group's members were read once and cached.
	if n := e.rec.groupHits.Load(); n != 1 {
		t.Errorf("usergroups.users.list called %d times, want 1 (cached)", n)
	}
	// list and status are open to everyone.
	if got := e.command(outsider, "list"); !strings.Contains(got, "/responder approve "+id) {
		t.Errorf("list = %q", got)
	}
}

func TestGroupCacheExpires(t *testing.T) {
	e := newEnv(t)
	_, ids := e.incident("api-5", 1, vocab.StateAwaitingApproval, vocab.StateAwaitingApproval)
	cfg := e.s.conf().cfg
	cfg.GroupCacheTTL = config.Duration(time.Minute)
	e.s.SetConfig(cfg, false)
	e.command(approverU3, "approve "+strconv.FormatInt(ids[0], 10))
	e.clock.Advance(time.Minute + time.Second)
	// Slack no longer answers for the group: the stale list still serves.
	e.rec.mu.Lock()
	delete(e.rec.groups, groupID)
	e.rec.mu.Unlock()
	if got := e.command(approverU3, "approve "+strconv.FormatInt(ids[1], 10)); !strings.Contains(got, "You approved") {
		t.Errorf("approval with a stale group list = %q", got)
	}
	if n := e.rec.groupHits.Load(); n != 2 {
		t.Errorf("usergroups.users.list called %d times, want 2 (once, then refreshed after the TTL)", n)
	}
}

func TestDoubleClickDecidesOnce(t *testing.T) {
	e := newEnv(t)
	_, ids := e.incident("api-6", 1, vocab.StateAwaitingApproval)
	first := e.click(approverU1, ButtonApprove, ids[0])
	second := e.click(approverU1, ButtonApprove, ids[0])
	if !strings.Contains(first, "You approved") {
		t.Errorf("first click: %q", first)
	}
	if !strings.Contains(second, "already approved") {
		t.Errorf("second click: %q, want a replay", second)
	}
	if n := e.approvals(ids[0]); n != 1 {
		t.Errorf("%d approval rows, want 1", n)
	}
	if n := len(e.audit(store.AuditApproval, "approved")); n != 1 {
		t.Errorf("%d approval audit rows, want 1", n)
	}
	if a := e.action(ids[0]); a.State != vocab.StateApproved {
		t.Errorf("action is %s", a.State)
	}
	// A click on the Deny button of a decided action changes nothing.
	if got := e.click(approverU3, ButtonDeny, ids[0]); !strings.Contains(got, "not awaiting approval") {
		t.Errorf("deny after approval: %q", got)
	}
}

func TestTwoPersonRule(t *testing.T) {
	e := newEnv(t)
	_, ids := e.incident("db-1", 2, vocab.StateAwaitingApproval)
	if got := e.click(approverU1, ButtonApprove, ids[0]); !strings.Contains(got, "needs another approver") {
		t.Errorf("first approval: %q", got)
	}
	if a := e.action(ids[0]); a.State != vocab.StateAwaitingApproval {
		t.Fatalf("one approval of two made the action %s", a.State)
	}
	if got := e.command(approverU1, "approve "+strconv.FormatInt(ids[0], 10)); !strings.Contains(got, "already approved") {
		t.Errorf("same approver again: %q", got)
	}
	if a := e.action(ids[0]); a.State != vocab.StateAwaitingApproval {
		t.Fatalf("the same approver twice made the action %s", a.State)
	}
	if got := e.click(approverU3, ButtonApprove, ids[0]); !strings.Contains(got, "You approved") {
		t.Errorf("second approver: %q", got)
	}
	a := e.action(ids[0])
	if a.State != vocab.StateApproved || a.ApprovedBy != "slack:"+approverU1+",slack:"+approverU3 {
		t.Errorf("action = %s by %q", a.State, a.ApprovedBy)
	}
}

func TestApprovalAfterTTL(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	_, ids := e.incidentAt(context.Background(), "api-7", 1, now.Add(-time.Hour), now.Add(-e.ttl-time.Minute), vocab.StateAwaitingApproval)
	got := e.click(approverU1, ButtonApprove, ids[0])
	if !strings.Contains(got, "approval window") {
		t.Errorf("late click: %q", got)
	}
	if a := e.action(ids[0]); a.State != vocab.StateAwaitingApproval || e.approvals(ids[0]) != 0 {
		t.Errorf("a late approval was recorded: %s", a.State)
	}
}

func TestPauseResumeStatus(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if got := e.command(approverU1, "pause 30m deploy freeze"); !strings.Contains(got, "Paused until") {
		t.Errorf("pause: %q", got)
	}
	p, err := e.st.Pause(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Paused || p.By != "slack:"+approverU1 || p.Reason != "deploy freeze" || p.Until == nil || p.Until.Sub(p.At) != 30*time.Minute {
		t.Errorf("pause row = %+v", p)
	}
	var via string
	if err := e.st.Pool().QueryRow(ctx, `SELECT detail->>'via' FROM audit WHERE kind = 'control' AND reason = 'pause'`).Scan(&via); err != nil || via != "slack" {
		t.Errorf("the pause is audited via %q (%v), want slack", via, err)
	}
	if got := e.command(outsider, "status"); !strings.Contains(got, "*Paused* by slack:"+approverU1) || !strings.Contains(got, "Breakers:* all closed") {
		t.Errorf("status: %q", got)
	}
	if got := e.command(approverU3, "resume"); !strings.Contains(got, "Resumed") {
		t.Errorf("resume: %q", got)
	}
	if p, _ := e.st.Pause(ctx); p.Paused {
		t.Error("still paused after resume")
	}
	if got := e.command(approverU1, "pause"); !strings.Contains(got, "Paused until `/responder resume`") {
		t.Errorf("open-ended pause: %q", got)
	}
	if got := e.command(outsider, "frobnicate"); !strings.Contains(got, "unknown command") || !strings.Contains(got, "*/responder* commands") {
		t.Errorf("unknown command: %q", got)
	}
	if got := e.command(outsider, ""); !strings.HasPrefix(got, "*/responder* commands") {
		t.Errorf("help: %q", got)
	}
}

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		text string
		want Command
		err  string
	}{
		{"approve 42", Command{Verb: VerbApprove, ActionID: 42}, ""},
		{"  APPROVE   #42 ", Command{Verb: VerbApprove, ActionID: 42}, ""},
		{"deny 7 too risky now", Command{Verb: VerbDeny, ActionID: 7, Reason: "too risky now"}, ""},
		{"pause", Command{Verb: VerbPause}, ""},
		{"pause 1h30m db maintenance", Command{Verb: VerbPause, Duration: 90 * time.Minute, Reason: "db maintenance"}, ""},
		{"pause 2d", Command{Verb: VerbPause, Duration: 48 * time.Hour}, ""},
		{"pause release day", Command{Verb: VerbPause, Reason: "release day"}, ""},
		{"resume", Command{Verb: VerbResume}, ""},
		{"list", Command{Verb: VerbList}, ""},
		{"", Command{Verb: VerbHelp}, ""},
		{"approve", Command{}, "usage"},
		{"approve 0", Command{}, "not an action id"},
		{"approve -3", Command{}, "not an action id"},
		{"approve 42 43", Command{}, "one action at a time"},
		{"approve 99999999999999999999", Command{}, "not an action id"},
		{"pause 90d", Command{}, "between"},
		{"resume now", Command{}, "takes no arguments"},
		{"rm -rf", Command{}, "unknown command"},
		{strings.Repeat("x", maxCommandText+1), Command{}, "longer than"},
	} {
		t.Run(tc.text, func(t *testing.T) {
			got, err := ParseCommand(tc.text)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseCommand(%q) = %+v, %v; want error containing %q", tc.text, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseCommand(%q) = %+v, %v; want %+v", tc.text, got, err, tc.want)
			}
		})
	}
}

func TestParseInteraction(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload string
		want    Interaction
		err     error
	}{
		{"approve", `{"type":"block_actions","user":{"id":"U1AB"},"response_url":"https://hooks.slack.com/actions/x","container":{"message_ts":"1.2"},"channel":{"id":"C1"},"actions":[{"action_id":"responder_approve","block_id":"b","value":"42","type":"button"}]}`,
			Interaction{UserID: "U1AB", Decision: store.DecisionApprove, ActionID: 42, ResponseURL: "https://hooks.slack.com/actions/x", ChannelID: "C1", MessageTS: "1.2"}, nil},
		{"deny", `{"type":"block_actions","user":{"id":"U1AB"},"actions":[{"action_id":"other","block_id":"b","value":"1"},{"action_id":"responder_deny","block_id":"b","value":"7"}]}`,
			Interaction{UserID: "U1AB", Decision: store.DecisionDeny, ActionID: 7}, nil},
		{"view submission", `{"type":"view_submission","user":{"id":"U1AB"}}`, Interaction{}, ErrNotOurs},
		{"foreign button", `{"type":"block_actions","user":{"id":"U1AB"},"actions":[{"action_id":"x","block_id":"b","value":"7"}]}`, Interaction{}, ErrNotOurs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseInteraction([]byte(tc.payload))
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Fatalf("ParseInteraction = %+v, %v; want %+v, %v", got, err, tc.want, tc.err)
			}
		})
	}
	for _, bad := range []string{"", "{", `{"type":"block_actions","actions":[{"action_id":"responder_approve","block_id":"b","value":"42"}]}`,
		`{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"responder_approve","block_id":"b","value":"x"}]}`} {
		if _, err := ParseInteraction([]byte(bad)); err == nil || errors.Is(err, ErrNotOurs) {
			t.Errorf("ParseInteraction(%q) = %v, want a parse error", bad, err)
		}
	}
}

func TestResponseURLAllowed(t *testing.T) {
	e := newEnv(t)
	for u, want := range map[string]bool{
		"https://hooks.slack.com/actions/T1/1/x": true,
		e.srv.GetAPIURL() + "response/1":         true,
		"http://hooks.slack.com/actions/T1/1/x":  false,
		"https://evil.example.com/x":             false,
		"https://user@hooks.slack.com/x":         false,
		"http://169.254.169.254/latest":          false,
	} {
		if got := e.s.responseURLAllowed(u); got != want {
			t.Errorf("responseURLAllowed(%s) = %v, want %v", u, got, want)
		}
	}
}
