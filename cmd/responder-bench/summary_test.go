package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
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
			{Phase: scalingPhaseName(1), Replicas: 1, Rate: 4000, Store: ok},
			{Phase: scalingPhaseName(2), Replicas: 2, Rate: 4400, Store: ok, Messages: 90, Deliveries: 120, Rate99: 5000},
			{Phase: scalingPhaseName(3), Replicas: 3, Rate: 3000, Store: ok},
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
		{"scaling_1_replicas", true, 4000, 4000, 100, true},
		{"scaling_2_replicas", true, 4400, 4000, 110, true},
		{"scaling_3_replicas", true, 3000, 4000, 75, true},
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
	b.phases[0].Rate = 16000                 // ratio 0.2 → 0.4
	b.phases[2].P99ms = 19                   // latency doubled
	b.phases[4].Rate = 251                   // the same
	b.phases[5].Rate = 8000                  // scaling, 1 replica: twice as fast, its ratio still 1
	b.phases = slices.Delete(b.phases, 4, 5) // notify not run
	now := report{Measures: b.measures(g)}
	var out bytes.Buffer
	printCompare(&out, back, now)
	for _, want := range []string{
		"2.00× (ratio, better)",
		"2.00× (value, worse)",
		"1.00× (ratio, same)",
		"2.00× (value, better)",
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

// TestScalingSummary: the scaling rows are a figure. The summary gives them no verdict, even when
// slower with more replicas; a lost alert or an action twice is written in the note; not run,
// they are "not measured".
func TestScalingSummary(t *testing.T) {
	b := testBench(t)
	b.phases[7].Store = &storeCheck{Alerts: 100, Lost: 1, Twice: 2}
	ms := b.measures(nil)
	var out bytes.Buffer
	printSummary(&out, report{Measures: ms})
	lines := map[int]string{}
	for line := range strings.Lines(out.String()) {
		for _, k := range scalingReplicas {
			if strings.Contains(line, fmt.Sprintf("end to end, %d replica", k)) {
				lines[k] = line
			}
		}
	}
	for k, want := range map[int][]string{
		1: {"4,000 alerts/s", "1.00×", "none (a figure)", "lost 0, twice 0"},
		2: {"4,400 alerts/s", "4,000 alerts/s (1 replica)", "1.10×", "lost 0, twice 0 (from the store); 5,000 alerts/s to 99%; 120 deliveries of 90 messages"},
		3: {"3,000 alerts/s", "0.75×", "STORE CHECK FAILED: lost 1, twice 2"},
	} {
		line, ok := lines[k]
		if !ok {
			t.Fatalf("no summary row for %d replicas:\n%s", k, out.String())
		}
		for _, w := range want {
			if !strings.Contains(line, w) {
				t.Errorf("row of %d replicas lacks %q: %q", k, w, line)
			}
		}
		if strings.Contains(line, " NO ") || strings.Contains(line, " yes ") {
			t.Errorf("row of %d replicas has a verdict, want none (a figure): %q", k, line)
		}
	}
	if m := find(ms, scalingID(3)); m.Met || !m.Figure {
		t.Errorf("3 replicas with a lost alert: met %v, figure %v; want met false (the store check), figure true", m.Met, m.Figure)
	}
	b.phases = b.phases[:5]
	for _, k := range scalingReplicas {
		if m := find(b.measures(nil), scalingID(k)); m.Measured || m.Note != "not measured" {
			t.Errorf("%d replicas not run: measured %v, note %q; want not measured", k, m.Measured, m.Note)
		}
	}
}

// TestSplitEvenly: every body goes to exactly one replica, in shares and client counts that differ
// by at most one.
func TestSplitEvenly(t *testing.T) {
	for _, c := range []struct{ bodies, concurrency, k int }{{2000, 64, 1}, {2000, 64, 2}, {2000, 64, 3}, {7, 2, 3}, {3, 1, 3}} {
		bodies := make([][]byte, c.bodies)
		for i := range bodies {
			bodies[i] = []byte(strconv.Itoa(i))
		}
		shares, clients := splitEvenly(bodies, c.concurrency, c.k)
		if len(shares) != c.k || len(clients) != c.k {
			t.Fatalf("%+v: %d shares, %d client counts; want %d", c, len(shares), len(clients), c.k)
		}
		var got [][]byte
		sizes, total := []int{}, 0
		for i, sh := range shares {
			got = append(got, sh...)
			sizes = append(sizes, len(sh))
			if clients[i] < 1 {
				t.Errorf("%+v: share %d has %d clients, want at least 1", c, i, clients[i])
			}
			total += clients[i]
		}
		if diff := cmp.Diff(bodies, got); diff != "" {
			t.Errorf("%+v: the shares put together differ from the bodies (-want +got):\n%s", c, diff)
		}
		if slices.Max(sizes)-slices.Min(sizes) > 1 || slices.Max(clients)-slices.Min(clients) > 1 {
			t.Errorf("%+v: share sizes %v, clients %v; want each within one of the others", c, sizes, clients)
		}
		if want := max(c.concurrency, c.k); total != want {
			t.Errorf("%+v: %d clients in all, want %d", c, total, want)
		}
	}
}
