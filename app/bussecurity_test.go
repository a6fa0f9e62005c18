package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/app"
	"github.com/responder-sre/responder/bus"
	"github.com/responder-sre/responder/bus/bustest"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

// TestForgedProbeFenceChangesNothing: anyone who can publish to the alert subject sends probe
// results with a fencing token of 2^62, unsigned and signed with a wrong key. Both are
// dead-lettered unread (bad_signature, audited), the fence is not raised, and the real probe's
// alerts still page.
func TestForgedProbeFenceChangesNothing(t *testing.T) {
	var down atomic.Bool
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(target.Close)
	ns := bustest.Start(t)
	db := pgtest.NewDatabase(t)
	s := newSink(t)
	f := startApp(t, fixtureOpts{natsURL: ns.URL(), dbURL: db, sink: s,
		extra: fmt.Sprintf(`probes:
  - name: api-health
    interval: 200ms
    timeout: 200ms
    failures_to_fire: 2
    successes_to_resolve: 2
    labels: {service: api}
    http: {url: %q}
`, target.URL+"/health"),
		rules: func(s *sink) string {
			return fmt.Sprintf(`
rules:
  - name: backend-down
    when: alert.source == "probe" && alert.name == "api-health" && alert.status == "firing"
    actions:
      - handler: http.request
        params: {url: "http://%s/page/{{ alert.labels.service }}", class: notify}
`, s.HostPort())
		},
	})
	testwait.Until(t, 60*time.Second, "a leader", func() bool { return metricValue(t, f, "responder_leader") == 1 })

	now := time.Now().UTC().Truncate(time.Second)
	labels := map[string]string{"alertname": "api-health", "service": "api"}
	forged, err := alert.AppendListJSON(nil, []alert.Alert{{Name: "api-health", Source: alert.SourceProbe,
		Status: alert.StatusResolved, Labels: labels, StartsAt: now, EndsAt: now, Fingerprint: alert.Fingerprint(labels),
		ReceivedAt: now, Fence: 1 << 62}})
	must(t, err)
	nc, err := nats.Connect(ns.URL())
	must(t, err)
	defer nc.Close()
	unsigned := &nats.Msg{Subject: "responder.alerts", Data: forged, Header: nats.Header{"Nats-Msg-Id": {"forged-unsigned"}}}
	wrongKey := &nats.Msg{Subject: "responder.alerts", Data: forged, Header: nats.Header{"Nats-Msg-Id": {"forged-wrong-key"}}}
	bus.Sign([]byte("a key of 32 bytes or more that is not the replicas'"), wrongKey)
	for _, m := range []*nats.Msg{unsigned, wrongKey} {
		if _, err := nc.RequestMsg(m, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	var dls []apiDeadLetter
	testwait.Until(t, 30*time.Second, "two dead letters", func() bool { dls = f.deadLetters(); return len(dls) == 2 })
	for _, d := range dls {
		if d.Reason != "bad_signature" || !strings.HasPrefix(d.MsgID, "forged-") || d.Deliveries != 1 {
			t.Errorf("dead letter %+v", d)
		}
	}
	code, body := f.do("GET", "/api/v1/audit", readToken, nil)
	if code != 200 || strings.Count(string(body), `"reason": "bad_signature"`) != 2 {
		t.Fatalf("audit lacks the two bad signatures: %d %s", code, body)
	}
	if tok := fenceToken(t, db); tok >= 1<<62 {
		t.Fatalf("the forged fence was accepted: %d", tok)
	}

	// The real probe still pages.
	down.Store(true)
	testwait.Until(t, 60*time.Second, "the page", func() bool {
		for _, c := range s.Calls() {
			if strings.HasPrefix(c.Path, "/page/api") {
				return true
			}
		}
		return false
	})
	if tok := fenceToken(t, db); tok <= 0 || tok >= 1<<62 {
		t.Fatalf("fence token %d, want the leader's", tok)
	}
}

// With nats.user and nats.password_file responder runs on a server that requires them; a wrong
// password stops the start with an error that says the server refused the credentials, and
// neither the error nor the log holds the password.
func TestBusUserAndPasswordFromConfig(t *testing.T) {
	ns := bustest.Start(t, func(o *server.Options) { o.Username, o.Password = "responder", "XXXXRIGHTPASS" })
	db := pgtest.NewDatabase(t)
	opts := fixtureOpts{natsURL: ns.URL(), dbURL: db}
	cfgWith := func(password string) fixtureOpts {
		o := opts
		o.files = map[string]string{"nats-password": password + "\n"}
		o.extra = ""
		o.natsAuth = "responder"
		return o
	}
	f := startApp(t, cfgWith("XXXXRIGHTPASS"))
	if code := f.post(payload("firing", time.Now().Add(-time.Minute).UTC().Truncate(time.Second), "auth-1")); code != 200 {
		t.Fatalf("post: %d", code)
	}
	testwait.Until(t, 30*time.Second, "the action", func() bool { return len(f.actions("")) == 1 })

	var logs lockedBuffer
	o := cfgWith("XXXXWRONGPASS")
	dir := t.TempDir()
	cfg := writeConfig(t, dir, newSink(t), o)
	_, err := app.New(context.Background(), app.Options{ConfigFile: cfg, ListenAddress: "127.0.0.1:0",
		StoragePath: filepath.Join(dir, "data"), Version: "test", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err == nil || !strings.Contains(err.Error(), `refused user "responder" and its password (authorization violation`) {
		t.Fatalf("start with a wrong password: %v", err)
	}
	for _, s := range []string{err.Error(), logs.String()} {
		if strings.Contains(s, "XXXX") {
			t.Errorf("%q holds the password", s)
		}
	}
}

// fenceToken is the highest probe fence the store accepted (0 when none).
func fenceToken(t *testing.T, dbURL string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	must(t, err)
	defer conn.Close(ctx)
	var tok int64
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(token), 0) FROM fences`).Scan(&tok); err != nil {
		t.Fatal(err)
	}
	return tok
}
