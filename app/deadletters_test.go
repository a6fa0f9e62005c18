package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sre/responder/bus"
	"github.com/responder-sre/responder/bus/bustest"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
)

type apiDeadLetter struct {
	ID          int64      `json:"id"`
	CreatedAt   time.Time  `json:"created_at"`
	MsgID       string     `json:"msg_id"`
	Reason      string     `json:"reason"`
	Error       string     `json:"error"`
	Deliveries  int        `json:"deliveries"`
	Size        int        `json:"size"`
	Preview     string     `json:"preview"`
	ReplayedAt  *time.Time `json:"replayed_at"`
	ReplayedBy  string     `json:"replayed_by"`
	ReplayMsgID string     `json:"replay_msg_id"`
	Data        string     `json:"data"`
}

func (f *fixture) deadLetters() []apiDeadLetter {
	f.t.Helper()
	code, b := f.do(http.MethodGet, "/api/v1/dead-letters", readToken, nil)
	if code != 200 {
		f.t.Fatalf("GET /api/v1/dead-letters: %d %s", code, b)
	}
	var l struct {
		Items      []apiDeadLetter `json:"items"`
		NextCursor *string         `json:"next_cursor"`
	}
	must(f.t, json.Unmarshal(b, &l))
	if l.Items == nil || l.NextCursor == nil {
		f.t.Fatalf("list without items/next_cursor: %s", b)
	}
	return l.Items
}

func execSQL(t *testing.T, dbURL, q string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	must(t, err)
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// publishRaw stores a message on the alert stream as a publisher holding the signing key could,
// bypassing the webhook.
func publishRaw(t *testing.T, natsURL, msgID string, data []byte) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	must(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := &nats.Msg{Subject: "responder.alerts", Data: data, Header: nats.Header{"Nats-Msg-Id": {msgID}}}
	bus.Sign([]byte(busSigningKey), msg) // signed with the replicas' key: it gets as far as decoding
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// A group that fails permanently (here the database refuses its incident) is dead-lettered after
// its deliveries; once the cause is fixed, a replay processes it once, however often and however
// concurrently it is asked for.
func TestDeadLetterReplayedAfterTheCauseIsFixedActsOnce(t *testing.T) {
	ns := bustest.Start(t)
	db := pgtest.NewDatabase(t)
	f := startApp(t, fixtureOpts{natsURL: ns.URL(), dbURL: db})
	execSQL(t, db, `ALTER TABLE incidents ADD CONSTRAINT refuse_poison CHECK (labels->>'pod' IS DISTINCT FROM 'poison-1')`)
	if code := f.post(payload("firing", time.Now().Add(-time.Minute).UTC().Truncate(time.Second), "poison-1")); code != 200 {
		t.Fatalf("post: %d", code)
	}
	var dls []apiDeadLetter
	testwait.Until(t, 30*time.Second, "a dead letter", func() bool { dls = f.deadLetters(); return len(dls) == 1 })
	d := dls[0]
	if d.Reason != "permanent" || !strings.Contains(d.Error, "refuse_poison") || d.Deliveries != 3 || d.Size == 0 ||
		!strings.Contains(d.Preview, "poison-1") || d.ReplayedAt != nil || d.MsgID == "" {
		t.Fatalf("dead letter %+v", d)
	}
	// The gauge is refreshed in the background (every 100ms in the fixture).
	testwait.Until(t, 10*time.Second, "responder_dead_letters = 1", func() bool { return metricValue(t, f, "responder_dead_letters") == 1 })
	replay := fmt.Sprintf("/api/v1/dead-letters/%d/replay", d.ID)
	for _, tc := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"POST", replay, readToken, "", 403},
		{"POST", "/api/v1/dead-letters/999999/replay", adminToken, "", 404},
		{"POST", "/api/v1/dead-letters/replay", adminToken, fmt.Sprintf(`{"ids": [%d, 999999]}`, d.ID), 404},
		{"POST", "/api/v1/dead-letters/replay", adminToken, `{"ids": []}`, 400},
		{"POST", "/api/v1/dead-letters/x/replay", adminToken, "", 400},
		{"GET", "/api/v1/dead-letters?replayed=yes", readToken, "", 400},
	} {
		if code, b := f.do(tc.method, tc.path, tc.token, []byte(tc.body)); code != tc.want {
			t.Errorf("%s %s %s: %d, want %d: %s", tc.method, tc.path, tc.body, code, tc.want, b)
		}
	}
	if got := f.deadLetters(); got[0].ReplayedAt != nil {
		t.Fatalf("a refused replay marked the dead letter: %+v", got[0])
	}

	execSQL(t, db, `ALTER TABLE incidents DROP CONSTRAINT refuse_poison`) // the cause, fixed
	codes := make(chan int, 5)
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, b := f.do("POST", replay, adminToken, []byte(`{"by": "alice"}`))
			t.Logf("replay: %d %s", code, b)
			codes <- code
		}()
	}
	wg.Wait()
	close(codes)
	n := map[int]int{}
	for c := range codes {
		n[c]++
	}
	if n[200] != 1 || n[409] != 4 {
		t.Fatalf("concurrent replays answered %v, want one 200 and four 409", n)
	}
	testwait.Until(t, 20*time.Second, "the replayed alert's action", func() bool { return countState(f.actions(""), "succeeded") == 1 })
	got := f.deadLetters()
	if len(got) != 1 || got[0].ReplayedAt == nil || got[0].ReplayedBy != "api:alice" || got[0].ReplayMsgID != d.MsgID+fmt.Sprintf("/replay-%d", d.ID) {
		t.Fatalf("after the replay: %+v", got)
	}
	code, b := f.do("GET", "/api/v1/audit", readToken, nil)
	if code != 200 || !strings.Contains(string(b), `"reason": "replayed"`) {
		t.Fatalf("audit lacks the replay: %d %s", code, b)
	}

	// A second copy, as a replay past JetStream's duplicate window would store: the engine's keys
	// make it a no-op.
	dl, err := f.app.Store().GetDeadLetter(context.Background(), d.ID)
	must(t, err)
	publishRaw(t, ns.URL(), "another-replay-of-the-same-dead-letter", dl.Data)
	testwait.Until(t, 20*time.Second, "the bus to drain", func() bool {
		return metricValue(t, f, "responder_bus_pending_messages") == 0
	})
	if acts := f.actions(""); len(acts) != 1 {
		t.Fatalf("actions after a second copy: %v", acts)
	}
	if calls := f.sink.Calls(); len(calls) != 1 {
		t.Fatalf("sink calls = %+v, want 1", calls)
	}
	if len(f.deadLetters()) != 1 {
		t.Fatal("the second copy was dead-lettered")
	}
	testwait.Until(t, 10*time.Second, "responder_dead_letters = 0 after the replay", func() bool { return metricValue(t, f, "responder_dead_letters") == 0 })
	if v := metricValue(t, f, "responder_dead_letters_replayed_total"); v != 1 {
		t.Errorf("responder_dead_letters_replayed_total = %v, want 1", v)
	}
}

// An undecodable message is dead-lettered at once and shown whole; replaying it (it is still
// undecodable) brings it back as a new dead letter, while the first is marked replayed.
func TestUndecodableDeadLetterFailingAgainIsANewDeadLetter(t *testing.T) {
	ns := bustest.Start(t)
	f := startApp(t, fixtureOpts{natsURL: ns.URL()})
	publishRaw(t, ns.URL(), "garbage-1", []byte("{not json"))
	var dls []apiDeadLetter
	testwait.Until(t, 20*time.Second, "a dead letter", func() bool { dls = f.deadLetters(); return len(dls) == 1 })
	if d := dls[0]; d.Reason != "undecodable" || d.Deliveries != 1 || d.MsgID != "garbage-1" || d.Preview != "{not json" {
		t.Fatalf("dead letter %+v", d)
	}
	code, b := f.do("GET", fmt.Sprintf("/api/v1/dead-letters/%d", dls[0].ID), readToken, nil)
	var one apiDeadLetter
	if code != 200 || json.Unmarshal(b, &one) != nil || one.Data != "{not json" {
		t.Fatalf("GET one: %d %s", code, b)
	}
	code, b = f.do("POST", "/api/v1/dead-letters/replay", adminToken, []byte(fmt.Sprintf(`{"ids": [%d]}`, dls[0].ID)))
	if code != 200 || !strings.Contains(string(b), `"result": "replayed"`) {
		t.Fatalf("replay: %d %s", code, b)
	}
	testwait.Until(t, 20*time.Second, "the replay's own dead letter", func() bool { dls = f.deadLetters(); return len(dls) == 2 })
	if dls[0].MsgID != "garbage-1/replay-"+fmt.Sprint(dls[1].ID) || dls[0].ReplayedAt != nil || dls[1].ReplayedAt == nil {
		t.Fatalf("dead letters after the replay: %+v", dls)
	}
}

// logHook calls fn on each record with message msg, then logs it to t.
type logHook struct {
	slog.Handler
	msg string
	fn  func(slog.Record)
}

func (h logHook) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.fn(r)
	}
	return h.Handler.Handle(ctx, r)
}

func (h logHook) WithAttrs(as []slog.Attr) slog.Handler {
	return logHook{h.Handler.WithAttrs(as), h.msg, h.fn}
}

func (h logHook) WithGroup(g string) slog.Handler {
	return logHook{h.Handler.WithGroup(g), h.msg, h.fn}
}

// Retention never deletes a dead letter nobody replayed silently: it logs it (with its id) while
// it still exists, counts it, and only then deletes it.
func TestRetentionLogsUnreplayedDeadLettersBeforeDeleting(t *testing.T) {
	var mu sync.Mutex
	var logged []string
	var f *fixture
	hook := logHook{Handler: slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}),
		msg: "retention deletes dead letters nobody replayed"}
	hook.fn = func(r slog.Record) {
		line := fmt.Sprintf("level=%s", r.Level)
		r.Attrs(func(a slog.Attr) bool { line += fmt.Sprintf(" %s=%v", a.Key, a.Value); return true })
		left, _, err := f.app.Store().ListDeadLetters(context.Background(), store.DeadLetterFilter{})
		line += fmt.Sprintf(" still_stored=%d(err %v)", len(left), err)
		mu.Lock()
		logged = append(logged, line)
		mu.Unlock()
	}
	f = startApp(t, fixtureOpts{logger: hook})
	ctx := context.Background()
	old := time.Now().Add(-91 * 24 * time.Hour)
	id, err := f.app.Store().RecordDeadLetter(ctx, store.DeadLetterInsert{MsgID: "old", Reason: "permanent: boom", Data: []byte("[]"), At: old})
	must(t, err)
	must(t, f.app.Retain(ctx))
	mu.Lock()
	defer mu.Unlock()
	want := fmt.Sprintf("level=WARN count=1 ids=[%d]", id)
	// The app's own first pass may run at the same time and log it too: never zero times.
	if len(logged) == 0 {
		t.Fatalf("retention logged nothing, want a line starting %q", want)
	}
	// The pass that deletes it logs it first; a concurrent pass that read it too may log after
	// the other's delete (still_stored=0), but one line must come while it is still stored.
	stored := false
	for _, l := range logged {
		if !strings.HasPrefix(l, want) {
			t.Fatalf("logged %q, want lines starting %q", logged, want)
		}
		stored = stored || strings.Contains(l, "still_stored=1(err <nil>)")
	}
	if !stored {
		t.Fatalf("logged %q, want a line while the dead letter is still stored", logged)
	}
	if v := metricValue(t, f, "responder_dead_letters_deleted_unreplayed_total"); v != 1 {
		t.Errorf("responder_dead_letters_deleted_unreplayed_total = %v, want 1", v)
	}
	if dls := f.deadLetters(); len(dls) != 0 {
		t.Errorf("dead letters after retention: %+v", dls)
	}
}

// /api/v1/status answers 503 with the error when it cannot read the breakers or the bus: an empty
// breaker list or a zero backlog would be a lie.
func TestStatusFailsWhenBreakersOrBusUnreadable(t *testing.T) {
	ns := bustest.Start(t)
	db := pgtest.NewDatabase(t)
	f := startApp(t, fixtureOpts{natsURL: ns.URL(), dbURL: db})
	if code, b := f.do("GET", "/api/v1/status", readToken, nil); code != 200 {
		t.Fatalf("status: %d %s", code, b)
	}
	execSQL(t, db, `ALTER TABLE breakers RENAME TO breakers_away`)
	code, b := f.do("GET", "/api/v1/status", readToken, nil)
	if code != 503 || !strings.Contains(string(b), `"error"`) || !strings.Contains(string(b), "breakers") {
		t.Fatalf("status with the breakers unreadable: %d %s, want 503 naming the breakers", code, b)
	}
	execSQL(t, db, `ALTER TABLE breakers_away RENAME TO breakers`)
	testwait.Until(t, 10*time.Second, "status 200 again", func() bool { c, _ := f.do("GET", "/api/v1/status", readToken, nil); return c == 200 })
	ns.Shutdown()
	code, b = f.do("GET", "/api/v1/status", readToken, nil)
	if code != 503 || !strings.Contains(string(b), `"error"`) || !strings.Contains(string(b), "bus") {
		t.Fatalf("status with the bus down: %d %s, want 503 naming the bus", code, b)
	}
}
