package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/drill"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
	"github.com/responder-sre/responder/vocab"
)

// The runbooks' drills shipped in examples/drills, run by the CLI's code (drill.Runner through
// drill.HTTPTarget: the API and the webhook) against a real responder and real servers. Each
// logs its report; README "Drills" shows them.

// exampleDrill loads the scenario of examples/drills/<file>.
func exampleDrill(t *testing.T, file string) config.Drill {
	t.Helper()
	ds, err := config.LoadDrills(filepath.Join("..", "examples", "drills", file))
	if err != nil || len(ds) != 1 {
		t.Fatalf("examples/drills/%s: %d drills, %v", file, len(ds), err)
	}
	return ds[0]
}

// runDrill runs d against f as `responder drill run` would, and logs the report.
func runDrill(t *testing.T, f *fixture, d config.Drill) drill.Report {
	t.Helper()
	dir := t.TempDir()
	api, hook := filepath.Join(dir, "api-token"), filepath.Join(dir, "webhook-token")
	must(t, os.WriteFile(api, []byte(adminToken+"\n"), 0o600))
	must(t, os.WriteFile(hook, []byte(hookToken+"\n"), 0o600))
	target, err := drill.NewHTTPTarget(f.base, api, hook, nil)
	must(t, err)
	r := drill.Runner{Target: target, Poll: 100 * time.Millisecond}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	rep := r.Run(ctx, d)
	b, _ := json.MarshalIndent(rep, "", "  ")
	t.Logf("drill %s: passed=%v rto=%.0fs detect=%.3fs decide=%.3fs approve=%.3fs act=%.3fs recover=%.3fs failure=%q\n%s",
		rep.Name, rep.Passed, rep.RTOSeconds, rep.DetectSeconds, rep.DecideSeconds, rep.ApproveSeconds, rep.ActSeconds, rep.RecoverSeconds, rep.Failure, b)
	return rep
}

// checkRecorded checks the API's history has rep's run, finished as rep says.
func checkRecorded(t *testing.T, f *fixture, rep drill.Report) {
	t.Helper()
	_, b := f.do("GET", "/api/v1/drills?name="+rep.Name, readToken, nil)
	var l struct {
		Items []struct {
			RunID  string `json:"run_id"`
			Passed *bool  `json:"passed"`
		} `json:"items"`
	}
	must(t, json.Unmarshal(b, &l))
	for _, it := range l.Items {
		if it.RunID == rep.RunID {
			if it.Passed == nil || *it.Passed != rep.Passed {
				t.Errorf("drill history says passed=%v for %s, the report %v", it.Passed, rep.RunID, rep.Passed)
			}
			return
		}
	}
	t.Errorf("GET /api/v1/drills lacks run %s: %s", rep.RunID, b)
}

// failoverPair is one streaming pair of the failover drills: cluster name, its probe name-db.
func failoverPair(name string, primary, standby *pgtest.Server) string {
	return fmt.Sprintf(`      %[1]s:
        primary: {dsn: %[2]q}
        standbys: [{name: %[1]s-2, dsn: %[3]q}]
        detect: {failures: 2, min_period: 200ms}
`, name, primary.URL("postgres")+"&connect_timeout=1", standby.URL("postgres")+"&connect_timeout=1")
}

func failoverProbe(name string, primary *pgtest.Server) string {
	return fmt.Sprintf(`  - name: %[1]s-db
    interval: 100ms
    timeout: 100ms
    labels: {cluster: %[1]s}
    postgres: {dsn: %[2]q}
`, name, primary.URL("postgres")+"&connect_timeout=1")
}

// failoverRule is the pack's database-failover (rules/database.yml) for cluster name, with a
// short `for`: promote after approval, then repoint the clients with the promotion's result.
func failoverRule(rule, name string, s *sink) string {
	return fmt.Sprintf(`
  - name: %[1]s
    when: alert.source == "probe" && alert.name == "%[2]s-db" && alert.status == "firing" && alert.labels.role != "standby"
    for: 1s
    actions:
      - id: promote
        handler: postgres.promote
        params: {cluster: %[2]s, candidate: %[2]s-2}
        approval: required
      - handler: http.request
        params:
          url: "http://%[3]s/v1/kv/db/%[2]s/primary"
          method: PUT
          body: '{{ toJSON({primary: steps.promote.result.new_primary}) }}'
`, rule, name, s.HostPort())
}

// TestDrillDatabaseFailover: examples/drills/database-failover.yml on a real streaming pair: the
// drill stops the primary (pg_ctl stop -m immediate), the orders-db probe detects it, the
// promotion the drill approves runs and verifies a write, the clients are repointed, and recover
// fits the RTO. The same drill with rto 1s, on a second pair, fails and says why.
func TestDrillDatabaseFailover(t *testing.T) {
	p1 := pgtest.StartServer(t)
	s1 := pgtest.StartStandby(t, p1)
	p2 := pgtest.StartServer(t)
	s2 := pgtest.StartStandby(t, p2)
	f := startApp(t, fixtureOpts{
		extra: "  postgres:\n    clusters:\n" + failoverPair("orders", p1, s1) + failoverPair("ledger", p2, s2) +
			"probes:\n" + failoverProbe("orders", p1) + failoverProbe("ledger", p2),
		rules: func(s *sink) string {
			return "rules:" + failoverRule("database-failover", "orders", s) + failoverRule("ledger-failover", "ledger", s)
		},
	})
	testwait.Until(t, time.Minute, "both probes to see their primaries", func() bool {
		return metricValue(t, f, "responder_probe_success") == 2
	})

	d := exampleDrill(t, "database-failover.yml")
	d.Inject.Exec = p1.StopImmediateCommand()
	rep := runDrill(t, f, d)
	if !rep.Passed || rep.Failure != "" {
		t.Fatalf("the failover drill failed: %s", rep.Failure)
	}
	if len(rep.Steps) != 2 || rep.Steps[0].Handler != "postgres.promote" || rep.Steps[0].ApprovedBy != "drill:database-failover" ||
		rep.Steps[1].Handler != "http.request" || rep.Steps[1].State != vocab.StateSucceeded {
		t.Fatalf("steps = %+v, want the promotion approved by drill:database-failover, then the repoint", rep.Steps)
	}
	for name, v := range map[string]float64{"detect": rep.DetectSeconds, "decide": rep.DecideSeconds, "approve": rep.ApproveSeconds,
		"act": rep.ActSeconds, "recover": rep.RecoverSeconds} {
		if v <= 0 || v > rep.RecoverSeconds {
			t.Errorf("%s = %.3fs, want > 0 and within recover %.3fs", name, v, rep.RecoverSeconds)
		}
	}
	if got := rep.DetectSeconds + rep.DecideSeconds; got > rep.RecoverSeconds {
		t.Errorf("detect + decide = %.3fs > recover %.3fs", got, rep.RecoverSeconds)
	}
	writable(t, s1)
	checkRecorded(t, f, rep)
	repointed := slices.ContainsFunc(f.sink.Calls(), func(c sinkCall) bool { return c.Path == "/v1/kv/db/orders/primary" })
	if !repointed {
		t.Error("the clients were not repointed")
	}

	// The same drill with an RTO it cannot meet.
	d2 := exampleDrill(t, "database-failover.yml")
	d2.Name, d2.RTO = "ledger-failover-1s", config.Duration(time.Second)
	d2.Inject.Exec, d2.Inject.Probes = p2.StopImmediateCommand(), []string{"ledger-db"}
	for i := range d2.Expect {
		d2.Expect[i].Rule = "ledger-failover"
	}
	rep2 := runDrill(t, f, d2)
	if rep2.Passed || !strings.Contains(rep2.Failure, "exceeds rto 1s") {
		t.Fatalf("with rto 1s: passed=%v failure %q, want a failure saying recover exceeds rto 1s", rep2.Passed, rep2.Failure)
	}
	if !slices.ContainsFunc(rep2.Steps, func(s drill.Step) bool { return s.Met }) {
		t.Errorf("with rto 1s the remediation itself should still have worked: %+v", rep2.Steps)
	}
	writable(t, s2)
	checkRecorded(t, f, rep2)
	// Both drills' latest runs: 1 (passed) + 0 (failed).
	if v := metricValue(t, f, "responder_drill_success"); v != 1 {
		t.Errorf("responder_drill_success summed over the two drills = %v, want 1 (one passed, one failed)", v)
	}
}

// writable checks a promoted standby takes writes.
func writable(t *testing.T, s *pgtest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	must(t, err)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS drill_write (n int); INSERT INTO drill_write VALUES (1)`); err != nil {
		t.Fatalf("the promoted standby does not take writes: %v", err)
	}
}

// TestDrillBackupFreshness: examples/drills/backup-freshness.yml: the drill ages the WAL archive
// by two hours, the backup probe (max_age 1h: the RPO) sees it, and backup-stale pages; a drill's
// page is recorded (dry_run, reason drill), never sent to the real pager.
func TestDrillBackupFreshness(t *testing.T) {
	wal := filepath.Join(t.TempDir(), "wal")
	must(t, os.MkdirAll(wal, 0o755))
	for _, seg := range []string{"000000010000000000000001", "000000010000000000000002"} {
		must(t, os.WriteFile(filepath.Join(wal, seg), []byte("wal"), 0o644))
	}
	sk := newSink(t)
	f := startApp(t, fixtureOpts{
		sink: sk,
		// The pager is the sink: a page that went out would show there.
		extra: fmt.Sprintf(`  page:
    webhook: {url: "http://%s/pagerduty", routing_key: drill-test-routing-key}
probes:
  - name: orders-wal-files
    interval: 100ms
    labels: {cluster: orders, severity: critical}
    backup: {max_age: 1h, glob: %q}
`, sk.HostPort(), wal+"/*"),
		// The pack's backup-stale (rules/backups.yml) with a short for.
		rules: func(*sink) string {
			return `rules:
  - name: backup-stale
    when: alert.source == "probe" && alert.labels.probe_kind == "backup" && alert.status == "firing"
    for: 1s
    actions:
      - handler: page.webhook
        params: {summary: "{{ alert.labels.cluster }} backups are stale (RPO 1h)", severity: critical}
`
		},
	})
	testwait.Until(t, time.Minute, "the backup probe to succeed", func() bool {
		return metricValue(t, f, "responder_probe_success") == 1
	})
	d := exampleDrill(t, "backup-freshness.yml")
	d.Inject.Exec = slices.Clone(d.Inject.Exec)
	d.Inject.Exec[1] = wal
	rep := runDrill(t, f, d)
	if !rep.Passed {
		t.Fatalf("the backup drill failed: %s", rep.Failure)
	}
	for _, s := range rep.Steps {
		if s.Reason != vocab.ReasonDrill {
			t.Errorf("step %s: reason %q, want drill (a drill's page is not sent)", s.Handler, s.Reason)
		}
	}
	if calls := f.sink.Calls(); len(calls) != 0 {
		t.Fatalf("a drill paged the real on-call: %+v", calls)
	}
	checkRecorded(t, f, rep)
}

// TestDrillServiceRestart: examples/drills/service-restart.yml on the test control plane: a
// synthetic crash-loop alert (through the webhook, marked as the drill's) leads to
// k8s.restart_pod, the replacement pod is Ready, and recover fits the RTO; the drill then sends
// the resolve.
func TestDrillServiceRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	k := startKubeWeb(t, ctx)
	cs, ns, f := k.cs, k.ns, k.f
	victim := k.before["web"][0]
	d := exampleDrill(t, "service-restart.yml")
	d.Inject.Alerts[0].Labels["namespace"], d.Inject.Alerts[0].Labels["pod"] = ns, victim
	rep := runDrill(t, f, d)
	if !rep.Passed {
		t.Fatalf("the restart drill failed: %s", rep.Failure)
	}
	after, _, err := readyByApp(ctx, cs, ns)
	must(t, err)
	if len(after["web"]) != 3 || slices.Contains(after["web"], victim) {
		t.Fatalf("ready pods after the drill = %v, want 3 without %s", after["web"], victim)
	}
	testwait.Until(t, 30*time.Second, "the drill's resolve to resolve the incident", func() bool {
		_, b := f.do("GET", "/api/v1/incidents?drill="+rep.RunID, readToken, nil)
		var l struct {
			Items []struct {
				State vocab.IncidentState `json:"state"`
			} `json:"items"`
		}
		must(t, json.Unmarshal(b, &l))
		return len(l.Items) == 1 && l.Items[0].State == vocab.IncidentResolved
	})
	checkRecorded(t, f, rep)
}
