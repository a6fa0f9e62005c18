package slack

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

func FuzzVerify(f *testing.F) {
	now := time.Unix(1_700_000_000, 0)
	f.Add("command=%2Fresponder&text=approve+1", strconv.FormatInt(now.Unix(), 10), "v0=abc")
	good := sign(testSecret, now, "text=list")
	f.Add("text=list", good.Get("X-Slack-Request-Timestamp"), good.Get("X-Slack-Signature"))
	f.Add("", "", "")
	f.Add("x", "-1", "v0=")
	f.Add("x", "99999999999999999999", "v0=zz")
	f.Fuzz(func(t *testing.T, body, ts, sig string) {
		h := http.Header{}
		h.Set("X-Slack-Request-Timestamp", ts)
		h.Set("X-Slack-Signature", sig)
		err := Verify(h, []byte(body), testSecret, now)
		if err == nil {
			// Only a correct signature passes: recompute it.
			want := sign(testSecret, mustUnix(t, ts), body).Get("X-Slack-Signature")
			if sig != want {
				t.Fatalf("Verify accepted signature %q, want %q", sig, want)
			}
		}
	})
}

func mustUnix(t *testing.T, ts string) time.Time {
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		t.Fatalf("verified timestamp %q is not a number", ts)
	}
	return time.Unix(n, 0)
}

func FuzzCommand(f *testing.F) {
	for _, s := range []string{"approve 42", "deny #7 because", "pause 30m deploy", "pause", "resume", "list", "status", "help", "",
		"approve", "approve 1 2", "pause 99999999999h", "\xff", "deny 9223372036854775807 x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseCommand(text)
		if err != nil {
			return
		}
		switch c.Verb {
		case VerbApprove, VerbDeny:
			if c.ActionID <= 0 {
				t.Fatalf("%q: action id %d", text, c.ActionID)
			}
		case VerbPause:
			if c.Duration < 0 || c.Duration > MaxPause {
				t.Fatalf("%q: duration %s", text, c.Duration)
			}
		case VerbResume, VerbList, VerbStatus, VerbHelp:
		default:
			t.Fatalf("%q: verb %q", text, c.Verb)
		}
		if len(c.Reason) > 4*maxReason {
			t.Fatalf("%q: reason of %d bytes", text, len(c.Reason))
		}
	})
}

func FuzzInteraction(f *testing.F) {
	f.Add(`{"type":"block_actions","user":{"id":"U1AB"},"actions":[{"action_id":"responder_approve","block_id":"b","value":"42"}]}`)
	f.Add(`{"type":"block_actions","user":{"id":"U1AB"},"actions":[{"action_id":"responder_deny","block_id":"b","value":"#7"}]}`)
	f.Add(`{"type":"view_submission"}`)
	f.Add(`{"type":"block_actions","actions":[null]}`)
	f.Add(`{"actions":{"x":1}}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, payload string) {
		in, err := ParseInteraction([]byte(payload))
		if err != nil {
			return
		}
		if in.ActionID <= 0 || in.UserID == "" || (in.Decision != "approve" && in.Decision != "deny") {
			t.Fatalf("%q parsed into %+v", payload, in)
		}
	})
}
