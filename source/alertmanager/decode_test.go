package alertmanager

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/notify/webhook"

	"github.com/responder-sre/responder/alert"
)

var fixedNow = time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC)

func fixtures(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob("../../testdata/alerts/alertmanager-*.json")
	if err != nil || len(paths) < 10 {
		t.Fatalf("want at least 10 fixtures in testdata/alerts, got %d (%v)", len(paths), err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

// TestFixtures checks that every payload is a v4 notification as Alertmanager sends it, with the
// fingerprints Alertmanager computes, and decodes to the expected alerts.
func TestFixtures(t *testing.T) {
	want := map[string]struct {
		accepted, rejected int
		truncated          uint64
	}{
		"alertmanager-kube-pod-crashlooping.json":            {1, 0, 0},
		"alertmanager-kube-pod-crashlooping-resolved.json":   {1, 0, 0},
		"alertmanager-target-down.json":                      {1, 0, 0},
		"alertmanager-node-filesystem-space-filling-up.json": {1, 0, 0},
		"alertmanager-group-of-5.json":                       {5, 0, 0},
		"alertmanager-truncated.json":                        {2, 0, 3},
		"alertmanager-billing-ingest-stale.json":             {1, 0, 0},
		"alertmanager-postgres-down.json":                    {1, 0, 0},
		"alertmanager-high-error-rate.json":                  {1, 0, 0},
		"alertmanager-invalid-alert-among-valid.json":        {2, 1, 0},
		"alertmanager-mixed-firing-resolved.json":            {2, 0, 0},
	}
	files := fixtures(t)
	for name, w := range want {
		t.Run(name, func(t *testing.T) {
			body, ok := files[name]
			if !ok {
				t.Fatalf("fixture missing")
			}
			var raw webhook.Message
			if err := json.Unmarshal(body, &raw); err != nil {
				t.Fatal(err)
			}
			if raw.Version != "4" || raw.GroupKey == "" || raw.Receiver == "" || raw.ExternalURL == "" {
				t.Errorf("not a full v4 notification: %+v", raw)
			}
			for _, a := range raw.Alerts {
				if got := alert.Fingerprint(a.Labels); got != a.Fingerprint {
					t.Errorf("fingerprint %s, Alertmanager computes %s", a.Fingerprint, got)
				}
				if a.StartsAt.Year() != 2026 || a.StartsAt.Month() != time.November {
					t.Errorf("startsAt %s not in 2026-11", a.StartsAt)
				}
				if (a.Status == "resolved") != !a.EndsAt.IsZero() {
					t.Errorf("status %s with endsAt %s", a.Status, a.EndsAt)
				}
			}
			p, err := decode(body, fixedNow, 0, alert.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.alerts) != w.accepted || len(p.rejected) != w.rejected || p.truncated != w.truncated {
				t.Fatalf("accepted %d rejected %d truncated %d; want %+v", len(p.alerts), len(p.rejected), p.truncated, w)
			}
			for _, a := range p.alerts {
				if a.Source != alert.SourceAlertmanager || a.Name == "" || !a.ReceivedAt.Equal(fixedNow) || a.Labels["alertname"] != a.Name {
					t.Errorf("decoded alert %+v", a)
				}
			}
			for _, r := range p.rejected {
				if r.Err.Reason != alert.ReasonMissingName {
					t.Errorf("rejected for %s, want %s", r.Err.Reason, alert.ReasonMissingName)
				}
			}
		})
	}
	if len(files) != len(want) {
		t.Errorf("%d fixtures, %d with expectations: add the new one to this table", len(files), len(want))
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"not json", "{not json"},
		{"trailing garbage", `{"version":"4"} x`},
		{"version 3", `{"version":"3","alerts":[]}`},
		{"no version", `{"alerts":[]}`},
		{"alerts not a list", `{"version":"4","alerts":{}}`},
		{"bad time", `{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A"},"startsAt":"yesterday"}]}`},
		{"empty", ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decode([]byte(tc.body), fixedNow, 0, alert.Limits{}); err == nil {
				t.Fatalf("decode(%q) succeeded", tc.body)
			}
		})
	}
}

func TestDecodeDerivesFingerprint(t *testing.T) {
	body := `{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A","x":"1"},"startsAt":"2026-11-21T00:00:00Z","fingerprint":"bogus"}]}`
	p, err := decode([]byte(body), fixedNow, 0, alert.Limits{})
	if err != nil || len(p.alerts) != 1 {
		t.Fatalf("decode: %v %+v", err, p)
	}
	if want := alert.Fingerprint(map[string]string{"alertname": "A", "x": "1"}); p.alerts[0].Fingerprint != want {
		t.Fatalf("fingerprint %s, want %s computed from the labels", p.alerts[0].Fingerprint, want)
	}
}

// FuzzDecode: decoding untrusted bodies never panics, and whatever is accepted is a valid alert.
func FuzzDecode(f *testing.F) {
	for _, b := range fixtures(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"version":"4","alerts":[{"status":"firing","labels":null}]}`))
	f.Add([]byte(`{"version":"4","alerts":null}`))
	f.Add([]byte(`{"version":"4"}`))
	f.Add([]byte(`{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A","service.name":"x"},"startsAt":"2026-11-21T00:00:00Z"}]}`))
	f.Add([]byte(`{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A","v":"` + strings.Repeat("v", 70) + `"},"startsAt":"2026-11-21T00:00:00Z"}]}`))
	// Small bounds, so that the fuzzer reaches every limit.
	limits := alert.Limits{MaxLabels: 8, MaxLabelNameBytes: 32, MaxLabelValueBytes: 64, MaxAnnotationsBytes: 256}
	const maxAlerts = 16
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decode(body, fixedNow, maxAlerts, limits)
		if tm, ok := errors.AsType[*tooManyError](err); ok {
			if tm.n <= maxAlerts {
				t.Fatalf("%d alerts refused as too many", tm.n)
			}
			return
		}
		if err != nil {
			return
		}
		if len(p.alerts)+len(p.rejected) > maxAlerts {
			t.Fatalf("%d alerts decoded, more than %d", len(p.alerts)+len(p.rejected), maxAlerts)
		}
		for _, a := range p.alerts {
			if err := limits.Check(a); err != nil {
				t.Fatalf("accepted an alert over the limits: %v", err)
			}
			if a.Name == "" || a.Labels[alert.NameLabel] != a.Name || a.StartsAt.IsZero() {
				t.Fatalf("accepted invalid alert %+v", a)
			}
			if a.Status != alert.StatusFiring && a.Status != alert.StatusResolved {
				t.Fatalf("accepted status %q", a.Status)
			}
			if a.Fingerprint != alert.Fingerprint(a.Labels) {
				t.Fatalf("fingerprint not derived from labels")
			}
		}
		for _, r := range p.rejected {
			if r.Err == nil || r.Err.Reason == "" {
				t.Fatalf("rejection without reason")
			}
		}
	})
}
