package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/bus/bustest"
	"github.com/responder-sre/responder/internal/testwait"
)

// limitsRules adds to the default rule one that reads a UTF-8 label name.
func limitsRules(s *sink) string {
	return rulesYAML(s) + fmt.Sprintf(`
  - name: otel-service
    when: 'alert.labels["service.name"] == "checkout" && alert.status == "firing"'
    actions:
      - handler: http.request
        params:
          url: 'http://%s/hooks/otel/{{ alert.labels["service.name"] }}'
`, s.HostPort())
}

// group builds a v4 payload of KubePodCrashLooping alerts, one per pod, each changed by its edit.
func group(starts time.Time, edits map[string]func(labels, annotations map[string]string)) []byte {
	type am struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
	}
	var as []am
	for _, pod := range slices.Sorted(func(yield func(string) bool) {
		for p := range edits {
			if !yield(p) {
				return
			}
		}
	}) {
		a := am{Status: "firing", StartsAt: starts,
			Labels:      map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": pod, "severity": "critical"},
			Annotations: map[string]string{"summary": "pod " + pod + " is crash looping"}}
		if e := edits[pod]; e != nil {
			e(a.Labels, a.Annotations)
		}
		as = append(as, a)
	}
	b, _ := json.Marshal(map[string]any{"version": "4", "groupKey": `{}:{alertname="KubePodCrashLooping"}`, "status": "firing",
		"receiver": "responder", "commonLabels": map[string]string{"alertname": "KubePodCrashLooping"}, "alerts": as})
	return b
}

// rejectionsAudited returns the reasons of the alert_rejected audit entries.
func rejectionsAudited(t *testing.T, f *fixture) []string {
	t.Helper()
	code, b := f.do(http.MethodGet, "/api/v1/audit", readToken, nil)
	if code != 200 {
		t.Fatalf("GET /api/v1/audit: %d %s", code, b)
	}
	var l struct {
		Items []struct {
			Kind   string         `json:"kind"`
			Reason string         `json:"reason"`
			Actor  string         `json:"actor"`
			Detail map[string]any `json:"detail"`
		} `json:"items"`
	}
	must(t, json.Unmarshal(b, &l))
	var out []string
	for _, it := range l.Items {
		if it.Kind == "alert_rejected" {
			out = append(out, it.Reason)
			if labels, _ := it.Detail["labels"].(map[string]any); len(fmt.Sprint(labels)) > 2000 {
				t.Errorf("the audit keeps %d bytes of labels of a rejected alert", len(fmt.Sprint(labels)))
			}
		}
	}
	slices.Sort(out)
	return out
}

func sinkPaths(f *fixture) []string {
	var out []string
	for _, c := range f.sink.Calls() {
		out = append(out, c.Path)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestOverLimitAlertsAuditedRestActedOn: with the default limits, an alert with a 3,000-byte label
// value and one with 70 KiB of annotations are rejected by themselves (counted, audited in
// PostgreSQL); the rest of the group is stored and acted on, a "service.name" label included,
// which a rule reads as alert.labels["service.name"].
func TestOverLimitAlertsAuditedRestActedOn(t *testing.T) {
	f := startApp(t, fixtureOpts{rules: limitsRules})
	body := group(time.Now().UTC().Truncate(time.Second), map[string]func(l, a map[string]string){
		"p-1":     nil,
		"p-long":  func(l, _ map[string]string) { l["container"] = strings.Repeat("c", 3000) },
		"p-notes": func(_, a map[string]string) { a["description"] = strings.Repeat("d", 70<<10) },
		"p-otel":  func(l, _ map[string]string) { l["service.name"] = "checkout" },
	})
	code, resp := f.do(http.MethodPost, "/webhook/alertmanager", hookToken, body)
	if code != 200 || !strings.Contains(string(resp), `"accepted":2,"rejected":2`) {
		t.Fatalf("webhook: %d %s", code, resp)
	}
	if v := metricValue(t, f, "responder_alerts_rejected_total"); v != 2 {
		t.Fatalf("alerts_rejected_total = %v, want 2", v)
	}
	want := []string{"/hooks/otel/checkout", "/hooks/restart/p-1", "/hooks/restart/p-otel"}
	testwait.Until(t, 20*time.Second, "the accepted alerts acted on", func() bool { return slices.Equal(sinkPaths(f), want) })
	testwait.Until(t, 10*time.Second, "both rejections audited", func() bool {
		return slices.Equal(rejectionsAudited(t, f), []string{"annotations_too_large", "label_value_too_long"})
	})
	if got := sinkPaths(f); !slices.Equal(got, want) {
		t.Fatalf("sink got %v, want %v", got, want)
	}
}

// TestAlertTooLargeForBusAuditedRestActedOn: an alert larger than the bus's maximum payload (no
// annotation bound configured) is rejected by itself and audited; the rest of its group is stored
// and acted on.
func TestAlertTooLargeForBusAuditedRestActedOn(t *testing.T) {
	ns := bustest.Start(t, bustest.MaxPayload(32<<10))
	f := startApp(t, fixtureOpts{natsURL: ns.URL(), extra: "limits: {max_annotations_bytes: 0}\n"})
	body := group(time.Now().UTC().Truncate(time.Second), map[string]func(l, a map[string]string){
		"p-1":    nil,
		"p-huge": func(_, a map[string]string) { a["description"] = strings.Repeat("d", 40<<10) },
		"p-2":    nil,
	})
	code, resp := f.do(http.MethodPost, "/webhook/alertmanager", hookToken, body)
	if code != 200 || !strings.Contains(string(resp), `"accepted":2,"rejected":1`) {
		t.Fatalf("webhook: %d %s", code, resp)
	}
	want := []string{"/hooks/restart/p-1", "/hooks/restart/p-2"}
	testwait.Until(t, 20*time.Second, "the accepted alerts acted on", func() bool { return slices.Equal(sinkPaths(f), want) })
	testwait.Until(t, 10*time.Second, "the rejection audited", func() bool {
		return slices.Equal(rejectionsAudited(t, f), []string{"alert_too_large"})
	})
}

// TestProbeAlertOverLimitsAudited: probe alerts go through the same bounds as the webhook's. A
// probe whose alert has more labels than limits.max_labels_per_alert is rejected (counted,
// audited with actor "probe") and does not keep the probe from publishing; a probe within the
// bounds still acts.
func TestProbeAlertOverLimitsAudited(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(target.Close)
	f := startApp(t, fixtureOpts{
		extra: fmt.Sprintf(`limits: {max_labels_per_alert: 4}
probes:
  - name: narrow             # alertname, probe_kind, service: 3 labels
    interval: 200ms
    labels: {service: narrow}
    http: {url: %[1]q}
  - name: wide               # 5 labels
    interval: 200ms
    labels: {service: wide, severity: critical, team: sre}
    http: {url: %[1]q}
`, target.URL),
		rules: func(s *sink) string {
			return fmt.Sprintf(`
rules:
  - name: probe-down
    when: alert.source == "probe" && alert.status == "firing"
    actions:
      - handler: http.request
        params: {url: "http://%s/page/{{ alert.labels.service }}", class: notify}
`, s.HostPort())
		},
	})
	testwait.Until(t, 30*time.Second, "the narrow probe's page", func() bool { return slices.Contains(sinkPaths(f), "/page/narrow") })
	testwait.Until(t, 10*time.Second, "the wide probe's alert rejected and audited", func() bool {
		return slices.Contains(rejectionsAudited(t, f), "too_many_labels")
	})
	if v := metricValue(t, f, "responder_alerts_rejected_total"); v < 1 {
		t.Fatalf("alerts_rejected_total = %v, want the probe's rejection counted", v)
	}
	if slices.Contains(sinkPaths(f), "/page/wide") {
		t.Fatal("the rejected probe alert was acted on")
	}
	code, b := f.do(http.MethodGet, "/api/v1/audit", readToken, nil)
	if code != 200 || !strings.Contains(string(b), `"actor": "probe"`) && !strings.Contains(string(b), `"actor":"probe"`) {
		t.Fatalf("no audit entry by the probe: %d %s", code, b)
	}
}
