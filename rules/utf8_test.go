package rules

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/responder-sre/responder/alert"
)

// TestUTF8LabelNames: a label named the Prometheus 3 / OTLP way ("service.name") passes
// validation, a rule reads it as alert.labels["service.name"], and a template renders it.
func TestUTF8LabelNames(t *testing.T) {
	a := alert.Alert{
		Source:   alert.SourceAlertmanager,
		Status:   alert.StatusFiring,
		Labels:   map[string]string{"alertname": "HighErrorRate", "service.name": "checkout", "k8s.namespace.name": "shop"},
		StartsAt: t0.Add(-5 * time.Minute),
	}
	if err := a.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	rs := mustParse(t, `
rules:
  - name: checkout-errors
    when: 'alert.labels["service.name"] == "checkout"'
    actions:
      - handler: http.request
        params: {url: "http://status.example.com/x", body: '{{ alert.labels["service.name"] }} in {{ alert.labels["k8s.namespace.name"] }}'}
  - name: other-service
    when: 'alert.labels["service.name"] == "billing"'
    actions:
      - handler: http.request
        params: {url: "http://status.example.com/y"}
`)
	env := NewEnv(a, t0, nil)
	if ok, err := rs[0].Match(env); !ok || err != nil {
		t.Fatalf("Match(checkout-errors) = %v, %v; want true", ok, err)
	}
	if ok, err := rs[1].Match(env); ok || err != nil {
		t.Fatalf("Match(other-service) = %v, %v; want false", ok, err)
	}
	got, err := rs[0].Actions[0].Render(env)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"url": "http://status.example.com/x", "body": "checkout in shop"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Render (-want +got):\n%s", diff)
	}
}
