package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLimitsDefaults(t *testing.T) {
	want := LimitsConfig{
		MaxAlertsPerRequest: 5000,
		MaxLabelsPerAlert:   64,
		MaxLabelNameBytes:   256,
		MaxLabelValueBytes:  2048,
		MaxAnnotationsBytes: 64 << 10,
		MaxParamsBytes:      64 << 10,
	}
	for _, name := range []string{"conf.empty.yml", "conf.minimal.yml"} {
		if got := mustLoad(t, name).Limits; !cmp.Equal(got, want) {
			t.Errorf("%s: limits (-want +got):\n%s", name, cmp.Diff(want, got))
		}
	}
	// The label value bound stays below PostgreSQL's B-tree row limit (2704 bytes with page
	// overhead): a target built from one label value must stay indexable.
	if DefaultLimits().MaxLabelValueBytes >= 2704 {
		t.Errorf("max_label_value_bytes default %s reaches the B-tree row limit", DefaultLimits().MaxLabelValueBytes)
	}
}

func TestLoadLimits(t *testing.T) {
	got := mustLoad(t, "conf.limits.yml").Limits
	want := LimitsConfig{
		MaxAlertsPerRequest: 1000,
		MaxLabelsPerAlert:   40,
		MaxLabelNameBytes:   128,
		MaxLabelValueBytes:  1024,
		MaxAnnotationsBytes: 16 << 10,
		MaxParamsBytes:      0,
	}
	if !cmp.Equal(got, want) {
		t.Errorf("limits (-want +got):\n%s", cmp.Diff(want, got))
	}
}

func TestLoadLimitsErrors(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"conf.limits-bad.yml", []string{
			`conf.limits-bad.yml:2: limits.max_alerts_per_request: must not be negative (0 means no bound), got -1`,
			`conf.limits-bad.yml:3: limits.max_labels_per_alert: must not be negative (0 means no bound), got -5`,
			`conf.limits-bad.yml:4: limits.max_label_value_bytes: 2GiB is more than 1GiB`,
			`conf.limits-bad.yml:9: probes[0].labels: label name "service.name" is 12 bytes, more than limits.max_label_name_bytes 8B`,
		}},
		{"conf.limits-bad-bytes.yml", []string{`conf.limits-bad-bytes.yml:3: limits.max_label_value_bytes: invalid size "2 kilobytes"`}},
		{"conf.limits-bad-key.yml", []string{`conf.limits-bad-key.yml:3: unknown key "max_label_bytes" in limits`}},
		{"conf.limits-bad-int.yml", []string{"conf.limits-bad-int.yml:2: limits.max_alerts_per_request: cannot unmarshal !!str `many` into int"}},
	} {
		t.Run(tc.file, func(t *testing.T) { wantLoadErrors(t, tc.file, tc.want) })
	}
	// Configs built in code are checked too (no line numbers there).
	c := Default()
	c.Limits.MaxParamsBytes = -1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "limits.max_params_bytes: must not be negative") {
		t.Errorf("Validate() = %v", err)
	}
}

func TestLoadProbeUTF8Labels(t *testing.T) {
	cfg := mustLoad(t, "conf.probes-utf8.yml")
	if got := cfg.Probes[0].Labels["service.name"]; got != "checkout" {
		t.Errorf("probes[0].labels[service.name] = %q", got)
	}
}

// wantLoadErrors loads a fixture that must fail and checks that the error holds each of want.
func wantLoadErrors(t *testing.T, file string, want []string) {
	t.Helper()
	_, err := load(t, file)
	if err == nil {
		t.Fatal("loaded")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
		}
	}
}
