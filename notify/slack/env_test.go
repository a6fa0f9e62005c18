package slack

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"
	"golang.org/x/time/rate"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
	"github.com/responder-sre/responder/vocab"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The app passes its *store.Store.
var _ Store = (*store.Store)(nil)

const (
	testSecret  = "8f742231b10e8888abcd99yyyzzz85a5"
	testChannel = "#incidents"
	channelID   = "C0INCIDENTS"
	approverU1  = "U0APPROVER1"
	approverU3  = "U0GROUPMEM3" // approver through group S0APPROVERS
	outsider    = "U0OUTSIDER9"
	groupID     = "S0APPROVERS"
)

// call is one Slack Web API call the fake server recorded.
type call struct {
	Method   string
	Channel  string
	TS       string // chat.update: the message updated; chat.postMessage: the ts answered
	ThreadTS string
	Text     string
	Blocks   string
}

// recorder records the Web API calls responder makes to slacktest and answers them. fail429, when
// positive, makes that many chat.* calls answer 429 with Retry-After.
type recorder struct {
	mu        sync.Mutex
	calls     []call
	responses []string // bodies posted to response_url
	seq       atomic.Int64
	fail429   atomic.Int32
	groups    map[string][]string
	groupHits atomic.Int32
}

func (r *recorder) add(c call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

func (r *recorder) Calls() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

func (r *recorder) Responses() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.responses...)
}

func form(t *testing.T, req *http.Request) url.Values {
	b, _ := io.ReadAll(req.Body)
	v, err := url.ParseQuery(string(b))
	if err != nil {
		t.Errorf("slack API call with a body that is not a form: %v", err)
	}
	return v
}

func (r *recorder) chat(t *testing.T, method string) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		v := form(t, req)
		if v.Get("token") != "xoxb-test" && req.Header.Get("Authorization") != "Bearer xoxb-test" {
			t.Errorf("%s without the bot token", method)
		}
		if r.fail429.Load() > 0 {
			r.fail429.Add(-1)
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		// Blocks as a human reads them (Go's JSON escapes <, > and &).
		blocks := strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(v.Get("blocks"))
		c := call{Method: method, Channel: v.Get("channel"), ThreadTS: v.Get("thread_ts"), Text: v.Get("text"), Blocks: blocks}
		ch := v.Get("channel")
		if method == "chat.postMessage" {
			c.TS = fmt.Sprintf("1700000000.%06d", r.seq.Add(1))
			if ch == testChannel {
				ch = channelID // Slack answers with the channel's ID
			}
		} else {
			c.TS = v.Get("ts")
		}
		r.add(c)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": ch, "ts": c.TS, "text": c.Text})
	}
}

func (r *recorder) usergroup(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		v := form(t, req)
		r.groupHits.Add(1)
		r.add(call{Method: "usergroups.users.list", Channel: v.Get("usergroup")})
		users, ok := r.groups[v.Get("usergroup")]
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "no_such_subteam"})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "users": users})
	}
}

// env is a Slack integration wired to a real PostgreSQL and a slacktest server.
type env struct {
	t     *testing.T
	s     *Slack
	st    *store.Store
	rec   *recorder
	srv   *slacktest.Server
	kicks atomic.Int32
	clock *clock
	ttl   time.Duration
}

type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// newEnv starts the fake Slack and the store and builds the integration; opts amend its Options.
func newEnv(t *testing.T, opts ...func(*Options)) *env {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	rec := &recorder{groups: map[string][]string{groupID: {approverU3, "U0SOMEONE5"}}}
	srv := slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", rec.chat(t, "chat.postMessage"))
		c.Handle("/chat.update", rec.chat(t, "chat.update"))
		c.Handle("/usergroups.users.list", rec.usergroup(t))
		c.Handle("/response/", func(w http.ResponseWriter, req *http.Request) {
			b, _ := io.ReadAll(req.Body)
			rec.mu.Lock()
			rec.responses = append(rec.responses, string(b))
			rec.mu.Unlock()
		})
	})
	srv.Start()
	t.Cleanup(srv.Stop)
	e := &env{t: t, st: st, rec: rec, srv: srv, clock: &clock{}, ttl: 15 * time.Minute}
	cfg := config.SlackConfig{
		Channel: testChannel, APIURL: srv.GetAPIURL(), BotToken: "xoxb-test", SigningSecret: testSecret,
		Approvers: config.SlackApprovers{Users: []string{approverU1}, Groups: []string{groupID}},
		PageGroup: "S0ONCALL01",
	}
	o := Options{Store: st, Kick: func() { e.kicks.Add(1) }, Now: e.clock.Now,
		Approver: engine.Approvals{Store: st, TTL: e.ttl, Now: e.clock.Now}, Rate: rate.Inf}
	for _, f := range opts {
		f(&o)
	}
	e.s, err = New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.s.Wait)
	return e
}

// incident inserts a firing incident with one action per state given (awaiting_approval actions
// need required approvals) and returns the incident and action ids.
func (e *env) incident(name string, required int, states ...vocab.State) (int64, []int64) {
	e.t.Helper()
	ctx := context.Background()
	now := e.clock.Now()
	return e.incidentAt(ctx, name, required, now, now, states...)
}

func (e *env) incidentAt(ctx context.Context, name string, required int, startsAt, actionsAt time.Time, states ...vocab.State) (int64, []int64) {
	e.t.Helper()
	return e.incidentOf(ctx, testAlert(name, startsAt), required, actionsAt, states...)
}

// incidentOf is incidentAt for an alert of the test's own (its pod label names the incident).
func (e *env) incidentOf(ctx context.Context, al alert.Alert, required int, actionsAt time.Time, states ...vocab.State) (int64, []int64) {
	e.t.Helper()
	name, startsAt := al.Labels["pod"], al.StartsAt
	var incID int64
	var ids []int64
	err := e.st.InTx(ctx, func(tx pgx.Tx) error {
		res, err := e.st.UpsertIncidentsTx(ctx, tx, []store.IncidentUpsert{{Rule: "restart-" + name, RuleHash: "h", Alert: al, State: vocab.IncidentFiring, At: startsAt.Add(20 * time.Second)}})
		if err != nil {
			return err
		}
		incID = res[0].ID
		var nas []store.NewAction
		for i, st := range states {
			nas = append(nas, store.NewAction{IncidentID: incID, Phase: vocab.PhaseActions, Step: i, Rule: "restart-" + name, RuleHash: "h",
				Handler: "k8s.restart_pod", Target: "k8s:shop/pod/" + name, Scope: "shop", Class: "disruptive", Mode: "enforce",
				Params: map[string]any{"pod": name}, Approval: "required", Timeout: time.Minute, State: st, At: actionsAt, ApprovalsRequired: required})
		}
		ids, err = e.st.InsertActionsTx(ctx, tx, nas)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return incID, ids
}

func testAlert(name string, startsAt time.Time) alert.Alert {
	a := alert.Alert{Status: alert.StatusFiring, Source: alert.SourceAlertmanager, StartsAt: startsAt, ReceivedAt: startsAt,
		Labels:       map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": name, "severity": "critical"},
		Annotations:  map[string]string{"summary": "pod " + name + " is crash looping"},
		GeneratorURL: "http://prometheus.internal:9090/graph?g0.expr=up",
	}
	a.Name = "KubePodCrashLooping"
	a.Fingerprint = alert.Fingerprint(a.Labels)
	return a
}

// sign returns Slack's headers for body at ts under secret.
func sign(secret string, ts time.Time, body string) http.Header {
	t := strconv.FormatInt(ts.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "v0:%s:%s", t, body)
	h := http.Header{}
	h.Set("X-Slack-Request-Timestamp", t)
	h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(m.Sum(nil)))
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	return h
}

// post sends a signed request to h and returns the recorded response.
func (e *env) post(h http.Handler, body string, hdr http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/slack/x", strings.NewReader(body))
	req.Header = hdr
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// command runs a signed /responder command as user and returns the ephemeral text.
func (e *env) command(user, text string) string {
	e.t.Helper()
	body := url.Values{"command": {"/responder"}, "text": {text}, "user_id": {user}, "channel_id": {channelID},
		"response_url": {e.srv.GetAPIURL() + "response/cmd"}}.Encode()
	w := e.post(e.s.CommandsHandler(), body, sign(testSecret, e.clock.Now(), body))
	if w.Code != http.StatusOK {
		e.t.Fatalf("command %q: %d %s", text, w.Code, w.Body)
	}
	var msg ephemeralMsg
	if err := json.Unmarshal(w.Body.Bytes(), &msg); err != nil {
		e.t.Fatalf("command answer is not JSON: %v: %s", err, w.Body)
	}
	if msg.ResponseType != "ephemeral" {
		e.t.Errorf("answer is %q, not ephemeral", msg.ResponseType)
	}
	return msg.Text
}

// buttonPayload is a block_actions payload as Slack sends it for a click.
func (e *env) buttonPayload(user, actionID string, id int64) string {
	p := map[string]any{
		"type":         "block_actions",
		"user":         map[string]any{"id": user, "username": "someone"},
		"api_app_id":   "A0APP",
		"container":    map[string]any{"type": "message", "message_ts": "1700000000.000001", "channel_id": channelID},
		"channel":      map[string]any{"id": channelID, "name": "incidents"},
		"response_url": e.srv.GetAPIURL() + "response/click",
		"actions": []map[string]any{{"action_id": actionID, "block_id": fmt.Sprintf("responder_action_%d", id), "type": "button",
			"value": strconv.FormatInt(id, 10), "action_ts": "1700000001.000001"}},
	}
	b, _ := json.Marshal(p)
	return url.Values{"payload": {string(b)}}.Encode()
}

// click sends a signed button click and waits for the ephemeral answer through response_url.
func (e *env) click(user, button string, id int64) string {
	e.t.Helper()
	before := len(e.rec.Responses())
	body := e.buttonPayload(user, button, id)
	w := e.post(e.s.InteractionsHandler(), body, sign(testSecret, e.clock.Now(), body))
	if w.Code != http.StatusOK {
		e.t.Fatalf("click: %d %s", w.Code, w.Body)
	}
	e.s.Wait()
	rs := e.rec.Responses()
	if len(rs) != before+1 {
		e.t.Fatalf("%d answers through response_url, want %d", len(rs), before+1)
	}
	var msg ephemeralMsg
	if err := json.Unmarshal([]byte(rs[len(rs)-1]), &msg); err != nil || msg.ResponseType != "ephemeral" || msg.ReplaceOriginal {
		e.t.Fatalf("answer through response_url = %s (err %v), want an ephemeral message that keeps the original", rs[len(rs)-1], err)
	}
	return msg.Text
}

func (e *env) action(id int64) *store.Action {
	e.t.Helper()
	a, err := e.st.GetAction(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (e *env) audit(kind, reason string) []store.AuditEntry {
	e.t.Helper()
	all, _, err := e.st.ListAudit(context.Background(), store.AuditFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []store.AuditEntry
	for _, a := range all {
		if a.Kind == kind && a.Reason == reason {
			out = append(out, a)
		}
	}
	return out
}

func (e *env) approvals(id int64) int {
	e.t.Helper()
	var n int
	if err := e.st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM approvals WHERE action_id = $1`, id).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// blocksOf decodes recorded blocks.
func blocksOf(t *testing.T, raw string) slack.Blocks {
	t.Helper()
	var b slack.Blocks
	if err := json.Unmarshal([]byte(raw), &b); err != nil {
		t.Fatalf("blocks do not decode: %v: %s", err, raw)
	}
	return b
}

// buttons returns the (action_id, value) of every button in blocks.
func buttons(bs slack.Blocks) [][2]string {
	var out [][2]string
	for _, b := range bs.BlockSet {
		ab, ok := b.(*slack.ActionBlock)
		if !ok {
			continue
		}
		for _, el := range ab.Elements.ElementSet {
			if btn, ok := el.(*slack.ButtonBlockElement); ok {
				out = append(out, [2]string{btn.ActionID, btn.Value})
			}
		}
	}
	return out
}
