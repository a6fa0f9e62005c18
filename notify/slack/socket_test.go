package slack

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack/slacktest"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/vocab"
)

// TestSocketMode drives RunSocketMode through a Socket Mode websocket served by slacktest: a slash
// command arrives in an envelope, is decided by the same code as POST /slack/commands, and is
// acknowledged with the ephemeral answer.
func TestSocketMode(t *testing.T) {
	e := newEnv(t)
	_, ids := e.incident("api-30", 1, vocab.StateAwaitingApproval)
	acks := make(chan map[string]any, 4)
	var srv *slacktest.Server
	srv = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/apps.connections.open", func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer xapp-test" {
				t.Errorf("apps.connections.open without the app-level token")
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "url": "ws://" + srv.ServerAddr + "/socket"})
		})
		c.Handle("/socket", slacktest.Websocket(func(conn *websocket.Conn) {
			cmd := map[string]any{"command": "/responder", "text": "approve " + strconv.FormatInt(ids[0], 10), "user_id": approverU1}
			for _, m := range []map[string]any{
				{"type": "hello", "num_connections": 1},
				{"type": "slash_commands", "envelope_id": "env-1", "payload": cmd, "accepts_response_payload": true},
			} {
				if err := conn.WriteJSON(m); err != nil {
					t.Errorf("write to the socket: %v", err)
					return
				}
			}
			for {
				var ack map[string]any
				if err := conn.ReadJSON(&ack); err != nil {
					return
				}
				acks <- ack
			}
		}))
	})
	srv.Start()
	t.Cleanup(srv.Stop)

	cfg := e.s.cfg
	cfg.SocketMode, cfg.AppToken, cfg.APIURL = true, config.Secret("xapp-test"), srv.GetAPIURL()
	s, err := New(cfg, Options{Store: e.st, Now: e.clock.Now,
		Approver: engine.Approvals{Store: e.st, TTL: e.ttl, Now: e.clock.Now}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.RunSocketMode(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunSocketMode = %v", err)
		}
	}()
	select {
	case ack := <-acks:
		b, _ := json.Marshal(ack)
		if ack["envelope_id"] != "env-1" || !strings.Contains(string(b), "You approved action") || !strings.Contains(string(b), `"response_type":"ephemeral"`) {
			t.Errorf("ack = %s", b)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no acknowledgement over the socket")
	}
	if a := e.action(ids[0]); a.State != vocab.StateApproved || a.ApprovedBy != "slack:"+approverU1 {
		t.Errorf("action = %s by %q", a.State, a.ApprovedBy)
	}
}
