package alertmanager

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/bus/bustest"
)

// amAlert is one alert of a v4 payload as Alertmanager sends it.
type amAlert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
}

func crashLooping(pod string) amAlert {
	return amAlert{Status: "firing", StartsAt: fixedNow.Add(-time.Hour),
		Labels:      map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": pod},
		Annotations: map[string]string{"summary": "pod " + pod + " is crash looping"}}
}

func v4(alerts ...amAlert) []byte {
	b, err := json.Marshal(map[string]any{"version": "4", "groupKey": `{}:{alertname="KubePodCrashLooping"}`, "status": "firing",
		"receiver": "responder", "commonLabels": map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop"}, "alerts": alerts})
	if err != nil {
		panic(err)
	}
	return b
}

// rejectedTotal is responder_alerts_rejected_total{reason}.
func rejectedTotal(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "responder_alerts_rejected_total" && m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series responder_alerts_rejected_total{reason=%q}", reason)
	return 0
}

// storedPods returns the pod label of every stored alert, in stream order.
func storedPods(t *testing.T, e *env) []string {
	t.Helper()
	var pods []string
	for _, g := range e.stored(t) {
		for _, a := range g {
			pods = append(pods, a.Labels["pod"])
		}
	}
	return pods
}

// TestOverLimitAlertRejectedAlone: an alert over a size bound is rejected by itself (counted,
// passed to OnReject) and the rest of its group is stored; a UTF-8 label name is accepted.
func TestOverLimitAlertRejectedAlone(t *testing.T) {
	e := newEnvWith(t, 0, func(o *Options) {
		o.Limits = alert.Limits{MaxLabels: 64, MaxLabelNameBytes: 256, MaxLabelValueBytes: 2048, MaxAnnotationsBytes: 8 << 10}
	})
	longValue := crashLooping("p-long-value")
	longValue.Labels["container"] = strings.Repeat("c", 3000)
	bigNotes := crashLooping("p-big-annotations")
	bigNotes.Annotations["description"] = strings.Repeat("d", 9<<10)
	otel := crashLooping("p-otel")
	otel.Labels["service.name"] = "checkout"

	resp, body := post(t, e.url, "POST", tokenA, strings.NewReader(string(v4(crashLooping("p-1"), longValue, bigNotes, otel))))
	if resp.StatusCode != 200 || !strings.Contains(body, `"accepted":2,"rejected":2`) {
		t.Fatalf("status %d body %s, want 200 with 2 accepted and 2 rejected", resp.StatusCode, body)
	}
	if got := storedPods(t, e); fmt.Sprint(got) != "[p-1 p-otel]" {
		t.Fatalf("stored pods %v, want [p-1 p-otel]", got)
	}
	for _, reason := range []string{alert.ReasonLabelValueTooLong, alert.ReasonAnnotationsTooLarge} {
		if v := rejectedTotal(t, e.reg, reason); v != 1 {
			t.Errorf("alerts_rejected_total{reason=%s} = %v, want 1", reason, v)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.rejects) != 2 || e.rejects[0].Reason != alert.ReasonLabelValueTooLong || e.rejects[1].Reason != alert.ReasonAnnotationsTooLarge {
		t.Fatalf("OnReject got %v", e.rejects)
	}
	if e.rejected[0].Labels["pod"] != "p-long-value" || e.rejected[0].Fingerprint == "" {
		t.Errorf("OnReject alert %+v, want p-long-value with its fingerprint", e.rejected[0].Labels)
	}
	if len(e.rejects[0].Detail) > 300 {
		t.Errorf("rejection detail quotes the oversized value: %d bytes", len(e.rejects[0].Detail))
	}
}

// TestTooManyAlertsRefused: a request over MaxAlerts is refused whole with 413 and a reason, every
// alert counted, one OnReject for the request; nothing is stored.
func TestTooManyAlertsRefused(t *testing.T) {
	e := newEnvWith(t, 0, func(o *Options) { o.MaxAlerts = 3 })
	ok, _ := post(t, e.url, "POST", tokenA, strings.NewReader(string(v4(crashLooping("a"), crashLooping("b"), crashLooping("c")))))
	if ok.StatusCode != 200 {
		t.Fatalf("3 alerts: status %d, want 200", ok.StatusCode)
	}
	resp, body := post(t, e.url, "POST", tokenA, strings.NewReader(string(v4(crashLooping("1"), crashLooping("2"), crashLooping("3"), crashLooping("4")))))
	if resp.StatusCode != 413 || !strings.Contains(body, "max_alerts_per_request") || !strings.Contains(body, "max_alerts") {
		t.Fatalf("status %d body %s, want 413 naming the limit and Alertmanager's max_alerts", resp.StatusCode, body)
	}
	if v := rejectedTotal(t, e.reg, alert.ReasonTooManyAlerts); v != 4 {
		t.Errorf("alerts_rejected_total{reason=too_many_alerts} = %v, want 4", v)
	}
	if got := storedPods(t, e); fmt.Sprint(got) != "[a b c]" {
		t.Fatalf("stored pods %v, want only the first request's", got)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.rejects) != 1 || e.rejects[0].Reason != alert.ReasonTooManyAlerts || e.rejected[0].Labels["alertname"] != "KubePodCrashLooping" {
		t.Fatalf("OnReject got %v %v, want one too_many_alerts with the common labels", e.rejects, e.rejected)
	}
}

// TestAlertTooLargeForBusRejectedAlone: an alert larger than the bus's maximum payload by itself is
// rejected (alert_too_large, OnReject) and every other alert of its group is stored, 200.
func TestAlertTooLargeForBusRejectedAlone(t *testing.T) {
	e := newEnvWith(t, 0, nil, bustest.MaxPayload(16<<10))
	var group []amAlert
	for i := range 7 {
		a := crashLooping(fmt.Sprintf("p-%d", i))
		a.Annotations["description"] = strings.Repeat("d", 3<<10) // a few per message: the group is split
		group = append(group, a)
	}
	group[3].Annotations["description"] = strings.Repeat("x", 20<<10)
	resp, body := post(t, e.url, "POST", tokenA, strings.NewReader(string(v4(group...))))
	if resp.StatusCode != 200 || !strings.Contains(body, `"accepted":6,"rejected":1`) {
		t.Fatalf("status %d body %s, want 200 with 6 accepted and 1 rejected", resp.StatusCode, body)
	}
	got := map[string]bool{}
	for _, p := range storedPods(t, e) {
		got[p] = true
	}
	for i := range 7 {
		p := fmt.Sprintf("p-%d", i)
		if got[p] != (i != 3) {
			t.Errorf("%s stored = %v", p, got[p])
		}
	}
	if v := rejectedTotal(t, e.reg, alert.ReasonAlertTooLarge); v != 1 {
		t.Errorf("alerts_rejected_total{reason=alert_too_large} = %v, want 1", v)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.rejects) != 1 || e.rejects[0].Reason != alert.ReasonAlertTooLarge || e.rejected[0].Labels["pod"] != "p-3" {
		t.Fatalf("OnReject got %v, want p-3 for alert_too_large", e.rejects)
	}
}
