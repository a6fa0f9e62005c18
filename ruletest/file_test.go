package ruletest

import (
	"strings"
	"testing"
	"time"
)

func TestParseFile(t *testing.T) {
	const head = "rule_files: [r.yml]\ntests:\n"
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error; none = must parse
	}{
		{"minimal", head + "  - name: a\n    input_alerts: [{labels: {alertname: A}}]\n    exp_actions: []\n", nil},
		{"unknown key", head + "  - name: a\n    input_alert: []\n    exp_actions: []\n", []string{"f.yml:4: field input_alert not found"}},
		{"unknown top key", "rule_file: [r.yml]\n", []string{"f.yml:1: field rule_file not found"}},
		{"bad starts_at", head + "  - name: a\n    input_alerts: [{labels: {alertname: A}, starts_at: yesterday}]\n    exp_actions: []\n",
			[]string{`f.yml:4: invalid relative time "yesterday"`}},
		{"bad status", head + "  - name: a\n    input_alerts:\n      - labels: {alertname: A}\n        status: pending\n    exp_actions: []\n",
			[]string{`f.yml:6: status must be firing or resolved, not "pending"`}},
		{"missing exp_actions", head + "  - name: a\n    input_alerts: [{labels: {alertname: A}}]\n",
			[]string{"f.yml:3: test \"a\": exp_actions is required"}},
		{"no alertname", head + "  - name: a\n    input_alerts:\n      - labels: {job: x}\n    exp_actions: []\n",
			[]string{"f.yml:5: input_alerts[0]: labels.alertname is required"}},
		{"probe without kind", head + "  - name: a\n    input_probes:\n      - {probe: p}\n    exp_actions: []\n",
			[]string{"f.yml:5: input_probes[0]: kind"}},
		{"bad approval and phase", head + "  - name: a\n    input_alerts: [{labels: {alertname: A}}]\n    exp_actions:\n      - {rule: r, handler: h, approval: maybe}\n      - {rule: r, handler: h, phase: later}\n",
			[]string{"f.yml:6: exp_actions[0]: approval must be none or required", "f.yml:7: exp_actions[1]: phase must be one of"}},
		{"prior without ago", head + "  - name: a\n    input_alerts: [{labels: {alertname: A}}]\n    actions_in_last: [{rule: r, labels: {alertname: A}}]\n    exp_actions: []\n",
			[]string{"f.yml:5: actions_in_last[0]: ago is required"}},
		{"firing in the future", head + "  - name: a\n    input_alerts: [{labels: {alertname: A}}]\n    firing: [{labels: {alertname: B}, starts_at: 5m}]\n    exp_actions: []\n",
			[]string{"f.yml:5: firing[0]: starts_at must be in the past"}},
		{"duplicate names", head + "  - name: a\n    input_alerts: [{labels: {alertname: A}}]\n    exp_actions: []\n  - name: a\n    input_alerts: [{labels: {alertname: A}}]\n    exp_actions: []\n",
			[]string{"f.yml:6: tests[1]: name \"a\" is also the name of tests[0]"}},
		{"no tests", "rule_files: [r.yml]\n", []string{"tests: write at least one test"}},
		{"negative eval_after", head + "  - name: a\n    eval_after: -1m\n    input_alerts: [{labels: {alertname: A}}]\n    exp_actions: []\n",
			[]string{`f.yml:4: invalid duration "-1m"`}},
		{"resolve_after past eval_after", head + "  - name: a\n    eval_after: 1m\n    resolve_after: 2m\n    input_alerts: [{labels: {alertname: A}}]\n    exp_actions: []\n",
			[]string{`f.yml:5: test "a": resolve_after (2m0s) is after eval_after (1m0s)`}},
		{"bad verify", head + "  - name: a\n    input_alerts: [{labels: {alertname: A}}]\n    exp_actions:\n      - {rule: r, handler: h, verify: done}\n",
			[]string{`f.yml:6: exp_actions[0]: verify must be verifying, recovered or not_recovered, not "done"`}},
		{"not yaml", "tests: [\n", []string{"f.yml:"}},
		{"empty", "", []string{"f.yml: empty test file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ParseFile("f.yml", []byte(tc.yaml))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if f.Now != DefaultNow || len(f.Tests) != 1 || f.Tests[0].InputAlerts[0].Status != "firing" {
					t.Errorf("defaults not applied: %+v", f)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestParseValues(t *testing.T) {
	y := `rule_files: [r.yml]
now: 2026-11-22T10:00:00Z
tests:
  - name: a
    eval_after: 1m
    input_alerts:
      - labels: {alertname: A}
        status: resolved
        value: 0.5
        starts_at: -1h30m
        ends_at: -1d
    input_probes:
      - {probe: api-health, kind: http, instance: x, labels: {service: api}, starts_at: -90s}
    firing: [{labels: {alertname: B}}]
    exp_actions:
      - {rule: r, handler: h, params: {n: 1, l: [a]}}
`
	_, err := ParseFile("f.yml", []byte(y))
	if err == nil || !strings.Contains(err.Error(), "ends_at is before starts_at") {
		t.Fatalf("want ends_at error, got %v", err)
	}
	f, err := ParseFile("f.yml", []byte(strings.Replace(y, "ends_at: -1d", "ends_at: -1m", 1)))
	if err != nil {
		t.Fatal(err)
	}
	tc := f.Tests[0]
	if !f.Now.Equal(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)) || tc.EvalAfter != time.Minute {
		t.Errorf("now %v eval_after %v", f.Now, tc.EvalAfter)
	}
	a, p := tc.InputAlerts[0], tc.InputAlerts[1]
	if a.StartsAt != -90*time.Minute || *a.EndsAt != -time.Minute || *a.Value != 0.5 || a.Source != "alertmanager" {
		t.Errorf("alert %+v", a)
	}
	if p.Source != "probe" || p.Labels["alertname"] != "api-health" || p.Labels["probe_kind"] != "http" || p.Labels["instance"] != "x" || p.Labels["service"] != "api" {
		t.Errorf("probe %+v", p)
	}
	if tc.Firing[0].StartsAt != -time.Hour {
		t.Errorf("firing default starts_at %v, want -1h", tc.Firing[0].StartsAt)
	}
	e := tc.ExpActions[0]
	if e.Phase != "actions" || e.Params["n"] != float64(1) {
		t.Errorf("exp %+v", e)
	}
}

func FuzzParseFile(f *testing.F) {
	for _, s := range []string{
		"rule_files: [r.yml]\ntests:\n  - name: a\n    input_alerts: [{labels: {alertname: A}, starts_at: -2m}]\n    exp_actions: []\n",
		"tests: [{name: x, input_probes: [{probe: p, kind: disk, value: 0.1}], exp_actions: [{rule: r, handler: h}]}]",
		"now: 2026-01-01T00:00:00Z\n",
		"- a\n",
		"tests: [{actions_in_last: [{ago: 1d}]}]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := ParseFile("f.yml", data)
		if err == nil && (len(file.Tests) == 0 || len(file.RuleFiles) == 0) {
			t.Fatalf("parsed a file without tests or rule files: %q", data)
		}
	})
}
