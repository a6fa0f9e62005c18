package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testBench is a run with every phase measured: the e2e phases at half their targets' ratios, the
// others meeting theirs.
func testBench(t *testing.T) *bench {
	t.Helper()
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	ok := &storeCheck{Alerts: 100}
	return &bench{o: o,
		baselines: map[int]*baselineSet{10: {perPublish: 10, rates: []float64{4000, 3000, 5000}}, 1: {perPublish: 1, rates: []float64{4000, 4400, 4200}}},
		phases: []phaseResult{
			{Phase: phaseThroughput, PerRequest: 10, Rate: 8000, Store: ok},
			{Phase: phaseSingle, PerRequest: 1, Rate: 3150, Store: ok},
			{Phase: phasePaced, P99ms: 9.5, P50ms: 2},
			{Phase: phaseStorm, PeakRSS: 150e6, Store: ok},
			{Phase: phaseNotify, Alerts: 1000, Rate: 250, Store: ok, Sink: &sinkCount{Hits: 1000, Distinct: 1000}},
		}}
}

func TestMeasures(t *testing.T) {
	g, err := readGoBench("testdata/go-bench.txt")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		ID        string
		Measured  bool
		Value     float64
		Baseline  float64
		RatioX100 int
		Met       bool
	}
	var got []row
	for _, m := range testBench(t).measures(g) {
		got = append(got, row{m.ID, m.Measured, m.Value, m.Baseline, int(m.Ratio*100 + 0.5), m.Met})
	}
	want := []row{
		{idE2E10, true, 8000, 40000, 20, false},
		{idE2E1, true, 3150, 4200, 75, false},
		{idPaced, true, 9.5, 0, 0, true},
		{idMatch, true, 4100, 301000, 7341, true},
		{idStorm, true, 150, 0, 0, true},
		{idProcess, true, 13201, 91415, 14, false},
		{idNotify, true, 250, 0, 0, true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("measures (-want +got):\n%s", diff)
	}
}

// TestMeasuresNotMet: a lost alert or an action twice fails a measure whatever its speed; a
// phase or benchmark not run is "not measured".
func TestMeasuresNotMet(t *testing.T) {
	b := testBench(t)
	b.phases[0].Rate = 30000
	b.phases[0].Store = &storeCheck{Lost: 1}
	b.phases[3].Store = &storeCheck{Twice: 2}
	b.phases[4].Sink = &sinkCount{Hits: 1001, Distinct: 1000, Twice: 1}
	ms := b.measures(nil)
	for _, id := range []string{idE2E10, idStorm, idNotify} {
		if m := find(ms, id); m.Met || !m.Measured {
			t.Errorf("%s: met %v, measured %v; want not met, measured", id, m.Met, m.Measured)
		}
	}
	for _, id := range []string{idMatch, idProcess} {
		if m := find(ms, id); m.Measured || m.Note != "not measured" {
			t.Errorf("%s: measured %v, note %q; want not measured", id, m.Measured, m.Note)
		}
	}
}

func find(ms []measure, id string) measure {
	for _, m := range ms {
		if m.ID == id {
			return m
		}
	}
	return measure{}
}

// TestCompare round-trips a report through JSON and compares a later one with it.
func TestCompare(t *testing.T) {
	g, err := readGoBench("testdata/go-bench.txt")
	if err != nil {
		t.Fatal(err)
	}
	b := testBench(t)
	old := report{Meta: meta{Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Commit: "abc"}, Measures: b.measures(g)}
	data, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	b.phases[0].Rate = 16000 // ratio 0.2 → 0.4
	b.phases[2].P99ms = 19   // latency doubled
	b.phases[4].Rate = 251   // the same
	b.phases = b.phases[:4]  // notify not run
	now := report{Measures: b.measures(g)}
	var out bytes.Buffer
	printCompare(&out, back, now)
	for _, want := range []string{
		"2.00× (ratio, better)",
		"2.00× (value, worse)",
		"1.00× (ratio, same)",
		"not comparable",
		"commit abc",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("compare output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestNum(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 9.5: "9.5", 13.456: "13.46", 100: "100", 1234: "1,234", 1234567.8: "1,234,568", 40000: "40,000"} {
		if got := num(v); got != want {
			t.Errorf("num(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, c := range []struct {
		args   []string
		phases []string
		err    string
	}{
		{nil, allPhases, ""},
		{[]string{"--phases", "storm, throughput"}, []string{phaseThroughput, phaseStorm}, ""},
		{[]string{"--phases", "throughput,per-request-1", "--per-request", "1"}, []string{phaseThroughput}, ""},
		{[]string{"--phases", "nope"}, nil, `unknown phase "nope"`},
		{[]string{"--alerts", "0"}, nil, "--alerts must be at least 1"},
		{[]string{"extra"}, nil, "unexpected arguments"},
	} {
		o, err := parseFlags(c.args)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseFlags(%q) error %v, want %q", c.args, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseFlags(%q): %v", c.args, err)
			continue
		}
		if diff := cmp.Diff(c.phases, o.phases); diff != "" {
			t.Errorf("parseFlags(%q) phases (-want +got):\n%s", c.args, diff)
		}
	}
}
