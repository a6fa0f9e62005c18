package app_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack/slacktest"

	"github.com/responder-sre/responder/internal/testwait"
)

const (
	slackSecret  = "e2e-signing-secret-0123456789abcdef"
	slackChannel = "C0INCIDENTS"
	slackUser    = "U0APPROVER1"
)

// slackCall is one Web API call responder made to the slacktest server.
type slackCall struct{ Method, Channel, TS, ThreadTS, Text, Blocks string }

type slackRecorder struct {
	mu    sync.Mutex
	calls []slackCall
	seq   int
}

func (r *slackRecorder) Calls() []slackCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]slackCall(nil), r.calls...)
}

func (r *slackRecorder) chat(method string) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		v, _ := url.ParseQuery(string(b))
		r.mu.Lock()
		c := slackCall{Method: method, Channel: v.Get("channel"), ThreadTS: v.Get("thread_ts"), Text: v.Get("text"),
			Blocks: strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(v.Get("blocks"))}
		if method == "chat.postMessage" {
			r.seq++
			c.TS = fmt.Sprintf("1700000000.%06d", r.seq)
		} else {
			c.TS = v.Get("ts")
		}
		r.calls = append(r.calls, c)
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": slackChannel, "ts": c.TS})
	}
}

func slackSign(body string, at time.Time) http.Header {
	ts := strconv.FormatInt(at.Unix(), 10)
	m := hmac.New(sha256.New, []byte(slackSecret))
	fmt.Fprintf(m, "v0:%s:%s", ts, body)
	h := http.Header{}
	h.Set("X-Slack-Request-Timestamp", ts)
	h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(m.Sum(nil)))
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	return h
}

// TestSlackApprovalEndToEnd: an alert whose action needs approval → the incident message with
// Approve/Deny buttons → a signed click by an approver → the action runs once (a second click is a
// replay) → the message is updated in place → the alert resolves → the resolution notice goes to
// the thread. A click with a bad signature is refused.
func TestSlackApprovalEndToEnd(t *testing.T) {
	rec := &slackRecorder{}
	srv := slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", rec.chat("chat.postMessage"))
		c.Handle("/chat.update", rec.chat("chat.update"))
		c.Handle("/response/", func(http.ResponseWriter, *http.Request) {})
	})
	srv.Start()
	t.Cleanup(srv.Stop)
	secrets := t.TempDir()
	must(t, os.WriteFile(filepath.Join(secrets, "bot"), []byte("xoxb-e2e\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(secrets, "signing"), []byte(slackSecret+"\n"), 0o600))
	f := startApp(t, fixtureOpts{
		extra: fmt.Sprintf(`slack:
  bot_token_file: %q
  signing_secret_file: %q
  channel: %q
  api_url: %q
  approvers: {users: [%q]}
`, filepath.Join(secrets, "bot"), filepath.Join(secrets, "signing"), slackChannel, srv.GetAPIURL(), slackUser),
		rules: func(sink *sink) string {
			return fmt.Sprintf(`
rules:
  - name: restart-crashlooping-pod
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    actions:
      - handler: http.request
        approval: required
        params: {url: "http://%s/hooks/restart/{{ alert.labels.pod }}"}
`, sink.HostPort())
		},
	})
	sink := f.sink
	starts := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	if code := f.post(payload("firing", starts, "api-0")); code != 200 {
		t.Fatalf("webhook: %d", code)
	}

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("slack calls: %+v", rec.Calls())
		}
	})
	var first slackCall
	testwait.Until(t, 20*time.Second, "the incident message with buttons", func() bool {
		for _, c := range rec.Calls() {
			if c.Method == "chat.postMessage" && strings.Contains(c.Blocks, "responder_approve") {
				first = c
				return true
			}
		}
		return false
	})
	if first.Channel != slackChannel || !strings.Contains(first.Blocks, "restart-crashlooping-pod") {
		t.Fatalf("incident message = %+v", first)
	}
	var actions struct {
		Items []struct {
			ID    int64  `json:"id"`
			State string `json:"state"`
		} `json:"items"`
	}
	_, b := f.do("GET", "/api/v1/actions", readToken, nil)
	must(t, json.Unmarshal(b, &actions))
	if len(actions.Items) != 1 || actions.Items[0].State != "awaiting_approval" {
		t.Fatalf("actions = %s", b)
	}
	id := actions.Items[0].ID
	if !strings.Contains(first.Blocks, fmt.Sprintf(`"value":"%d"`, id)) {
		t.Fatalf("the Approve button does not carry action %d: %s", id, first.Blocks)
	}

	click := func(hdr func(body string) http.Header) int {
		p, _ := json.Marshal(map[string]any{
			"type": "block_actions", "user": map[string]any{"id": slackUser},
			"container":    map[string]any{"type": "message", "message_ts": first.TS, "channel_id": slackChannel},
			"channel":      map[string]any{"id": slackChannel},
			"response_url": srv.GetAPIURL() + "response/click",
			"actions": []map[string]any{{"action_id": "responder_approve", "block_id": fmt.Sprintf("responder_action_%d", id),
				"type": "button", "value": strconv.FormatInt(id, 10)}},
		})
		body := url.Values{"payload": {string(p)}}.Encode()
		req, err := http.NewRequest("POST", f.base+"/slack/interactions", strings.NewReader(body))
		must(t, err)
		req.Header = hdr(body)
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := click(func(body string) http.Header { return slackSign(body+"x", time.Now()) }); code != 401 {
		t.Fatalf("a click with a bad signature: %d, want 401", code)
	}
	if code := click(func(body string) http.Header { return slackSign(body, time.Now()) }); code != 200 {
		t.Fatalf("click: %d", code)
	}
	if code := click(func(body string) http.Header { return slackSign(body, time.Now()) }); code != 200 { // a double click
		t.Fatalf("second click: %d", code)
	}
	testwait.Until(t, 20*time.Second, "the action to run", func() bool { return len(sink.Calls()) >= 1 })
	testwait.Until(t, 20*time.Second, "the message updated to succeeded", func() bool {
		for _, c := range rec.Calls() {
			if c.Method == "chat.update" && c.TS == first.TS && strings.Contains(c.Blocks, "succeeded") && !strings.Contains(c.Blocks, "responder_approve") {
				return true
			}
		}
		return false
	})
	if code := f.post(payload("resolved", starts, "api-0")); code != 200 {
		t.Fatalf("webhook: %d", code)
	}
	testwait.Until(t, 20*time.Second, "the resolution notice in the thread", func() bool {
		for _, c := range rec.Calls() {
			if c.Method == "chat.postMessage" && c.ThreadTS == first.TS {
				return true
			}
		}
		return false
	})
	if n := len(sink.Calls()); n != 1 {
		t.Fatalf("sink calls = %d, want 1 (a double click is a replay)", n)
	}
	_, b = f.do("GET", fmt.Sprintf("/api/v1/actions/%d", id), readToken, nil)
	if !strings.Contains(string(b), `"slack:`+slackUser+`"`) {
		t.Fatalf("the action does not record the Slack approver: %s", b)
	}
}
