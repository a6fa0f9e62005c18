package rules

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/responder-sre/responder/alert"
)

// The expected strings are those of Prometheus's template functions for the same inputs.
func TestHumanize(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{0, "0"}, {1, "1"}, {999, "999"}, {1234, "1.234k"}, {1234567, "1.235M"}, {-1234567, "-1.235M"},
		{1e27, "1000Y"}, {0.5, "500m"}, {0.0012, "1.2m"}, {0.000001234, "1.234u"}, {1e-30, "1e-06y"},
		{math.NaN(), "NaN"}, {math.Inf(1), "+Inf"}, {math.Inf(-1), "-Inf"},
	} {
		if got := humanize(tc.in); got != tc.want {
			t.Errorf("humanize(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTemplateFunctions(t *testing.T) {
	a := withValue(crashloop(alert.StatusFiring), 0.07000000000000001)
	for _, tc := range []struct {
		name, body string
		want       any
	}{
		{"percentage of the alert's value", `"{{ humanizePercentage(alert.value) }} of requests fail"`, "7% of requests fail"},
		{"humanize a number", `"{{ humanize(1234567) }}"`, "1.235M"},
		{"humanize a numeric string", `"{{ humanize('2048') }}"`, "2.048k"},
		{"duration in seconds", `"{{ humanizeDuration(3725) }}"`, "1h 2m 5s"},
		{"duration of a duration", `"down for {{ humanizeDuration(alert.activeFor) }}"`, "down for 5m 0s"},
		{"sub-second duration", `"{{ humanizeDuration(0.25) }}"`, "250ms"},
		{"printf", `"{{ printf('%s is at %.1f%%', alert.labels.pod, alert.value * 100) }}"`, "checkout-7d9f8b6c5-x2x4z is at 7.0%"},
		{"printf without args", `"{{ printf('plain') }}"`, "plain"},
	} {
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

func TestTemplateFunctionErrors(t *testing.T) {
	a := crashloop(alert.StatusFiring)
	_, err := renderOne(t, `{url: 'http://status.example.com/', body: "{{ humanize(alert.labels.pod) }}"}`, a)
	if err == nil {
		t.Fatal("humanize of a label that is not a number rendered")
	}
	if d, err := number("x", 90*time.Second); err != nil || d != 90 {
		t.Errorf("number(90s) = %v, %v; want 90 seconds", d, err)
	}
}
