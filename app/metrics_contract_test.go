package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/responder-sre/responder/internal/testwait"
)

// Files whose PromQL must only name metrics responder exposes.
const (
	dashboardFile = "../deploy/grafana/responder.json"
	alertsFile    = "../deploy/helm/responder/files/prometheus-rules.yml"
	promqlTool    = "../tools/promql"
)

// TestMetricsContract extracts every metric name from the Grafana dashboard's and the
// PrometheusRule's PromQL (with the promql/parser package, through tools/promql) and checks each
// against /metrics after a scripted run: an alert → an action, an approval, a breaker opened by
// failing actions, a probe and a budget configured, a drill run.
func TestMetricsContract(t *testing.T) {
	// Build the PromQL tool while the app runs.
	type built struct {
		bin string
		err error
	}
	toolc := make(chan built, 1)
	go func() {
		bin := filepath.Join(t.TempDir(), "promql-metrics")
		cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".")
		cmd.Dir = promqlTool
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("go build in %s: %w\n%s", promqlTool, err, out)
		}
		toolc <- built{bin, err}
	}()

	probeTarget := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	t.Cleanup(probeTarget.Close)
	f := startApp(t, fixtureOpts{
		extra: fmt.Sprintf(`probes:
  - name: api-health
    interval: 100ms
    timeout: 100ms
    http: {url: %q}
safety:
  breaker: {failures: 2, open_for: 1h}
  budgets:
    - {name: everything, match: "*", per: global, max: 100, window: 1h}
drills:                       # scheduled once a year: responder_drill_schedule_interval_seconds
  - name: yearly
    schedule: "0 3 1 1 *"
    rto: 1m
    inject:
      alerts:
        - labels: {alertname: Yearly}
    expect:
      - {rule: act, handler: http.request}
`, probeTarget.URL+"/health"),
		rules: func(s *sink) string {
			return fmt.Sprintf(`
rules:
  - name: act
    when: alert.name == "KubePodCrashLooping" && alert.labels.pod == "ok-1"
    actions:
      - handler: http.request
        params: {url: "http://%[1]s/ok/{{ alert.labels.pod }}"}
  - name: careful
    when: alert.name == "KubePodCrashLooping" && alert.labels.pod == "approve-1"
    actions:
      - handler: http.request
        approval: required
        params: {url: "http://%[1]s/approved/{{ alert.labels.pod }}"}
  - name: broken
    when: alert.name == "KubePodCrashLooping" && alert.labels.pod startsWith "fail-"
    actions:
      # Go's HTTP server answers an Expect it does not know with 417: a client_error failure.
      - handler: http.request
        params: {url: "http://%[1]s/fail/{{ alert.labels.pod }}", headers: {Expect: "fail"}}
`, s.HostPort())
		},
	})
	starts := time.Now().UTC().Truncate(time.Second)
	state := func(rule string) string {
		items := f.actions("?rule=" + rule)
		if len(items) != 1 {
			return fmt.Sprintf("%d actions", len(items))
		}
		return fmt.Sprint(items[0]["state"])
	}

	// An alert → an action.
	if code := f.post(payload("firing", starts, "ok-1")); code != 200 {
		t.Fatalf("post: %d", code)
	}
	testwait.Until(t, 20*time.Second, "the action to succeed", func() bool { return state("act") == "succeeded" })

	// An approval.
	if code := f.post(payload("firing", starts, "approve-1")); code != 200 {
		t.Fatalf("post: %d", code)
	}
	testwait.Until(t, 20*time.Second, "the action to await approval", func() bool { return state("careful") == "awaiting_approval" })
	id := int(f.actions("?rule=careful")[0]["id"].(float64))
	if code, b := f.do(http.MethodPost, fmt.Sprintf("/api/v1/actions/%d/approve", id), adminToken, []byte(`{"by":"alice"}`)); code != 200 {
		t.Fatalf("approve: %d %s", code, b)
	}
	testwait.Until(t, 20*time.Second, "the approved action to succeed", func() bool { return state("careful") == "succeeded" })

	// A breaker opened by failing disruptive actions.
	if code := f.post(payload("firing", starts, "fail-1", "fail-2")); code != 200 {
		t.Fatalf("post: %d", code)
	}
	testwait.Until(t, 20*time.Second, "the breaker to open", func() bool { return cachedMetric(t, f, "responder_breaker_state") == 2 })
	if n := countState(f.actions("?rule=broken"), "failed"); n != 2 {
		t.Fatalf("failed actions of rule broken = %d, want 2", n)
	}
	// A probe that has run.
	testwait.Until(t, 20*time.Second, "the probe to run", func() bool { return metricValue(t, f, "responder_probe_success") == 1 })
	// A drill run that finished (responder_drill_*).
	var run drillRun
	f.drillJSON(http.MethodPost, "/api/v1/drills", adminToken, `{"name": "contract", "rto_seconds": 60}`, http.StatusCreated, &run)
	f.drillJSON(http.MethodPost, fmt.Sprintf("/api/v1/drills/%d/finish", run.ID), adminToken, `{"passed": true, "recover_seconds": 1}`, http.StatusOK, nil)

	code, body := f.do(http.MethodGet, "/metrics", "", nil)
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}

	tool := <-toolc
	if tool.err != nil {
		t.Fatal(tool.err)
	}
	for _, src := range []struct {
		file  string
		exprs func(*testing.T, []byte) []string
	}{
		{dashboardFile, dashboardExprs},
		{alertsFile, ruleExprs},
	} {
		t.Run(filepath.Base(src.file), func(t *testing.T) {
			b, err := os.ReadFile(src.file)
			if err != nil {
				t.Fatal(err)
			}
			exprs := src.exprs(t, b)
			names := metricNames(t, tool.bin, exprs)
			if len(names) < 5 {
				t.Fatalf("%s: only %d metric names in %d expressions: %v", src.file, len(names), len(exprs), names)
			}
			for _, n := range names {
				if !exposed(families, n) && !scrapeSeries(n) {
					t.Errorf("%s queries %s, which /metrics does not expose after the scripted run", src.file, n)
				}
			}
		})
	}
}

// exposed reports whether /metrics has the metric name, or name is a histogram's (or summary's)
// _bucket, _sum or _count series.
func exposed(families map[string]*dto.MetricFamily, name string) bool {
	if mf, ok := families[name]; ok && len(mf.GetMetric()) > 0 {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		mf, ok := families[base]
		if !ok || len(mf.GetMetric()) == 0 {
			return false
		}
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			return true
		case dto.MetricType_SUMMARY:
			return suffix != "_bucket"
		}
	}
	return false
}

// scrapeSeries reports whether Prometheus itself records name for every scrape target (see
// "Automatically generated labels and time series" in Prometheus' docs); no target exposes it.
func scrapeSeries(name string) bool {
	return name == "up" || strings.HasPrefix(name, "scrape_")
}

// dashboardExprs returns every target expression of the dashboard's panels (rows included).
func dashboardExprs(t *testing.T, b []byte) []string {
	t.Helper()
	type panel struct {
		Targets []struct{ Expr string }
		Panels  []json.RawMessage
	}
	var d struct{ Panels []json.RawMessage }
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var exprs []string
	var walk func([]json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, raw := range ps {
			var p panel
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatalf("dashboard panel: %v", err)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) != "" {
					exprs = append(exprs, tg.Expr)
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return exprs
}

// ruleExprs returns every expression of a Prometheus rule file.
func ruleExprs(t *testing.T, b []byte) []string {
	t.Helper()
	var rf struct {
		Groups []struct {
			Rules []struct{ Expr string }
		}
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatalf("rule file: %v", err)
	}
	var exprs []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs
}

// metricNames runs tools/promql on exprs (as a JSON array) and returns the names it prints.
func metricNames(t *testing.T, bin string, exprs []string) []string {
	t.Helper()
	in, err := json.Marshal(exprs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-json")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s -json: %v\n%s", bin, err, stderr.Bytes())
	}
	names := strings.Fields(string(out))
	if !slices.IsSorted(names) {
		t.Fatalf("tool output not sorted: %v", names)
	}
	return names
}
