package slack

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/time/rate"

	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// signedCommand is a /responder command as Slack sends it, signed now.
func (e *env) signedCommand(user, text string) (string, http.Header) {
	body := url.Values{"command": {"/responder"}, "text": {text}, "user_id": {user}, "channel_id": {channelID},
		"response_url": {e.srv.GetAPIURL() + "response/cmd"}}.Encode()
	return body, sign(testSecret, e.clock.Now(), body)
}

// send posts a signed command to h and returns the ephemeral answer.
func (e *env) send(h http.Handler, body string, hdr http.Header) string {
	e.t.Helper()
	w := e.post(h, body, hdr)
	if w.Code != http.StatusOK {
		e.t.Fatalf("command: %d %s", w.Code, w.Body)
	}
	var msg ephemeralMsg
	if err := json.Unmarshal(w.Body.Bytes(), &msg); err != nil {
		e.t.Fatalf("answer is not JSON: %v: %s", err, w.Body)
	}
	return msg.Text
}

func (e *env) paused() bool {
	e.t.Helper()
	p, err := e.st.Pause(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return p.Paused
}

// A replayed /responder pause or resume (the same body, timestamp and signature, inside the
// 5-minute window) is refused, changes nothing and is audited; distinct commands in the same second
// and the same text signed again both work.
func TestReplayedPauseAndResumeAreRefused(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	e.s.m = newMetrics(reg)
	h := e.s.CommandsHandler()

	pauseBody, pauseHdr := e.signedCommand(approverU1, "pause 30m first")
	if got := e.send(h, pauseBody, pauseHdr); !strings.Contains(got, "Paused until") {
		t.Fatalf("pause: %q", got)
	}
	resumeBody, resumeHdr := e.signedCommand(approverU3, "resume")
	if got := e.send(h, resumeBody, resumeHdr); !strings.Contains(got, "Resumed") {
		t.Fatalf("resume: %q", got)
	}
	// The pause replayed: refused, responder stays resumed.
	if got := e.send(h, pauseBody, pauseHdr); !strings.Contains(got, "already received") {
		t.Errorf("replayed pause: %q, want a refusal", got)
	}
	if e.paused() {
		t.Fatal("a replayed pause paused responder")
	}
	// Two different pauses in the same second both work.
	for _, text := range []string{"pause 10m one", "pause 20m two"} {
		b, hdr := e.signedCommand(approverU1, text)
		if got := e.send(h, b, hdr); !strings.Contains(got, "Paused until") {
			t.Fatalf("%s: %q", text, got)
		}
	}
	if p, _ := e.st.Pause(context.Background()); !p.Paused || p.Reason != "two" {
		t.Fatalf("pause row = %+v, want paused by the second pause", p)
	}
	// The resume replayed: refused, responder stays paused.
	if got := e.send(h, resumeBody, resumeHdr); !strings.Contains(got, "already received") {
		t.Errorf("replayed resume: %q, want a refusal", got)
	}
	if !e.paused() {
		t.Fatal("a replayed resume resumed responder")
	}
	// The same text signed again (a new timestamp) is a new request.
	e.clock.Advance(2 * time.Second)
	b, hdr := e.signedCommand(approverU3, "resume")
	if b != resumeBody || hdr.Get("X-Slack-Signature") == resumeHdr.Get("X-Slack-Signature") {
		t.Fatal("test setup: want the same body under a new signature")
	}
	if got := e.send(h, b, hdr); !strings.Contains(got, "Resumed") || e.paused() {
		t.Errorf("resume signed again: %q, paused %v", got, e.paused())
	}

	rs := e.audit(store.AuditSlack, ReasonReplayed)
	if len(rs) != 2 {
		t.Fatalf("%d replayed audit rows, want 2: %+v", len(rs), rs)
	}
	actors := map[string]bool{rs[0].Actor: true, rs[1].Actor: true}
	if !actors["slack:"+approverU1] || !actors["slack:"+approverU3] || rs[0].Detail["endpoint"] != endpointCommands {
		t.Errorf("replayed audit rows = %+v", rs)
	}
	if v := testutil.ToFloat64(e.s.m.refusals.WithLabelValues(ReasonReplayed)); v != 2 {
		t.Errorf("responder_slack_refusals_total{reason=replayed} = %v, want 2", v)
	}
	// Read-only commands are not cached; a replayed one just answers again.
	lb, lhdr := e.signedCommand(outsider, "status")
	for range 2 {
		if got := e.send(h, lb, lhdr); !strings.Contains(got, "Paused") && !strings.Contains(got, "Running") {
			t.Errorf("status: %q", got)
		}
	}
}

// The replay cache is in the database: a request received by one replica is refused by another.
func TestReplayRefusedAcrossReplicas(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	st2, err := store.Open(ctx, e.st.Pool().Config().ConnString(), store.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st2.Close)
	other, err := New(e.s.cfg, Options{Store: st2, Now: e.clock.Now,
		Approver: engine.Approvals{Store: st2, TTL: e.ttl, Now: e.clock.Now}, Rate: rate.Inf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Wait)

	body, hdr := e.signedCommand(approverU1, "pause deploy")
	if got := e.send(e.s.CommandsHandler(), body, hdr); !strings.Contains(got, "Paused until") {
		t.Fatalf("pause on replica 1: %q", got)
	}
	rb, rhdr := e.signedCommand(approverU1, "resume")
	if got := e.send(e.s.CommandsHandler(), rb, rhdr); !strings.Contains(got, "Resumed") {
		t.Fatalf("resume on replica 1: %q", got)
	}
	if got := e.send(other.CommandsHandler(), body, hdr); !strings.Contains(got, "already received") {
		t.Errorf("the pause replayed to replica 2: %q, want a refusal", got)
	}
	if e.paused() {
		t.Error("the pause replayed to replica 2 paused responder")
	}
	if n := len(e.audit(store.AuditSlack, ReasonReplayed)); n != 1 {
		t.Errorf("%d replayed audit rows, want 1", n)
	}
}

// A replayed button click or approve command never decides: an approval attempted too early and
// replayed once the action awaits approval is refused; a decision repeated by replay answers as a
// double click does.
func TestReplayedDecisionsAreRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, ids := e.incident("api-r", 2, vocab.StatePlanned, vocab.StateAwaitingApproval)
	early := e.buttonPayload(approverU1, ButtonApprove, ids[0])
	earlyHdr := sign(testSecret, e.clock.Now(), early)
	clickAnswer := func(body string, hdr http.Header) string {
		t.Helper()
		before := len(e.rec.Responses())
		if w := e.post(e.s.InteractionsHandler(), body, hdr); w.Code != http.StatusOK {
			t.Fatalf("click: %d %s", w.Code, w.Body)
		}
		e.s.Wait()
		rs := e.rec.Responses()
		if len(rs) != before+1 {
			t.Fatalf("%d answers through response_url, want %d", len(rs), before+1)
		}
		var msg ephemeralMsg
		if err := json.Unmarshal([]byte(rs[len(rs)-1]), &msg); err != nil {
			t.Fatal(err)
		}
		return msg.Text
	}
	if got := clickAnswer(early, earlyHdr); !strings.Contains(got, "not awaiting approval") {
		t.Fatalf("early click: %q", got)
	}
	if _, err := e.st.Pool().Exec(ctx, `UPDATE actions SET state = 'awaiting_approval' WHERE id = $1`, ids[0]); err != nil {
		t.Fatal(err)
	}
	if got := clickAnswer(early, earlyHdr); !strings.Contains(got, "already received") {
		t.Errorf("replayed early click: %q, want a refusal", got)
	}
	if n := e.approvals(ids[0]); n != 0 {
		t.Fatalf("a replayed click recorded %d approvals", n)
	}
	// The same by command.
	cmd, cmdHdr := e.signedCommand(approverU1, "approve "+strconv.FormatInt(ids[1], 10))
	if got := e.send(e.s.CommandsHandler(), cmd, cmdHdr); !strings.Contains(got, "needs another approver") {
		t.Fatalf("approve: %q", got)
	}
	if got := e.send(e.s.CommandsHandler(), cmd, cmdHdr); !strings.Contains(got, "You had already approved") {
		t.Errorf("replayed approve: %q, want the answer to a repeated decision", got)
	}
	if n := e.approvals(ids[1]); n != 1 {
		t.Errorf("%d approval rows, want 1", n)
	}
	if a := e.action(ids[1]); a.State != vocab.StateAwaitingApproval {
		t.Errorf("action is %s, want awaiting_approval (one approval of two)", a.State)
	}
	if n := len(e.audit(store.AuditSlack, ReasonReplayed)); n != 2 {
		t.Errorf("%d replayed audit rows, want 2", n)
	}
}

// Cached requests are forgotten once their window has passed: each new entry removes the expired
// ones.
func TestReplayCacheExpires(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := e.clock.Now()
	// A request received 7 minutes ago, its window (5 minutes and the margin) over.
	if seen, err := e.st.SeenSlackRequest(ctx, "v0=old", endpointCommands, now.Add(-7*time.Minute), now.Add(-time.Second)); err != nil || seen {
		t.Fatalf("SeenSlackRequest = %v, %v", seen, err)
	}
	body, hdr := e.signedCommand(approverU1, "pause")
	if got := e.send(e.s.CommandsHandler(), body, hdr); !strings.Contains(got, "Paused") {
		t.Fatalf("pause: %q", got)
	}
	if n, err := e.st.SlackRequestsCached(ctx); err != nil || n != 1 {
		t.Errorf("cached requests = %d (%v), want 1 (the expired one removed)", n, err)
	}
	var expires time.Time
	if err := e.st.Pool().QueryRow(ctx, `SELECT expires_at FROM slack_requests`).Scan(&expires); err != nil {
		t.Fatal(err)
	}
	sent, _ := strconv.ParseInt(hdr.Get("X-Slack-Request-Timestamp"), 10, 64)
	if want := time.Unix(sent, 0).Add(MaxSkew + ReplayMargin); !expires.Equal(want) {
		t.Errorf("expires_at = %s, want %s (the request's timestamp + the window + the margin)", expires, want)
	}
}
