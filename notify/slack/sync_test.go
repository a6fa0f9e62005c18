package slack

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/slack-go/slack"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

func (e *env) sync() int {
	e.t.Helper()
	n, err := e.s.SyncOnce(context.Background())
	if err != nil {
		e.t.Fatalf("SyncOnce: %v", err)
	}
	return n
}

func (e *env) callsSince(n int) []call { return e.rec.Calls()[n:] }

func TestIncidentMessageLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	incID, ids := e.incident("api-10", 1, vocab.StateAwaitingApproval)
	id := strconv.FormatInt(ids[0], 10)

	// 1. Posted once, with the buttons of the action awaiting approval.
	if n := e.sync(); n != 1 {
		t.Fatalf("first pass sent %d messages, want 1", n)
	}
	calls := e.rec.Calls()
	if len(calls) != 1 || calls[0].Method != "chat.postMessage" || calls[0].Channel != testChannel || calls[0].ThreadTS != "" {
		t.Fatalf("calls = %+v, want one chat.postMessage to %s", calls, testChannel)
	}
	posted := calls[0]
	bs := blocksOf(t, posted.Blocks)
	if got := buttons(bs); len(got) != 2 || got[0] != [2]string{ButtonApprove, id} || got[1] != [2]string{ButtonDeny, id} {
		t.Errorf("buttons = %v, want approve and deny of %s", got, id)
	}
	for _, want := range []string{"restart-api-10: KubePodCrashLooping", "critical", "`pod=api-10`", "pod api-10 is crash looping",
		"<http://prometheus.internal:9090/graph?g0.expr=up|Source>", "`" + id + "` *k8s.restart_pod* on `k8s:shop/pod/api-10`: awaiting_approval"} {
		if !strings.Contains(posted.Blocks, want) {
			t.Errorf("message lacks %q:\n%s", want, posted.Blocks)
		}
	}
	if !strings.Contains(posted.Text, "[FIRING] restart-api-10") {
		t.Errorf("fallback text = %q", posted.Text)
	}
	m, err := e.st.GetSlackMessage(ctx, incID)
	if err != nil {
		t.Fatal(err)
	}
	if m.Channel != channelID || m.TS != posted.TS || m.Final {
		t.Errorf("stored message = %+v, want channel %s ts %s", m, channelID, posted.TS)
	}

	// 2. Nothing changed: nothing sent.
	if n := e.sync(); n != 0 || len(e.rec.Calls()) != 1 {
		t.Fatalf("an unchanged incident was sent again: %+v", e.rec.Calls())
	}

	// 3. Approved by a click: the message is updated in place, without buttons.
	e.click(approverU1, ButtonApprove, ids[0])
	before := len(e.rec.Calls())
	if n := e.sync(); n != 1 {
		t.Fatalf("pass after the approval sent %d, want 1", n)
	}
	upd := e.callsSince(before)
	if len(upd) != 1 || upd[0].Method != "chat.update" || upd[0].Channel != channelID || upd[0].TS != posted.TS {
		t.Fatalf("calls = %+v, want one chat.update of %s/%s", upd, channelID, posted.TS)
	}
	if got := buttons(blocksOf(t, upd[0].Blocks)); len(got) != 0 {
		t.Errorf("approved action still has buttons: %v", got)
	}
	if !strings.Contains(upd[0].Blocks, ": approved") || !strings.Contains(upd[0].Blocks, "by <@"+approverU1+">") {
		t.Errorf("update does not show the approval by <@%s>:\n%s", approverU1, upd[0].Blocks)
	}

	// 4. The action succeeds and the incident resolves: update, then the notice in the thread.
	resolvedAt := e.clock.Now().Add(3 * time.Minute)
	al := testAlert("api-10", time.Time{})
	inc, _ := e.st.GetIncident(ctx, incID)
	al.StartsAt = inc.StartsAt
	if err := e.st.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := e.st.FinishActionsTx(ctx, tx, "", []store.Outcome{{ID: ids[0], State: vocab.StateSucceeded, At: resolvedAt}}); err != nil {
			return err
		}
		_, err := e.st.ResolveIncidentsTx(ctx, tx, []store.ResolveKey{{Fingerprint: al.Fingerprint, StartsAt: al.StartsAt, Alert: al}}, resolvedAt)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	before = len(e.rec.Calls())
	e.sync()
	res := e.callsSince(before)
	if len(res) != 2 || res[0].Method != "chat.update" || res[0].TS != posted.TS || res[1].Method != "chat.postMessage" ||
		res[1].ThreadTS != posted.TS || res[1].Channel != channelID {
		t.Fatalf("calls on resolve = %+v, want chat.update then a thread reply to %s", res, posted.TS)
	}
	if !strings.Contains(res[1].Text, "time to detect *20s*") || !strings.Contains(res[1].Text, "time to recover *3m*") {
		t.Errorf("resolution notice = %q, want time to detect 20s and time to recover 3m", res[1].Text)
	}
	if !strings.Contains(res[0].Blocks, "*Resolved*") || !strings.Contains(res[0].Blocks, ": succeeded") {
		t.Errorf("resolved message:\n%s", res[0].Blocks)
	}
	if m, _ := e.st.GetSlackMessage(ctx, incID); !m.Final || !m.ResolvedNotice || m.Renders != 3 {
		t.Errorf("stored message = %+v, want final with its notice after 3 renders", m)
	}

	// 5. Final: never looked at again.
	before = len(e.rec.Calls())
	if n := e.sync(); n != 0 || len(e.callsSince(before)) != 0 {
		t.Errorf("a final message was sent again: %+v", e.callsSince(before))
	}
}

// A 429 stops every call until Retry-After has passed; the message is not lost.
func TestRateLimitDelaysWithoutLoss(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	incID, _ := e.incident("api-11", 1, vocab.StatePlanned)
	e.rec.fail429.Store(1)
	n, err := e.s.SyncOnce(ctx)
	var rl *errRateLimited
	if !errors.As(err, &rl) || n != 0 {
		t.Fatalf("SyncOnce during a 429 = %d, %v; want a rate limit error", n, err)
	}
	if _, err := e.st.GetSlackMessage(ctx, incID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a message was recorded although Slack refused it: %v", err)
	}
	// Before Retry-After (30s) no call goes out at all.
	e.clock.Advance(20 * time.Second)
	if _, err := e.s.SyncOnce(ctx); !errors.As(err, &rl) || len(e.rec.Calls()) != 0 {
		t.Fatalf("called Slack before Retry-After: %v, %+v", err, e.rec.Calls())
	}
	e.clock.Advance(11 * time.Second)
	if n := e.sync(); n != 1 {
		t.Fatalf("after Retry-After the pass sent %d, want 1", n)
	}
	if m, err := e.st.GetSlackMessage(ctx, incID); err != nil || m.TS == "" {
		t.Errorf("message after the 429: %+v, %v", m, err)
	}
}

// Run posts what Kick announces, well before the next poll.
func TestRunKick(t *testing.T) {
	e := newEnv(t)
	e.s.poll = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	e.incident("api-12", 1, vocab.StatePlanned)
	e.s.Kick()
	testwait.Until(t, 10*time.Second, "Run posts the incident after Kick", func() bool {
		if len(e.rec.Calls()) > 0 {
			return true
		}
		e.s.Kick()
		return false
	})
	if c := e.rec.Calls()[0]; c.Method != "chat.postMessage" || !strings.Contains(c.Text, "restart-api-12") {
		t.Errorf("call = %+v", c)
	}
}

func TestRenderManyActionsBounded(t *testing.T) {
	var acts []store.Action
	for i := range 30 {
		acts = append(acts, store.Action{ID: int64(i + 1), Phase: vocab.PhaseActions, Step: i, Handler: "k8s.restart_pod", Target: "t", State: vocab.StateAwaitingApproval})
	}
	inc := store.SlackIncident{Incident: store.Incident{ID: 1, Rule: "r", State: vocab.IncidentFiring, Labels: map[string]string{"a": "<b>"}}, Alert: testAlert("x", time.Now())}
	r := renderIncident(inc, acts)
	if len(r.Blocks) > 50 {
		t.Errorf("%d blocks, Slack allows 50", len(r.Blocks))
	}
	if got := buttons(slack.Blocks{BlockSet: r.Blocks}); len(got) != 2*maxActionsShown {
		t.Errorf("%d buttons, want %d", len(got), 2*maxActionsShown)
	}
	if r.hash() != renderIncident(inc, acts).hash() {
		t.Error("rendering is not deterministic")
	}
}

// TestRuleChannel: a rule's slack_channel gets its incident messages; other rules use slack.channel.
func TestRuleChannel(t *testing.T) {
	e := newEnv(t)
	e.s.ruleChan = func(rule string) string {
		if rule == "restart-api-11" {
			return "#payments-incidents"
		}
		return ""
	}
	e.incident("api-11", 1, vocab.StateAwaitingApproval)
	e.incident("api-12", 1, vocab.StateAwaitingApproval)
	if n := e.sync(); n != 2 {
		t.Fatalf("sent %d messages, want 2", n)
	}
	got := map[string]bool{}
	for _, c := range e.rec.Calls() {
		if c.Method == "chat.postMessage" {
			got[c.Channel] = true
		}
	}
	if !got["#payments-incidents"] || !got[testChannel] || len(got) != 2 {
		t.Fatalf("posted to %v, want #payments-incidents and %s", got, testChannel)
	}
}

// TestActionLines: every action state has its mark, and a verifying action shows its deadline.
func TestActionLines(t *testing.T) {
	for _, st := range vocab.States {
		if stateEmoji[st] == "" {
			t.Errorf("state %s has no emoji", st)
		}
	}
	deadline := time.Date(2026, 11, 22, 3, 5, 0, 0, time.UTC)
	tests := []struct {
		a    store.Action
		want string
	}{
		{store.Action{ID: 7, Phase: vocab.PhaseActions, Handler: "http.request", Target: "POST api/restart", State: vocab.StateVerifying, VerifyDeadline: &deadline},
			":mag: `7` *http.request* on `POST api/restart`: verifying · until 03:05:00 UTC"},
		{store.Action{ID: 7, Phase: vocab.PhaseActions, Handler: "http.request", Target: "POST api/restart", State: vocab.StateFailed,
			Reason: vocab.ReasonNotRecovered, Error: "verify: the incident's resolution did not hold", VerifyDeadline: &deadline},
			":x: `7` *http.request* on `POST api/restart`: failed · not_recovered\n> verify: the incident's resolution did not hold"},
	}
	for _, tc := range tests {
		if got := actionLine(tc.a); got != tc.want {
			t.Errorf("actionLine:\n got %q\nwant %q", got, tc.want)
		}
	}
}
