package app_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack/slacktest"

	"github.com/responder-sre/responder/internal/testwait"
)

// TestSlackDrillChannel: with drills.page set, the incident message of a drill's alert (label
// responder_drill) goes to that channel and says DRILL with the run id; a real incident's goes
// to slack.channel as before.
func TestSlackDrillChannel(t *testing.T) {
	rec := &slackRecorder{}
	srv := slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", rec.chat("chat.postMessage"))
		c.Handle("/chat.update", rec.chat("chat.update"))
	})
	srv.Start()
	t.Cleanup(srv.Stop)
	f := startApp(t, fixtureOpts{
		files: map[string]string{"bot": "xoxb-e2e\n", "signing": slackSecret + "\n"},
		extra: fmt.Sprintf("slack: {bot_token_file: bot, signing_secret_file: signing, channel: %q, api_url: %q, approvers: {users: [%s]}}\n"+
			"drills: {page: '#drills'}\n", slackChannel, srv.GetAPIURL(), slackUser),
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("slack calls: %+v", rec.Calls())
		}
	})
	var started drillRun
	f.drillJSON("POST", "/api/v1/drills", adminToken, `{"name": "api-down", "rto_seconds": 60}`, 201, &started)
	run := started.RunID
	starts := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	drill := strings.Replace(string(payload("firing", starts, "api-7")), `"pod":"api-7",`, `"pod":"api-7","responder_drill":"`+run+`",`, 1)
	if !strings.Contains(drill, run) {
		t.Fatalf("the drill label is not in the payload: %s", drill)
	}
	if code := f.post([]byte(drill)); code != 200 {
		t.Fatalf("webhook (drill): %d", code)
	}
	if code := f.post(payload("firing", starts, "api-8")); code != 200 {
		t.Fatalf("webhook: %d", code)
	}
	posts := map[string]slackCall{}
	testwait.Until(t, 20*time.Second, "both incident messages", func() bool {
		for _, c := range rec.Calls() {
			for _, pod := range []string{"api-7", "api-8"} {
				if c.Method == "chat.postMessage" && c.ThreadTS == "" && strings.Contains(c.Blocks, "pod="+pod) {
					posts[pod] = c
				}
			}
		}
		return len(posts) == 2
	})
	if d := posts["api-7"]; d.Channel != "#drills" || !strings.HasPrefix(d.Text, "[DRILL "+run+"] ") || !strings.Contains(d.Blocks, "*DRILL* `"+run+"`") {
		t.Errorf("drill incident message = %+v, want it in #drills saying DRILL %s", d, run)
	}
	if n := posts["api-8"]; n.Channel != slackChannel || strings.Contains(n.Text+n.Blocks, "DRILL") {
		t.Errorf("real incident message = %+v, want it in %s without DRILL", n, slackChannel)
	}
}
