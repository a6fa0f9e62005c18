package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

// TestDatabaseFailoverEndToEnd: a streaming pair; the primary stops → the postgres probe fires →
// after `for` the promotion waits for approval (nothing is promoted before it) → approved through
// the API → the standby is promoted, verified, and takes writes; the next step (re-trigger the
// pipelines) runs once.
// ordersPairConfig is the config (below handlers:) of cluster orders on a streaming pair, with a
// fast orders-db probe on its primary.
func ordersPairConfig(primary, standby *pgtest.Server) string {
	return fmt.Sprintf(`  postgres:
    clusters:
      orders:
        primary: {dsn: %q}
        standbys: [{name: orders-2, dsn: %q}]
        detect: {failures: 2, min_period: 200ms}
probes:
  - name: orders-db
    interval: 100ms
    timeout: 100ms
    labels: {cluster: orders}
    postgres: {dsn: %q}
`, primary.URL("postgres")+"&connect_timeout=1", standby.URL("postgres")+"&connect_timeout=1", primary.URL("postgres")+"&connect_timeout=1")
}

func TestDatabaseFailoverEndToEnd(t *testing.T) {
	primary := pgtest.StartServer(t)
	standby := pgtest.StartStandby(t, primary)
	f := startApp(t, fixtureOpts{
		extra: ordersPairConfig(primary, standby),
		rules: func(s *sink) string {
			return fmt.Sprintf(`
rules:
  - name: database-failover
    when: alert.source == "probe" && alert.name == "orders-db" && alert.status == "firing" && alert.labels.role != "standby"
    for: 1s
    actions:
      - handler: postgres.promote
        approval: required
        params: {cluster: orders, candidate: orders-2}
      - handler: http.request
        params: {url: "http://%s/dags/orders_ingest/dagRuns", class: notify}
`, s.HostPort())
		},
	})
	t.Cleanup(func() {
		if t.Failed() {
			_, b := f.do("GET", "/api/v1/actions", readToken, nil)
			t.Logf("actions %s", b)
		}
	})
	inRecovery := func() bool {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, standby.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var rec bool
		must(t, conn.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&rec))
		return rec
	}
	type action struct {
		ID         int64  `json:"id"`
		IncidentID int64  `json:"incident_id"`
		Handler    string `json:"handler"`
		State      string `json:"state"`
		Result     string `json:"result"`
	}
	actions := func() []action {
		_, b := f.do("GET", "/api/v1/actions", readToken, nil)
		var l struct{ Items []action }
		must(t, json.Unmarshal(b, &l))
		return l.Items
	}
	promote := func() *action {
		for _, a := range actions() {
			if a.Handler == "postgres.promote" {
				return &a
			}
		}
		return nil
	}

	testwait.Until(t, 60*time.Second, "the probe to see the primary", func() bool { return metricValue(t, f, "responder_probe_success") == 1 })
	primary.Stop(t)
	start := time.Now()
	testwait.Until(t, 60*time.Second, "the promotion to await approval", func() bool { a := promote(); return a != nil && a.State == "awaiting_approval" })
	detected := time.Since(start)
	// Nothing is promoted while nobody approved: the standby is still one now, and the audit trail
	// shows below that the promotion started only after the approval.
	if !inRecovery() {
		t.Fatal("the standby was promoted without approval")
	}
	id := promote().ID
	var full struct {
		Evidence string `json:"evidence"`
	}
	_, b := f.do("GET", fmt.Sprintf("/api/v1/actions/%d", id), readToken, nil)
	must(t, json.Unmarshal(b, &full))
	if !strings.Contains(full.Evidence, "candidate orders-2") {
		t.Errorf("the approval request does not describe the candidate: evidence %q", full.Evidence)
	}
	if code, b := f.do("POST", fmt.Sprintf("/api/v1/actions/%d/approve", id), adminToken, []byte(`{"by":"alice"}`)); code != 200 {
		t.Fatalf("approve: %d %s", code, b)
	}
	approved := time.Now()
	testwait.Until(t, 60*time.Second, "the promotion to succeed", func() bool { return promote().State == "succeeded" })
	recovered := time.Since(approved)
	if inRecovery() {
		t.Fatal("the standby is still in recovery after a succeeded promotion")
	}
	startedAfterApproval(t, f, promote().IncidentID, id)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, standby.URL("postgres"))
	must(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `CREATE TABLE after_failover (id int); INSERT INTO after_failover VALUES (1)`)
	must(t, err)
	if r := promote().Result; !strings.Contains(r, "recover") {
		t.Errorf("the result does not report the time to recover: %q", r)
	}
	testwait.Until(t, 60*time.Second, "the pipelines to be re-triggered", func() bool {
		for _, c := range f.sink.Calls() {
			if c.Path == "/dags/orders_ingest/dagRuns" {
				return true
			}
		}
		return false
	})
	t.Logf("primary stopped → awaiting approval in %s; approved → promoted and verified in %s", detected.Round(time.Millisecond), recovered.Round(time.Millisecond))
}

// startedAfterApproval checks in the audit trail of incident that action started (the executor
// audits "started" in the transaction that claims the action, before the handler runs) only after
// its approval was recorded: audit ids grow with every insert.
func startedAfterApproval(t *testing.T, f *fixture, incident, action int64) {
	t.Helper()
	_, b := f.do("GET", fmt.Sprintf("/api/v1/audit?incident=%d&limit=1000", incident), readToken, nil)
	var l struct {
		Items []struct {
			ID       int64  `json:"id"`
			ActionID *int64 `json:"action_id"`
			Kind     string `json:"kind"`
			Reason   string `json:"reason"`
		} `json:"items"`
	}
	must(t, json.Unmarshal(b, &l))
	var approval int64
	var started []int64
	for _, e := range l.Items {
		if e.ActionID == nil || *e.ActionID != action {
			continue
		}
		switch {
		case e.Kind == "approval":
			approval = max(approval, e.ID) // the decision that approved it
		case e.Kind == "action" && e.Reason == "started":
			started = append(started, e.ID)
		}
	}
	if approval == 0 || len(started) == 0 {
		t.Fatalf("action %d: no approval or no start in the audit trail: %s", action, b)
	}
	for _, id := range started {
		if id < approval {
			t.Fatalf("action %d started (audit %d) before its approval (audit %d): %s", action, id, approval, b)
		}
	}
}
