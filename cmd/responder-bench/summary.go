package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// measure is one row of the summary: one target of issue 15.
type measure struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Measured is false when the run did not measure it (phase not selected, benchmark absent).
	Measured bool    `json:"measured"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	// Baseline (in BaselineUnit) and Ratio (Value/Baseline, or the benchmark's own ratio) are 0
	// when the measure has none.
	Baseline     float64 `json:"baseline,omitempty"`
	BaselineUnit string  `json:"baseline_unit,omitempty"`
	Ratio        float64 `json:"ratio,omitempty"`
	// LowerIsBetter is true for latencies, memory and costs.
	LowerIsBetter bool   `json:"lower_is_better,omitempty"`
	Target        string `json:"target"`
	// Figure is true for a measure with no target (the scaling rows): the summary shows no verdict
	// for it, Met says only that the store check passed (none lost, none twice), and --compare
	// compares its value.
	Figure bool   `json:"figure,omitempty"`
	Met    bool   `json:"met"`
	Note   string `json:"note,omitempty"`
}

// report is the --json file.
type report struct {
	Meta      meta          `json:"meta"`
	Measures  []measure     `json:"measures"`
	Phases    []phaseResult `json:"phases"`
	Baselines []baselineOut `json:"baselines"`
}

type meta struct {
	Time       time.Time `json:"time"`
	Commit     string    `json:"commit,omitempty"`
	GoVersion  string    `json:"go_version"`
	GOMAXPROCS int       `json:"gomaxprocs"`
	NumCPU     int       `json:"num_cpu"`
	Args       []string  `json:"args"`
	// Seconds is the harness's own run time (the Go benchmarks before it excluded).
	Seconds float64 `json:"seconds"`
}

type baselineOut struct {
	PerPublish int       `json:"alerts_per_publish"`
	Messages   int       `json:"messages"`
	Rates      []float64 `json:"msgs_per_s"`
	Median     float64   `json:"median_msgs_per_s"`
}

// Measure IDs, stable across runs (--compare matches on them).
const (
	idE2E10   = "e2e_10_per_request"
	idE2E1    = "e2e_1_per_request"
	idPaced   = "webhook_p99_paced"
	idMatch   = "match_1000_rules"
	idStorm   = "storm"
	idProcess = "process_vs_copyfrom"
	idNotify  = "notify_actions"
	// idScaling is the scaling rows' ID prefix: scaling_1_replicas, scaling_2_replicas, ...
	idScaling = "scaling_"
)

func scalingID(k int) string { return fmt.Sprintf("%s%d_replicas", idScaling, k) }

// finish prints the summary, writes --json and prints --compare.
func (b *bench) finish(started time.Time) error {
	var gb *goBench
	if b.o.goBench != "" {
		var err error
		if gb, err = readGoBench(b.o.goBench); err != nil {
			return fmt.Errorf("--go-bench: %w", err)
		}
		for _, pkg := range gb.failed {
			fmt.Printf("go test -bench FAILED in %s (see %s)\n", pkg, b.o.goBench)
		}
	}
	rep := report{Meta: runMeta(started), Measures: b.measures(gb), Phases: b.phases}
	for _, per := range slices.Sorted(maps.Keys(b.baselines)) {
		s := b.baselines[per]
		rep.Baselines = append(rep.Baselines, baselineOut{PerPublish: per, Messages: len(s.bodies), Rates: s.rates, Median: s.median()})
	}
	fmt.Println()
	printSummary(os.Stdout, rep)
	if b.o.jsonOut != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(b.o.jsonOut, append(data, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Println("summary written to", b.o.jsonOut)
	}
	if b.o.compare != "" {
		var old report
		data, err := os.ReadFile(b.o.compare)
		if err == nil {
			err = json.Unmarshal(data, &old)
		}
		if err != nil {
			return fmt.Errorf("--compare: %w", err)
		}
		fmt.Println()
		printCompare(os.Stdout, old, rep)
	}
	return nil
}

func runMeta(started time.Time) meta {
	m := meta{Time: started.UTC().Truncate(time.Second), GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		NumCPU: runtime.NumCPU(), Args: os.Args[1:], Seconds: time.Since(started).Round(time.Second).Seconds()}
	if out, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			m.Commit += "-dirty"
		}
	} else if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				m.Commit = s.Value
			}
		}
	}
	return m
}

func (b *bench) phase(name string) (phaseResult, bool) {
	for _, p := range b.phases {
		if p.Phase == name {
			return p, true
		}
	}
	return phaseResult{}, false
}

// measures are the rows of the summary, in the order of the Targets table.
func (b *bench) measures(gb *goBench) []measure {
	e2e10 := measure{ID: idE2E10, Name: "end to end, 10 alerts/request, dry run", Unit: "alerts/s", BaselineUnit: "alerts/s (raw JetStream)",
		Target: "≥ 20,000 alerts/s and ≥ 0.4×"}
	e2e1 := measure{ID: idE2E1, Name: "end to end, 1 alert/request, dry run", Unit: "alerts/s", BaselineUnit: "msgs/s (raw JetStream, 1/publish)",
		Target: "≥ 1.5×"}
	if p, ok := b.phase(phaseThroughput); ok && b.o.perRequest == 1 {
		b.e2e(&e2e1, p, 0)
	} else if ok {
		if b.o.perRequest != 10 {
			e2e10.Note = fmt.Sprintf("measured at %d alerts/request", b.o.perRequest)
		}
		b.e2e(&e2e10, p, 20_000)
	}
	if p, ok := b.phase(phaseSingle); ok {
		b.e2e(&e2e1, p, 0)
	}
	ms := []measure{e2e10, e2e1, b.pacedMeasure(), matchMeasure(gb), b.stormMeasure(), processMeasure(gb), b.notifyMeasure()}
	ms = append(ms, b.scalingMeasures()...)
	for i := range ms {
		if !ms[i].Measured && ms[i].Note == "" {
			ms[i].Note = "not measured"
		}
	}
	return ms
}

// e2e fills m from an end-to-end phase and the baseline of its shape; minRate (0: none) is the
// target's absolute part.
func (b *bench) e2e(m *measure, p phaseResult, minRate float64) {
	s := b.baselines[p.PerRequest]
	m.Measured, m.Value = true, p.Rate
	if s != nil && s.median() > 0 {
		m.Baseline = s.alertsPerSecond()
		m.Ratio = p.Rate / m.Baseline
	}
	switch m.ID {
	case idE2E10:
		m.Met = p.Rate >= minRate && m.Ratio >= 0.4
	case idE2E1:
		m.Met = m.Ratio >= 1.5
	}
	if p.Store != nil && (p.Store.Lost > 0 || p.Store.Twice > 0) {
		m.Met = false
		m.Note = fmt.Sprintf("store: lost %d, twice %d", p.Store.Lost, p.Store.Twice)
	}
}

func (b *bench) pacedMeasure() measure {
	m := measure{ID: idPaced, Name: fmt.Sprintf("webhook p99 at %s alerts/s paced", num(float64(b.o.pacedRate))), Unit: "ms", LowerIsBetter: true, Target: "≤ 10 ms"}
	if p, ok := b.phase(phasePaced); ok {
		m.Measured, m.Value, m.Met = true, p.P99ms, p.P99ms <= 10
		m.Note = fmt.Sprintf("p50 %.2f ms; last action %.2f s after the last request", p.P50ms, p.LagSeconds)
		if b.o.pacedRate != 5000 {
			m.Met = false
		}
	}
	return m
}

func matchMeasure(gb *goBench) measure {
	m := measure{ID: idMatch, Name: "one alert against 1,000 rules (BenchmarkMatch1000)", Unit: "ns/alert (index)", BaselineUnit: "ns/alert (linear scan)",
		LowerIsBetter: true, Target: "≤ 50 µs/alert and ≥ 6× the linear scan"}
	idx, ok1 := gb.metric("BenchmarkMatch1000", "index_ns/alert")
	lin, ok2 := gb.metric("BenchmarkMatch1000", "linear_ns/alert")
	if !ok1 || !ok2 {
		return m
	}
	m.Measured, m.Value, m.Baseline = true, idx, lin
	if sp, ok := gb.metric("BenchmarkMatch1000", "speedup"); ok {
		m.Ratio = sp
	} else if idx > 0 {
		m.Ratio = lin / idx
	}
	m.Met = idx <= 50_000 && m.Ratio >= 6
	return m
}

func (b *bench) stormMeasure() measure {
	m := measure{ID: idStorm, Name: fmt.Sprintf("%s-alert storm: responder peak RSS", num(float64(b.o.stormAlerts))), Unit: "MB", LowerIsBetter: true,
		Target: "≤ 200 MB; lost 0, twice 0"}
	p, ok := b.phase(phaseStorm)
	if !ok {
		return m
	}
	m.Measured, m.Value = true, float64(p.PeakRSS)/1e6
	m.Met = p.PeakRSS > 0 && p.PeakRSS <= 200e6 && p.Store != nil && p.Store.Lost == 0 && p.Store.Twice == 0
	if p.Store != nil {
		m.Note = fmt.Sprintf("lost %d, twice %d (from the store); %.0f alerts/s", p.Store.Lost, p.Store.Twice, p.Rate)
	}
	if p.PeakRSS == 0 {
		m.Note = "peak RSS unknown on this system; " + m.Note
	}
	return m
}

func processMeasure(gb *goBench) measure {
	m := measure{ID: idProcess, Name: "Engine.Process vs CopyFrom (BenchmarkProcess)", Unit: "alerts/s", BaselineUnit: "rows/s (CopyFrom)",
		Target: "≥ 0.3×"}
	v, ok1 := gb.metric("BenchmarkProcess", "alerts/s")
	base, ok2 := gb.metric("BenchmarkProcess", "baseline_rows/s")
	if !ok1 || !ok2 {
		return m
	}
	m.Measured, m.Value, m.Baseline = true, v, base
	if r, ok := gb.metric("BenchmarkProcess", "ratio"); ok {
		m.Ratio = r
	} else if base > 0 {
		m.Ratio = v / base
	}
	m.Met = m.Ratio >= 0.3
	return m
}

func (b *bench) notifyMeasure() measure {
	m := measure{ID: idNotify, Name: fmt.Sprintf("%s notify actions to one URL, executed", num(float64(b.o.notifyActions))), Unit: "actions/s", Target: "≥ 200/s; every one once"}
	p, ok := b.phase(phaseNotify)
	if !ok {
		return m
	}
	m.Measured, m.Value = true, p.Rate
	once := p.Sink != nil && p.Sink.Hits == p.Alerts && p.Sink.Distinct == p.Alerts && p.Store != nil && p.Store.Lost == 0 && p.Store.Twice == 0
	m.Met = p.Rate >= 200 && once
	if p.Sink != nil {
		m.Note = fmt.Sprintf("sink: %d hits, %d distinct, %d twice", p.Sink.Hits, p.Sink.Distinct, p.Sink.Twice)
	}
	return m
}

// scalingMeasures are the scaling rows, one per replica count: end-to-end alerts/s and the ratio
// to the first count (one replica). A figure: no target.
func (b *bench) scalingMeasures() []measure {
	var ref float64
	if p, ok := b.phase(scalingPhaseName(scalingReplicas[0])); ok {
		ref = p.Rate
	}
	var ms []measure
	for _, k := range scalingReplicas {
		m := measure{ID: scalingID(k), Name: fmt.Sprintf("end to end, %s on a %d-node JetStream cluster, dry run", replicasText(k), scalingNodes),
			Unit: "alerts/s", BaselineUnit: fmt.Sprintf("alerts/s (%d replica)", scalingReplicas[0]), Target: "none (a figure)", Figure: true}
		p, ok := b.phase(scalingPhaseName(k))
		if !ok {
			ms = append(ms, m)
			continue
		}
		m.Measured, m.Value = true, p.Rate
		if ref > 0 {
			m.Baseline, m.Ratio = ref, p.Rate/ref
		}
		m.Met = p.Store != nil && p.Store.Lost == 0 && p.Store.Twice == 0
		if p.Store != nil {
			m.Note = fmt.Sprintf("lost %d, twice %d (from the store)", p.Store.Lost, p.Store.Twice)
			if !m.Met {
				m.Note = "STORE CHECK FAILED: " + m.Note
			}
		}
		if p.Rate99 > 0 {
			m.Note += fmt.Sprintf("; %s alerts/s to 99%%", num(p.Rate99))
		}
		if p.Messages > 0 {
			m.Note += fmt.Sprintf("; %d deliveries of %d messages", p.Deliveries, p.Messages)
		}
		ms = append(ms, m)
	}
	return ms
}

// printSummary prints the summary table.
func printSummary(w io.Writer, rep report) {
	fmt.Fprintln(w, "== summary (issue 15 targets; ratios to baselines measured in this run; the scaling rows are a figure, issue 18, ratio to 1 replica)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tvalue\tbaseline\tratio\ttarget\tmet\tnote")
	for _, m := range rep.Measures {
		if !m.Measured {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t%s\t-\t%s\n", m.Name, m.Target, m.Note)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\t%s\t%s\t%s\n", m.Name, num(m.Value), m.Unit, baselineText(m), ratioText(m.Ratio), m.Target, metText(m), m.Note)
	}
	tw.Flush()
	fmt.Fprintf(w, "run: %s, commit %s, %s, GOMAXPROCS %d, %d CPUs, %.0fs\n", rep.Meta.Time.Format(time.RFC3339), orNone(rep.Meta.Commit),
		rep.Meta.GoVersion, rep.Meta.GOMAXPROCS, rep.Meta.NumCPU, rep.Meta.Seconds)
}

func baselineText(m measure) string {
	if m.Baseline == 0 {
		return "-"
	}
	return num(m.Baseline) + " " + m.BaselineUnit
}

func ratioText(r float64) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", r)
}

// metText is the met column: yes or NO, and for a figure (no target) "-".
func metText(m measure) string {
	if m.Figure {
		return "-"
	}
	return yesNo(m.Met)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func orNone(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// num formats v with thousands separators above 100, two decimals below.
func num(v float64) string {
	if v < 100 {
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
	}
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// printCompare prints, per measure, the earlier and the new value and ratio, and the change: of
// the ratio when both have one (ratios to same-run baselines compare across runs and machines
// better than raw values), else of the value.
func printCompare(w io.Writer, old, now report) {
	fmt.Fprintf(w, "== compared with the run of %s (commit %s)\n", old.Meta.Time.Format(time.RFC3339), orNone(old.Meta.Commit))
	byID := map[string]measure{}
	for _, m := range old.Measures {
		byID[m.ID] = m
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tbefore\tnow\tratio before\tratio now\tchange")
	for _, m := range now.Measures {
		o, ok := byID[m.ID]
		if !ok || !o.Measured || !m.Measured {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t\tnot comparable\n", m.Name, valueText(o, ok), valueText(m, true))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, valueText(o, true), valueText(m, true), ratioText(o.Ratio), ratioText(m.Ratio), change(o, m))
	}
	tw.Flush()
}

func valueText(m measure, ok bool) string {
	if !ok || !m.Measured {
		return "-"
	}
	return num(m.Value) + " " + m.Unit
}

// change is new/old of the ratios (else of the values), and whether that is better.
func change(o, m measure) string {
	a, b := o.Value, m.Value
	what := "value"
	if o.Ratio > 0 && m.Ratio > 0 && !m.Figure { // a figure's ratio is to another row of the same run
		a, b, what = o.Ratio, m.Ratio, "ratio"
	}
	if a == 0 {
		return "-"
	}
	f := b / a
	better := f > 1
	if m.LowerIsBetter && what == "value" {
		better = f < 1
	}
	verdict := "worse"
	switch {
	case f > 0.97 && f < 1.03:
		verdict = "same"
	case better:
		verdict = "better"
	}
	return fmt.Sprintf("%.2f× (%s, %s)", f, what, verdict)
}
