package alert_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/common/model"

	"github.com/responder-sre/responder/alert"
)

func TestFingerprintMatchesAlertmanager(t *testing.T) {
	labels := map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "checkout-7d9f8b6c5-x2x4q"}
	ls := model.LabelSet{}
	for k, v := range labels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	// Alertmanager's types.Alert embeds model.Alert and uses its Fingerprint.
	am := (&model.Alert{Labels: ls}).Fingerprint().String()
	if got := alert.Fingerprint(labels); got != am {
		t.Fatalf("Fingerprint = %s, Alertmanager says %s", got, am)
	}
}

func TestBatchIDIgnoresOrderAndReceivedAt(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	a := alert.Alert{Fingerprint: "a", StartsAt: t0, Status: alert.StatusFiring, ReceivedAt: t0}
	b := alert.Alert{Fingerprint: "b", StartsAt: t0, Status: alert.StatusFiring, ReceivedAt: t0}
	b2 := b
	b2.ReceivedAt = t0.Add(time.Hour)
	if alert.BatchID([]alert.Alert{a, b}) != alert.BatchID([]alert.Alert{b2, a}) {
		t.Fatal("a re-sent group in another order must have the same id")
	}
	r := b
	r.Status = alert.StatusResolved
	if alert.BatchID([]alert.Alert{a, b}) == alert.BatchID([]alert.Alert{a, r}) {
		t.Fatal("a status change must change the id")
	}
	// A probe's heartbeat (same alert, produced later) is a new message; a retry of the same one is not.
	p := alert.Alert{Source: alert.SourceProbe, Fingerprint: "p", StartsAt: t0, Status: alert.StatusFiring, ReceivedAt: t0}
	hb := p
	hb.ReceivedAt = t0.Add(5 * time.Minute)
	if alert.BatchID([]alert.Alert{p}) == alert.BatchID([]alert.Alert{hb}) {
		t.Fatal("a probe heartbeat must not be deduplicated as a re-send")
	}
	retry := p
	if alert.BatchID([]alert.Alert{p}) != alert.BatchID([]alert.Alert{retry}) {
		t.Fatal("a retried probe publication must keep its id")
	}
}

func TestValidate(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 3, 0, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		name   string
		a      alert.Alert
		reason string
	}{
		{"ok", alert.Alert{Status: "firing", Labels: map[string]string{"alertname": "X"}, StartsAt: t0}, ""},
		{"no alertname", alert.Alert{Status: "firing", Labels: map[string]string{"job": "x"}, StartsAt: t0}, alert.ReasonMissingName},
		{"empty alertname", alert.Alert{Status: "firing", Labels: map[string]string{"alertname": " "}, StartsAt: t0}, alert.ReasonMissingName},
		{"bad status", alert.Alert{Status: "pending", Labels: map[string]string{"alertname": "X"}, StartsAt: t0}, alert.ReasonInvalidStatus},
		{"no startsAt", alert.Alert{Status: "resolved", Labels: map[string]string{"alertname": "X"}}, alert.ReasonMissingStartsAt},
		{"UTF-8 label name (Prometheus 3, OTLP)", alert.Alert{Status: "firing", Labels: map[string]string{"alertname": "X", "service.name": "checkout", "k8s.pod.name": "p-1"}, StartsAt: t0}, ""},
		{"label name not UTF-8", alert.Alert{Status: "firing", Labels: map[string]string{"alertname": "X", "a\xffb": "v"}, StartsAt: t0}, alert.ReasonInvalidLabel},
		{"empty label name", alert.Alert{Status: "firing", Labels: map[string]string{"alertname": "X", "": "v"}, StartsAt: t0}, alert.ReasonInvalidLabel},
		{"bad label value", alert.Alert{Status: "firing", Labels: map[string]string{"alertname": "X", "v": "\xff"}, StartsAt: t0}, alert.ReasonInvalidLabel},
		{"NUL in a label", alert.Alert{Status: "firing", Labels: map[string]string{"alertname": "X", "v": "a\x00b"}, StartsAt: t0}, alert.ReasonInvalidLabel},
		{"NUL in an annotation", alert.Alert{Status: "firing", Labels: map[string]string{"alertname": "X"}, Annotations: map[string]string{"summary": "\x00"}, StartsAt: t0}, alert.ReasonInvalidText},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.a
			err := a.Validate()
			if tc.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				if a.Name != "X" || a.Fingerprint != alert.Fingerprint(a.Labels) || a.StartsAt.Nanosecond()%1000 != 0 {
					t.Fatalf("validated alert = %+v", a)
				}
				return
			}
			var ie *alert.InvalidError
			if !errors.As(err, &ie) || ie.Reason != tc.reason || !errors.Is(err, alert.ErrInvalid) {
				t.Fatalf("err = %v, want reason %s", err, tc.reason)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	l := alert.Limits{MaxLabels: 4, MaxLabelNameBytes: 16, MaxLabelValueBytes: 32, MaxAnnotationsBytes: 64}
	labels := func(kv ...string) map[string]string {
		m := map[string]string{"alertname": "X"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		a      alert.Alert
		reason string
	}{
		{"within", alert.Alert{Labels: labels("a", strings.Repeat("v", 32), strings.Repeat("n", 16), "x"), Annotations: map[string]string{"summary": strings.Repeat("s", 57)}}, ""},
		{"too many labels", alert.Alert{Labels: labels("a", "1", "b", "2", "c", "3", "d", "4")}, alert.ReasonTooManyLabels},
		{"long name", alert.Alert{Labels: labels(strings.Repeat("n", 17), "x")}, alert.ReasonLabelNameTooLong},
		{"long value", alert.Alert{Labels: labels("pod", strings.Repeat("v", 33))}, alert.ReasonLabelValueTooLong},
		{"annotations together", alert.Alert{Labels: labels(), Annotations: map[string]string{"summary": strings.Repeat("s", 30), "description": strings.Repeat("d", 30)}}, alert.ReasonAnnotationsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := l.Check(tc.a)
			if tc.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ie *alert.InvalidError
			if !errors.As(err, &ie) || ie.Reason != tc.reason {
				t.Fatalf("err = %v, want reason %s", err, tc.reason)
			}
			if len(ie.Detail) > 200 {
				t.Fatalf("detail quotes too much: %d bytes", len(ie.Detail))
			}
		})
	}
	if err := (alert.Limits{}).Check(alert.Alert{Labels: labels(strings.Repeat("n", 1<<10), strings.Repeat("v", 1<<20))}); err != nil {
		t.Fatalf("zero limits bound nothing, got %v", err)
	}
	if !slices.Contains(alert.RejectReasons, alert.ReasonAlertTooLarge) || !slices.Contains(alert.RejectReasons, alert.ReasonTooManyAlerts) {
		t.Fatal("new reasons missing from RejectReasons")
	}
}

func TestClip(t *testing.T) {
	if got := alert.Clip("short"); got != "short" {
		t.Fatalf("Clip(short) = %q", got)
	}
	long := strings.Repeat("é", 100) // 2 bytes each: 64 falls on a rune boundary
	if got := alert.Clip("x" + long); len(got) > 64+len("…") || !strings.HasSuffix(got, "…") || !utf8.ValidString(got) {
		t.Fatalf("Clip = %q", got)
	}
}
