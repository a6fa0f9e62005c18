package ruletest_test

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/builtin"
	"github.com/responder-sre/responder/rules"
)

// signal is one alert an outage raises: a probe of examples/runbook/responder.yml failing (with
// its labels, kind and a value), or an Alertmanager alert.
type signal struct {
	probe  string
	value  float64
	labels map[string]string // extra labels (Alertmanager: all of them)
	am     string            // an Alertmanager alertname instead of a probe
}

// runbookSystems lists every system the disaster-recovery runbooks name, with the alerts one
// outage of it raises together, and the one rule that must handle that outage. A system without a
// rule, a rule without a rules test, or an outage that opens a second incident fails the test.
var runbookSystems = []struct {
	system  string
	outage  []signal
	rule    string
	handler string // a handler the rule's actions must run
}{
	{"backend API: /health unavailable > 1 min (critical), rollout restart", []signal{{probe: "api-health"},
		{probe: "api-error-rate", value: 0.6}, {probe: "api-latency-p95", value: 9}}, "backend-down", "k8s.rollout_restart"},
	{"frontend: rollout restart", []signal{{probe: "web-health"}}, "frontend-down", "k8s.rollout_restart"},
	{"database: fail over to the standby", []signal{{probe: "orders-db"},
		{probe: "orders-wal-archive", value: 7200}}, "database-failover", "postgres.promote"},
	{"backups: RPO 1h", []signal{{probe: "orders-wal-archive", value: 7200}}, "backup-stale", "page.webhook"},
	{"backups: nightly base backup", []signal{{probe: "orders-base-backup", value: 200000}}, "backup-stale", "page.webhook"},
	{"Vault sealed", []signal{{probe: "vault-health", labels: map[string]string{"http_status": "503"}}}, "vault-sealed", "page.webhook"},
	{"Vault unhealthy", []signal{{probe: "vault-health", labels: map[string]string{"http_status": "501"}}}, "vault-unhealthy", "page.webhook"},
	{"Redis connectivity", []signal{{probe: "redis"}, {probe: "celery-queue"}}, "redis-down", "page.webhook"},
	{"Celery workers: scale on queue depth", []signal{{probe: "celery-queue", value: 900}}, "scale-celery-workers", "k8s.scale"},
	{"application pods: delete the pod in error", []signal{{am: "KubePodCrashLooping",
		labels: map[string]string{"namespace": "shop", "pod": "api-7d9f-x2x4q"}}}, "restart-crashlooping-pod", "k8s.restart_pod"},
	{"response time > 2 s (warning)", []signal{{probe: "api-latency-p95", value: 3}}, "slow-responses", "page.webhook"},
	{"error rate > 5 % (warning)", []signal{{probe: "api-error-rate", value: 0.07}}, "error-rate-high", "page.webhook"},
	{"disk space < 10 % (critical)", []signal{{probe: "data-disk", value: 0.05}}, "disk-low", "page.webhook"},
	{"memory > 80 % (warning)", []signal{{probe: "node-memory", value: 0.91}}, "memory-high", "page.webhook"},
	{"TLS certificate expiry", []signal{{probe: "api-tls", value: 9}}, "tls-expiring", "page.webhook"},
}

// firingSet is the snapshot of an outage's alerts, for firing().
type firingSet []alert.Alert

func (f firingSet) Firing(name string, labels map[string]string) bool {
	return slices.ContainsFunc(f, func(a alert.Alert) bool {
		if a.Name != name {
			return false
		}
		for k, v := range labels {
			if a.Labels[k] != v {
				return false
			}
		}
		return true
	})
}

// TestRunbookPackCoversEverySystem loads the pack as `responder serve` would
// (examples/runbook/responder.yml and its rule_files) and, for each system of the runbooks,
// raises its outage's alerts together: exactly one rule must match them (one incident, one
// page), it must run the system's remediation, and a rules test file must test it.
func TestRunbookPackCoversEverySystem(t *testing.T) {
	cfg, err := config.Load("../examples/runbook/responder.yml")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := builtin.Registry(handlers.Env{Config: cfg, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	paths, err := cfg.RuleFilePaths()
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.LoadFiles(paths, reg)
	if err != nil {
		t.Fatal(err)
	}
	tested := testedRules(t)
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	covered := map[string]bool{}
	for _, sys := range runbookSystems {
		t.Run(sys.system, func(t *testing.T) {
			alerts := make(firingSet, 0, len(sys.outage))
			for _, s := range sys.outage {
				alerts = append(alerts, outageAlert(t, cfg, s, now))
			}
			matched := map[string]bool{}
			for _, a := range alerts {
				for _, r := range set.Rules {
					ok, err := r.Match(rules.NewEnv(a, now, alerts))
					if err != nil {
						t.Fatalf("rule %s on %s: %v", r.Name, a.Name, err)
					}
					if ok {
						matched[r.Name] = true
					}
				}
			}
			if got := slices.Sorted(maps.Keys(matched)); !slices.Equal(got, []string{sys.rule}) {
				t.Fatalf("the outage's alerts match rules %v; want exactly [%s] (one outage, one incident)", got, sys.rule)
			}
			r := set.Rule(sys.rule)
			if !slices.ContainsFunc(r.Actions, func(a *rules.Action) bool { return a.Handler == sys.handler }) {
				t.Errorf("rule %s does not run %s", sys.rule, sys.handler)
			}
			if !tested[sys.rule] {
				t.Errorf("no rules test (examples/runbook/*_test.yml) expects an action of rule %s", sys.rule)
			}
			covered[sys.rule] = true
		})
	}
	for _, r := range set.Rules {
		if !covered[r.Name] && r.Name != "statuspage-component" {
			t.Errorf("rule %s (%s:%d) serves no system of runbookSystems: add it there", r.Name, r.File, r.Line)
		}
	}
}

// outageAlert is the firing alert s stands for, labelled as the probe runner labels it.
func outageAlert(t *testing.T, cfg *config.Config, s signal, now time.Time) alert.Alert {
	t.Helper()
	labels := map[string]string{}
	src := alert.SourceAlertmanager
	name := s.am
	if s.probe != "" {
		i := slices.IndexFunc(cfg.Probes, func(p config.ProbeConfig) bool { return p.Name == s.probe })
		if i < 0 {
			t.Fatalf("examples/runbook/responder.yml has no probe %q", s.probe)
		}
		p := cfg.Probes[i]
		maps.Copy(labels, p.Labels)
		labels["probe_kind"] = p.Kind()
		labels["instance"] = "target-of-" + p.Name
		src, name = alert.SourceProbe, p.Name
	}
	maps.Copy(labels, s.labels)
	labels["alertname"] = name
	var value *float64
	if src == alert.SourceProbe {
		value = &s.value
	}
	return alert.Alert{
		Name: name, Source: src, Status: alert.StatusFiring, Labels: labels, Value: value,
		Annotations: map[string]string{"summary": "outage"},
		StartsAt:    now.Add(-10 * time.Minute), Fingerprint: alert.Fingerprint(labels), ReceivedAt: now,
	}
}

var expRule = regexp.MustCompile(`rule:\s*([a-z0-9-]+)`)

// testedRules is the set of rules some examples/runbook/*_test.yml expects an action of.
func testedRules(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("../examples/runbook/*_test.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule pack tests: %v", err)
	}
	out := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range expRule.FindAllStringSubmatch(string(b), -1) {
			out[strings.TrimSpace(m[1])] = true
		}
	}
	return out
}
