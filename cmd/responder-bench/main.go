// Command responder-bench is the load harness behind `make bench`.
//
// Each phase runs a fresh responder as a child process (this binary, re-executed in a hidden mode
// that runs app.New and Run on a generated config: embedded JetStream with fsync on every write,
// a fresh database on the PostgreSQL that `make db-start` runs), so the responder's peak RSS
// (/proc/<pid>/status VmHWM) and CPU time (/proc/<pid>/stat) are its own and not the harness's.
// The harness posts Alertmanager payloads over loopback and counts what the responder did from the
// store (pgx). The phases (--phases, default all):
//
//   - throughput: --alerts alerts, --per-request per request, from --concurrency clients, dry run
//     (every guard evaluated, nothing called): end-to-end alerts/s (first request sent → last
//     action recorded) and webhook latency p50/p99;
//   - per-request-1: the same with one alert per request (the shape a Falco or probe source sends);
//   - paced: --paced-rate alerts/s for --paced-duration, webhook latency p50/p99;
//   - storm: --storm-alerts alerts as fast as possible: the responder's peak RSS, and from the store
//     that no alert was lost and no action ran twice;
//   - notify: --notify-actions http.request actions (class notify, all to one URL) executed for
//     real against a local HTTP sink in the harness: actions/s, and every sink hit counted;
//   - scaling: --scaling-alerts alerts, dry run, with 1, 2 and 3 responder replicas (child
//     processes like the others) on a real 3-node JetStream cluster (bus/clustertest: nats-server
//     child processes, user and password, stream replicas 3, sync_interval always), the load split
//     evenly over the replicas' webhooks; a fresh cluster and database for each count: end-to-end
//     alerts/s and its ratio to 1 replica (a figure, no target), and from the store that no alert
//     was lost and no action ran twice.
//
// The baselines are measured in the same run: the raw JetStream async-publish rate of the same
// bodies (one per shape: --per-request alerts per publish, and one alert per publish) with the same
// fsync setting and --concurrency publishes in flight, three times (before, between and after the
// phases), median of 3. --go-bench reads the `go test -bench` output of the same `make bench`
// (BenchmarkProcess, BenchmarkMatch1000). A summary table ends the run, one row per target of
// issue 15; --json writes it to a file and --compare prints the change against an earlier one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	phases        []string
	alerts        int
	perRequest    int
	singleAlerts  int
	concurrency   int
	pacedRate     int
	pacedFor      time.Duration
	stormAlerts   int
	notifyActions int
	scalingAlerts int
	rules         int
	consumers     int
	adminURL      string
	cpuProfile    string
	memProfile    string
	goBench       string
	jsonOut       string
	compare       string
}

// Phase names, in the order they run.
const (
	phaseThroughput = "throughput"
	phaseSingle     = "per-request-1"
	phasePaced      = "paced"
	phaseStorm      = "storm"
	phaseNotify     = "notify"
	phaseScaling    = "scaling"
)

var allPhases = []string{phaseThroughput, phaseSingle, phasePaced, phaseStorm, phaseNotify, phaseScaling}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if spec := os.Getenv(childEnv); spec != "" {
		code := childMain(ctx, spec)
		stop()
		os.Exit(code)
	}
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "responder-bench:", err)
		os.Exit(2)
	}
	err = run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "responder-bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("responder-bench", flag.ContinueOnError)
	phases := fs.String("phases", strings.Join(allPhases, ","), "phases to run, comma-separated: "+strings.Join(allPhases, ", "))
	fs.IntVar(&o.alerts, "alerts", 100_000, "alerts to send in the throughput phase")
	fs.IntVar(&o.perRequest, "per-request", 10, "alerts per webhook request (throughput, paced, storm, notify); the baseline publishes bodies of this many")
	fs.IntVar(&o.singleAlerts, "single-alerts", 20_000, "alerts to send in the per-request-1 phase (one per request)")
	fs.IntVar(&o.concurrency, "concurrency", 64, "concurrent webhook clients (and publishes in flight for the baselines)")
	fs.IntVar(&o.pacedRate, "paced-rate", 5000, "alerts/s of the paced phase")
	fs.DurationVar(&o.pacedFor, "paced-duration", 10*time.Second, "length of the paced phase (after a 1s warm-up at the same rate)")
	fs.IntVar(&o.stormAlerts, "storm-alerts", 100_000, "alerts to send in the storm phase")
	fs.IntVar(&o.notifyActions, "notify-actions", 1000, "http.request actions the notify phase executes")
	fs.IntVar(&o.scalingAlerts, "scaling-alerts", 20_000, "alerts the scaling phase sends with each replica count (1, 2 and 3)")
	fs.IntVar(&o.rules, "rules", 10, "rules loaded; one matches the bench alerts, the others are a generated pack (90% pin alert.name or labels.service)")
	fs.IntVar(&o.consumers, "consumers", 2, "bus.consumers of the responder under test")
	fs.StringVar(&o.adminURL, "database-admin-url", "postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable", "PostgreSQL to create the bench databases on (make db-start)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the responder under test (in the first phase run) to this file")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile of the responder under test (in the first phase run), taken at its peak, to this file")
	fs.StringVar(&o.goBench, "go-bench", "", "read BenchmarkProcess and BenchmarkMatch1000 from this `file` (go test -bench output)")
	fs.StringVar(&o.jsonOut, "json", "", "write the summary (and run metadata) to this JSON file")
	fs.StringVar(&o.compare, "compare", "", "print the change against an earlier --json file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for p := range strings.SplitSeq(*phases, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
		case !slices.Contains(allPhases, p):
			return o, fmt.Errorf("unknown phase %q (want %s)", p, strings.Join(allPhases, ", "))
		case !slices.Contains(o.phases, p):
			o.phases = append(o.phases, p)
		}
	}
	// Run in the canonical order whatever the order given.
	slices.SortFunc(o.phases, func(a, b string) int { return slices.Index(allPhases, a) - slices.Index(allPhases, b) })
	if o.perRequest == 1 && slices.Contains(o.phases, phaseThroughput) && slices.Contains(o.phases, phaseSingle) {
		// The throughput phase already runs at one alert per request.
		o.phases = slices.DeleteFunc(o.phases, func(p string) bool { return p == phaseSingle })
	}
	return o, o.validate()
}

func (o options) validate() error {
	var errs []error
	for _, c := range []struct {
		name string
		v    int
	}{{"alerts", o.alerts}, {"per-request", o.perRequest}, {"single-alerts", o.singleAlerts}, {"concurrency", o.concurrency},
		{"paced-rate", o.pacedRate}, {"storm-alerts", o.stormAlerts}, {"notify-actions", o.notifyActions},
		{"scaling-alerts", o.scalingAlerts}, {"rules", o.rules}, {"consumers", o.consumers}} {
		if c.v < 1 {
			errs = append(errs, fmt.Errorf("--%s must be at least 1", c.name))
		}
	}
	if o.pacedFor <= 0 {
		errs = append(errs, errors.New("--paced-duration must be positive"))
	}
	if len(o.phases) == 0 && o.goBench == "" {
		errs = append(errs, errors.New("no phase selected"))
	}
	return errors.Join(errs...)
}
