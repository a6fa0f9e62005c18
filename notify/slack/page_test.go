package slack

import (
	"context"
	"strings"
	"testing"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

func TestPageSlack(t *testing.T) {
	e := newEnv(t)
	h := e.s.PageHandler()
	if s := h.Spec(); s.Name != "page.slack" || s.Class != vocab.ClassNotify || !s.TargetPerIncident {
		t.Errorf("spec = %+v", s)
	}
	incID, _ := e.incident("api-20", 1)
	act, err := h.Build(handlers.Params{"text": "restart of api-20 did not help", "group": "S0PLATFORM"})
	if err != nil {
		t.Fatal(err)
	}
	if act.Target() != "slack:"+testChannel {
		t.Errorf("target = %q", act.Target())
	}
	ctx := context.Background()
	inv := handlers.Invocation{IncidentID: incID, IdempotencyKey: "responder-action-77"}
	al := testAlert("api-20", e.clock.Now())
	res, err := act.Do(ctx, inv, al)
	if err != nil {
		t.Fatal(err)
	}
	calls := e.rec.Calls()
	if len(calls) != 1 || calls[0].Method != "chat.postMessage" || calls[0].Channel != testChannel {
		t.Fatalf("calls = %+v", calls)
	}
	for _, want := range []string{"<!subteam^S0PLATFORM>", "restart of api-20 did not help"} {
		if !strings.Contains(calls[0].Text, want) {
			t.Errorf("page text %q lacks %q", calls[0].Text, want)
		}
	}
	if !strings.Contains(calls[0].Blocks, "incident #") || !strings.Contains(calls[0].Blocks, "KubePodCrashLooping") {
		t.Errorf("page blocks lack the incident summary: %s", calls[0].Blocks)
	}
	if !strings.Contains(res.Detail, calls[0].TS) {
		t.Errorf("result = %q, want the ts %s", res.Detail, calls[0].TS)
	}
	p, err := e.st.GetSlackPage(context.Background(), "responder-action-77")
	if err != nil || p.TS != calls[0].TS || p.Channel != channelID || p.IncidentID != incID {
		t.Fatalf("page record = %+v, %v", p, err)
	}
	// The engine retries the action (a crash after Do): nothing is posted twice.
	res, err = act.Do(ctx, inv, al)
	if err != nil || !strings.Contains(res.Detail, "already posted") || len(e.rec.Calls()) != 1 {
		t.Errorf("second Do = %+v, %v; %d calls", res, err, len(e.rec.Calls()))
	}
	// The default group comes from slack.page_group.
	act, _ = h.Build(handlers.Params{"text": "disk low"})
	if _, err := act.Do(ctx, handlers.Invocation{IncidentID: incID, IdempotencyKey: "responder-action-78"}, al); err != nil {
		t.Fatal(err)
	}
	if c := e.rec.Calls()[1]; !strings.Contains(c.Text, "<!subteam^S0ONCALL01>") {
		t.Errorf("default group not mentioned: %q", c.Text)
	}
}

func TestPageSlackParams(t *testing.T) {
	e := newEnv(t)
	h := e.s.PageHandler()
	for _, tc := range []struct {
		params handlers.Params
		err    string
	}{
		{handlers.Params{}, "text may not be empty"},
		{handlers.Params{"text": "  "}, "text may not be empty"},
		{handlers.Params{"text": "x", "group": "@oncall"}, "not a Slack user group ID"},
		{handlers.Params{"text": "x", "channel": "general"}, "neither #name nor a channel ID"},
		{handlers.Params{"text": "x", "urgency": "high"}, "no param"},
		{handlers.Params{"text": 3}, "must be a string"},
	} {
		_, err := h.Build(tc.params)
		if err == nil || !strings.Contains(err.Error(), tc.err) || handlers.ReasonOf(err) != vocab.ReasonBadParam {
			t.Errorf("Build(%v) = %v, want bad_param %q", tc.params, err, tc.err)
		}
	}
	if err := h.ValidateStatic(handlers.Params{"text": "x", "group": "nope"}); err == nil {
		t.Error("ValidateStatic accepted a bad literal group")
	}
	if err := h.ValidateStatic(handlers.Params{"text": "x", "group": "{{ alert.labels.team_group }}", "channel": "#ops"}); err != nil {
		t.Errorf("ValidateStatic refused a templated group: %v", err)
	}
}
