package rules

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/responder-sre/responder/alert"
)

func TestSplitTemplate(t *testing.T) {
	tests := []struct {
		in   string
		want []string // literal text as is, expressions as {expr}
		err  string
	}{
		{"plain", []string{"plain"}, ""},
		{"{{ a }}", []string{"{a}"}, ""},
		{"x {{ a }} y {{b}}", []string{"x ", "{a}", " y ", "{b}"}, ""},
		{"{{ toJSON({conf: {reason: alert.name}}) }}", []string{"{toJSON({conf: {reason: alert.name}})}"}, ""},
		{`{{ "}}" + '}}' }}!`, []string{`{"}}" + '}}'}`, "!"}, ""},
		{`{{ "a\"}}" }}`, []string{`{"a\"}}"}`}, ""},
		{"{{ `}}` }}", []string{"{`}}`}"}, ""},
		{"a }} b", []string{"a }} b"}, ""},
		{"{{ a ", nil, "unterminated"},
		{"{{ {a: 1} ", nil, "unterminated"},
		{"x {{ }}", nil, "empty template"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			segs, err := splitTemplate(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range segs {
				if s.src != "" {
					got = append(got, "{"+s.src+"}")
				} else {
					got = append(got, s.text)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

const renderRules = `
rules:
  - name: render
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: http.request
        params:
          url: "http://status.example.com/api/v1/pods"
          method: POST
          class: notify
          headers:
            X-Pod: "{{ alert.labels.namespace }}/{{ alert.labels.pod }}"
            X-Static: fixed
          body: '{{ toJSON({"pod": alert.labels.pod, "summary": alert.annotations.summary, "html": "<&>"}) }}'
`

func renderOne(t *testing.T, params string, a alert.Alert) (map[string]any, error) {
	t.Helper()
	rs := mustParse(t, "rules:\n  - name: r\n    when: 'true'\n    actions:\n      - handler: http.request\n        params: "+params+"\n")
	return rs[0].Actions[0].Render(NewEnv(a, t0, nil))
}

func TestRenderNested(t *testing.T) {
	rs := mustParse(t, renderRules)
	got, err := rs[0].Actions[0].Render(NewEnv(crashloop(alert.StatusFiring), t0, nil))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"url":    "http://status.example.com/api/v1/pods",
		"method": "POST",
		"class":  "notify",
		"headers": map[string]any{
			"X-Pod":    "shop/checkout-7d9f8b6c5-x2x4z",
			"X-Static": "fixed",
		},
		"body": `{"html":"<&>","pod":"checkout-7d9f8b6c5-x2x4z","summary":"Pod shop/checkout-7d9f8b6c5-x2x4z is crash looping."}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Render (-want +got):\n%s", diff)
	}
	// The raw params are untouched.
	if p := rs[0].Actions[0].Params["headers"].(map[string]any)["X-Pod"]; p != "{{ alert.labels.namespace }}/{{ alert.labels.pod }}" {
		t.Errorf("raw param changed to %v", p)
	}
}

func TestRenderValues(t *testing.T) {
	a := withValue(crashloop(alert.StatusFiring), 97.5)
	tests := []struct {
		name, body string
		want       any
	}{
		{"string", `"{{ alert.labels.pod }}"`, "checkout-7d9f8b6c5-x2x4z"},
		{"bool keeps type", `"{{ alert.status == 'firing' }}"`, true},
		{"int keeps type", `"{{ len(alert.labels) }}"`, 6},
		{"float keeps type", `"{{ alert.value }}"`, 97.5},
		{"list keeps type", `"{{ [alert.labels.pod, 1] }}"`, []any{"checkout-7d9f8b6c5-x2x4z", 1}},
		{"map keeps type", `"{{ {a: alert.labels.namespace} }}"`, map[string]any{"a": "shop"}},
		{"label map keeps type", `"{{ alert.annotations }}"`, map[string]any{"summary": "Pod shop/checkout-7d9f8b6c5-x2x4z is crash looping."}},
		{"time stringified", `"{{ alert.startsAt }}"`, "2025-03-01T11:55:00Z"},
		{"duration stringified", `"{{ alert.activeFor }}"`, "5m0s"},
		{"mixed is text", `"v={{ alert.value }} ok={{ true }} n={{ 3 }}"`, "v=97.5 ok=true n=3"},
		{"mixed map is json", `"labels={{ {b: 1} }}"`, `labels={"b":1}`},
		{"toJSON compact", `'{{ toJSON({conf: {reason: alert.name}}) }}'`, `{"conf":{"reason":"KubePodCrashLooping"}}`},
		{"toJSON labels", `'{{ toJSON({"ns": alert.labels.namespace}) }}'`, `{"ns":"shop"}`},
		{"default for missing", `"{{ alert.labels.team ?? 'unowned' }}"`, "unowned"},
		{"default unused", `"{{ alert.labels.namespace ?? 'none' }}"`, "shop"},
		{"optional missing is empty", `"[{{ alert.labels?.team }}]"`, "[]"},
		{"has check", `"{{ 'team' in alert.labels }}"`, false},
		{"now", `"{{ now() }}"`, "2025-03-01T12:00:00Z"},
		{"fingerprint", `"{{ alert.fingerprint }}"`, alert.Fingerprint(a.Labels)},
		{"literal text", `"no templates"`, "no templates"},
		{"list of templates", `["{{ alert.labels.pod }}", "x", 3]`, []any{"checkout-7d9f8b6c5-x2x4z", "x", 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := renderOne(t, "{url: 'http://status.example.com/', body: "+tc.body+"}", a)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got["body"]); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct {
		name, params string
		missing      bool
		want         string
	}{
		{"missing label", `{url: "http://status.example.com/", body: "restart {{ alert.labels.team }}"}`, true,
			`http.request: param "body": {{ alert.labels.team }}: the alert has no label "team"`},
		{"missing label by index", `{url: "http://status.example.com/", body: "{{ alert.labels['team'] }}"}`, true,
			`the alert has no label "team"`},
		{"missing annotation", `{url: "http://status.example.com/", body: "{{ alert.annotations.runbook_url }}"}`, true,
			`param "body": {{ alert.annotations.runbook_url }}: the alert has no annotation "runbook_url"`},
		{"missing label nested", `{url: "http://status.example.com/", headers: {X-Team: "{{ alert.labels.team }}"}}`, true,
			`param "headers.X-Team": {{ alert.labels.team }}: the alert has no label "team"`},
		{"missing label in toJSON", `{url: "http://status.example.com/", body: "{{ toJSON({t: alert.labels.team}) }}"}`, true,
			`the alert has no label "team"`},
		{"runtime error", `{url: "http://status.example.com/", body: "{{ toJSON(alert.value) }}"}`, false,
			`param "body": {{ toJSON(alert.value) }}: `},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderOne(t, tc.params, crashloop(alert.StatusFiring))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if errors.Is(err, ErrMissing) != tc.missing {
				t.Errorf("errors.Is(err, ErrMissing) = %v, want %v", !tc.missing, tc.missing)
			}
		})
	}
}

// The issue 2 §9 example.
func TestRetriggerBilling(t *testing.T) {
	set, err := LoadFiles([]string{"testdata/billing.yml"}, fakeCatalog{})
	if err != nil {
		t.Fatal(err)
	}
	r := set.Rule("retrigger-billing")
	a := alert.Alert{
		Source:   alert.SourceAlertmanager,
		Status:   alert.StatusFiring,
		Labels:   map[string]string{"alertname": "BillingIngestStale", "dag": "billing_ingest", "severity": "critical"},
		StartsAt: t0.Add(-time.Hour),
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	env := NewEnv(a, t0, nil)
	if ok, err := r.Match(env); !ok || err != nil {
		t.Fatalf("Match = %v, %v; want true", ok, err)
	}
	got, err := r.Actions[0].Render(env)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"url":  "http://airflow.internal:8080/api/v1/dags/billing_ingest/dagRuns",
		"body": `{"conf":{"reason":"BillingIngestStale"}}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Render (-want +got):\n%s", diff)
	}
}

// Match and Render are called from many goroutines at once (run with -race).
func TestConcurrentUse(t *testing.T) {
	rs := mustParse(t, renderRules)
	want := "shop/checkout-7d9f8b6c5-x2x4z"
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			env := NewEnv(crashloop(alert.StatusFiring), t0, nil)
			for range 200 {
				ok, err := rs[0].Match(env)
				if err != nil || !ok {
					errs <- errors.Join(err, errors.New("no match"))
					return
				}
				p, err := rs[0].Actions[0].Render(env)
				if err != nil {
					errs <- err
					return
				}
				if got := p["headers"].(map[string]any)["X-Pod"]; got != want {
					errs <- errors.New("X-Pod = " + got.(string))
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
