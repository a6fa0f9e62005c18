package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseGoBench(t *testing.T) {
	g, err := readGoBench("testdata/go-bench.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		bench, unit string
		want        float64
		ok          bool
	}{
		{"BenchmarkMatch1000", "index_ns/alert", 4100, true},
		{"BenchmarkMatch1000", "linear_ns/alert", 301000, true},
		{"BenchmarkMatch1000", "speedup", 73.41, true},
		// -count 3: the median of each metric.
		{"BenchmarkProcess", "alerts/s", 13201, true},
		{"BenchmarkProcess", "baseline_rows/s", 91415, true},
		{"BenchmarkProcess", "ratio", 0.1444, true},
		// Not BenchmarkProcessResend's, nor BenchmarkMatch1000Rules'.
		{"BenchmarkProcessResend", "ratio", 0, false},
		{"BenchmarkMatch1000Rules", "speedup", 0, false},
		// A sub-benchmark is found by its parent's name.
		{"BenchmarkPublish", "msgs/s", 2106, true},
		{"BenchmarkAbsent", "ns/op", 0, false},
	} {
		got, ok := g.metric(c.bench, c.unit)
		if got != c.want || ok != c.ok {
			t.Errorf("metric(%s, %s) = %v, %v; want %v, %v", c.bench, c.unit, got, ok, c.want, c.ok)
		}
	}
	if diff := cmp.Diff([]string{"github.com/responder-sre/responder/engine"}, g.failed); diff != "" {
		t.Errorf("failed packages (-want +got):\n%s", diff)
	}
}

func TestTrimProcs(t *testing.T) {
	for in, want := range map[string]string{
		"BenchmarkProcess-2":              "BenchmarkProcess",
		"BenchmarkProcess":                "BenchmarkProcess",
		"BenchmarkPublish/raw-async-16":   "BenchmarkPublish/raw-async",
		"BenchmarkPublish/raw-async":      "BenchmarkPublish/raw-async",
		"BenchmarkExecute/dry_run-2":      "BenchmarkExecute/dry_run",
		"BenchmarkMatch1000Rules-2":       "BenchmarkMatch1000Rules",
		"BenchmarkMatch/rules=1000-128-4": "BenchmarkMatch/rules=1000-128",
	} {
		if got := trimProcs(in); got != want {
			t.Errorf("trimProcs(%q) = %q, want %q", in, got, want)
		}
	}
}
