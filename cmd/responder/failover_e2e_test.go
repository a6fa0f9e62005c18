package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

// TestPromotionCrashBetweenFenceAndPromote: responder is SIGKILLed in the middle of a promotion,
// after it fenced the old primary and before it promoted the standby (its fence URL hangs). On
// restart the action is unknown and pages; nothing is re-run (the standby stays a standby), and a
// later alert's promotion refuses the half-done cluster and pages again.
func TestPromotionCrashBetweenFenceAndPromote(t *testing.T) {
	primary := pgtest.StartServer(t)
	standby := pgtest.StartStandby(t, primary)
	s := newBlockingSink(t, "/fence")
	host := s.Listener.Addr().String()
	dir := setup(t, &sink{Server: s.Server}, pgtest.NewDatabase(t), fmt.Sprintf(`  postgres:
    clusters:
      orders:
        primary: {dsn: %q}
        standbys: [{name: orders-2, dsn: %q}]
        fence: {url: "http://%s/fence", timeout: 5m}
safety:
  lease_duration: 2s
`, primary.URL("postgres"), standby.URL("postgres"), host))
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), []byte(fmt.Sprintf(`rules:
  - name: planned-failover
    when: alert.name == "DatabaseUnwritable" && alert.status == "firing"
    actions:
      - handler: postgres.promote
        approval: none
        params: {cluster: orders, candidate: orders-2, require_primary_down: false}
    escalate:
      - handler: http.request
        params: {url: "http://%s/page", class: notify}
`, host)), 0o644); err != nil {
		t.Fatal(err)
	}
	storage := t.TempDir()
	p := serve(t, dir, storage, freePort(t))
	post := func(p *proc, starts time.Time) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"version": "4", "status": "firing", "receiver": "responder", "groupKey": "db",
			"alerts": []map[string]any{{"status": "firing", "startsAt": starts, "endsAt": time.Time{},
				"labels": map[string]string{"alertname": "DatabaseUnwritable", "cluster": "orders"}}}})
		req, _ := http.NewRequest(http.MethodPost, p.base+"/webhook/alertmanager", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+hookToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("webhook: %d", resp.StatusCode)
		}
	}
	query := func(url, q string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var v string
		if err := conn.QueryRow(ctx, q).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	post(p, time.Now().Add(-time.Minute).UTC().Truncate(time.Second))
	testwait.Until(t, 30*time.Second, "the fence call (the SQL fence is done)", func() bool { return s.count("/fence") == 1 })
	if ro := query(primary.URL("postgres"), `SHOW default_transaction_read_only`); ro != "on" {
		t.Fatalf("old primary default_transaction_read_only = %s, want on (fenced)", ro)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()

	p = serve(t, dir, storage, freePort(t))
	var killed ctlAction
	testwait.Until(t, 30*time.Second, "the promotion to become unknown and page", func() bool {
		for _, x := range ctlActions(t, p) {
			if x.Phase == "actions" {
				killed = x
			}
		}
		return killed.State == "unknown" && s.count("/page") == 1
	})
	if killed.Reason != "lease_expired" {
		t.Errorf("killed promotion: %s/%s, want unknown/lease_expired", killed.State, killed.Reason)
	}
	if rec := query(standby.URL("postgres"), `SELECT pg_is_in_recovery()::text`); rec != "true" {
		t.Fatal("the standby was promoted after the crash: a half-done promotion was re-run")
	}

	// A new alert episode: its promotion sees the half-done cluster, refuses, and pages.
	post(p, time.Now().UTC().Truncate(time.Second))
	testwait.Until(t, 30*time.Second, "the second promotion to refuse and page", func() bool {
		for _, x := range ctlActions(t, p) {
			if x.Phase == "actions" && x.ID != killed.ID && x.State == "failed" {
				return s.count("/page") == 2
			}
		}
		return false
	})
	var refused ctlAction
	for _, x := range ctlActions(t, p) {
		if x.Phase == "actions" && x.ID != killed.ID {
			refused = x
		}
	}
	var full struct {
		Error string `json:"error"`
	}
	p.get(t, fmt.Sprintf("/api/v1/actions/%d", refused.ID), &full)
	if refused.Reason != "client_error" || !strings.Contains(full.Error, "half-done") {
		t.Errorf("second promotion: %s/%s %q, want failed/client_error half-done", refused.State, refused.Reason, full.Error)
	}
	if rec := query(standby.URL("postgres"), `SELECT pg_is_in_recovery()::text`); rec != "true" {
		t.Fatal("the standby was promoted by the second alert")
	}
	if n := s.count("/fence"); n != 1 {
		t.Errorf("fence URL called %d times, want 1", n)
	}
}
