package ruletest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/builtin"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgserver"
	"github.com/responder-sre/responder/vocab"
)

// Options configure Run.
type Options struct {
	Stdout, Stderr io.Writer
	// ConfigFile, when set, configures the handlers (and the guards' safety settings) exactly as
	// serve would; empty means the defaults.
	ConfigFile string
	// DatabaseURL is a PostgreSQL server to create the tests' databases on (the user needs
	// CREATEDB); empty starts a throwaway server from the local binaries (store/pgserver).
	DatabaseURL string
	// Version stamps the rows (default "rules-test").
	Version string
	Logger  *slog.Logger
}

// Run runs the rule unit tests of files, prints promtool-style results to o.Stdout (setup errors
// to o.Stderr) and returns the exit code: 0 when every test passed, 1 otherwise.
func Run(ctx context.Context, files []string, o Options) int {
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.Version == "" {
		o.Version = "rules-test"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if len(files) == 0 {
		fmt.Fprintln(o.Stderr, "rules test: no test files given")
		return 1
	}
	cfg := config.Default()
	if o.ConfigFile != "" {
		var err error
		if cfg, err = config.Load(o.ConfigFile); err != nil {
			fmt.Fprintln(o.Stderr, err)
			return 1
		}
	}
	registry, err := builtin.Registry(handlers.Env{Config: cfg, Version: o.Version, Logger: o.Logger})
	if err != nil {
		fmt.Fprintln(o.Stderr, err)
		return 1
	}
	if _, err := recording(registry, nil); err != nil {
		fmt.Fprintln(o.Stderr, err)
		return 1
	}
	r := &runner{o: o, cfg: cfg, real: registry}
	defer r.close(ctx)
	failed := false
	for _, f := range files {
		fmt.Fprintf(o.Stdout, "Unit Testing: %s\n", f)
		fails, err := r.runFile(ctx, f)
		if err != nil {
			if errors.Is(err, errSetup) {
				fmt.Fprintln(o.Stderr, err)
				return 1
			}
			fmt.Fprintf(o.Stdout, "  FAILED:\n%s\n", indent(err.Error(), "    "))
			failed = true
			continue
		}
		if len(fails) == 0 {
			fmt.Fprintln(o.Stdout, "  SUCCESS")
			continue
		}
		failed = true
		fmt.Fprintln(o.Stdout, "  FAILED:")
		for _, f := range fails {
			fmt.Fprintln(o.Stdout, indent(f, "    "))
		}
	}
	if failed {
		return 1
	}
	return 0
}

// errSetup marks errors that stop the whole run (no database).
var errSetup = errors.New("rules test")

type runner struct {
	o    Options
	cfg  *config.Config
	real *handlers.Registry
	dbs  *databases
}

func (r *runner) close(ctx context.Context) {
	if r.dbs != nil {
		r.dbs.close(ctx)
	}
}

func (r *runner) databases(ctx context.Context) (*databases, error) {
	if r.dbs != nil {
		return r.dbs, nil
	}
	d, err := openDatabases(ctx, r.o.DatabaseURL, r.o.Version)
	if err != nil {
		if errors.Is(err, pgserver.ErrNoBinaries) {
			return nil, fmt.Errorf("%w: %w (or pass --database.url)", errSetup, err)
		}
		return nil, fmt.Errorf("%w: database: %w", errSetup, err)
	}
	r.dbs = d
	return d, nil
}

// runFile runs one test file; it returns one message per failed test, or an error when the file
// or its rules do not load.
func (r *runner) runFile(ctx context.Context, path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := ParseFile(path, data)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, rf := range f.RuleFiles {
		if !filepath.IsAbs(rf) {
			rf = filepath.Join(filepath.Dir(path), rf)
		}
		paths = append(paths, rf)
	}
	set, err := rules.LoadFiles(paths, r.real)
	if err != nil {
		return nil, err
	}
	dbs, err := r.databases(ctx)
	if err != nil {
		return nil, err
	}
	// Tests are independent (a database each): run them concurrently, report in file order.
	msgs := make([]string, len(f.Tests))
	errs := make([]error, len(f.Tests))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, t := range f.Tests {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			msgs[i], errs[i] = r.runTest(ctx, f, set, t, dbs)
		}()
	}
	wg.Wait()
	var fails []string
	for i, t := range f.Tests {
		var le *lineError
		switch {
		case errors.As(errs[i], &le):
			fails = append(fails, fmt.Sprintf("%s:%d: test %q: %v", path, le.line, t.Name, le.err))
		case errs[i] != nil:
			return nil, fmt.Errorf("%s:%d: test %q: %w", path, t.Line, t.Name, errs[i])
		case msgs[i] != "":
			fails = append(fails, fmt.Sprintf("%s:%d: test %q:\n%s", path, t.Line, t.Name, indent(msgs[i], "  ")))
		}
	}
	return fails, nil
}

// lineError is a test whose input or prior state cannot be set up as written, at a line of the
// test file.
type lineError struct {
	line int
	err  error
}

func (e *lineError) Error() string { return e.err.Error() }

func lineErr(line int, format string, args ...any) error {
	return &lineError{line, fmt.Errorf(format, args...)}
}

// clock is the test's injected clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// harness is one test's engine on its own database.
type harness struct {
	st  *store.Store
	eng *engine.Engine
	clk *clock
	set *rules.Set
}

func (r *runner) runTest(ctx context.Context, f *File, set *rules.Set, t Test, dbs *databases) (string, error) {
	st, drop, err := dbs.open(ctx)
	if err != nil {
		return "", err
	}
	defer drop()
	s := r.cfg.Safety
	var budgets []engine.Budget
	for _, b := range s.Budgets {
		budgets = append(budgets, engine.Budget{Name: b.Name, Match: b.Match, Per: b.Per, Max: b.Max, Window: b.Window.D()})
	}
	h := &harness{st: st, clk: &clock{}, set: set}
	if err := checkStepResults(set, r.real, t); err != nil {
		return "", err
	}
	rec, err := recording(r.real, h.stepResults(r.real, t.StepResults))
	if err != nil {
		return "", err
	}
	h.eng, err = engine.New(engine.Options{Store: st, Handlers: rec, Rules: set, Owner: "rules-test",
		MaxAlertAge: s.MaxAlertAge.D(), Budgets: budgets,
		StormMaxTargets: s.StormGuard.MaxTargets, StormWindow: s.StormGuard.Window.D(),
		BreakerFailures: s.Breaker.Failures, BreakerOpenFor: s.Breaker.OpenFor.D(),
		ApprovalTTL: r.cfg.Approvals.TTL.D(), Executors: 1,
		Now: h.clk.Now, Logger: r.o.Logger, Registerer: prometheus.NewRegistry()})
	if err != nil {
		return "", err
	}
	if err := h.prior(ctx, f.Now, t); err != nil {
		return "", err
	}
	mark, err := h.lastActionID(ctx)
	if err != nil {
		return "", err
	}
	// Now: one batch with every input alert, as one webhook request would bring them.
	h.clk.set(f.Now)
	var batch []alert.Alert
	for _, in := range t.InputAlerts {
		a, err := in.alert(f.Now)
		if err != nil {
			return "", lineErr(in.Line, "%w", err)
		}
		batch = append(batch, a)
	}
	if err := h.step(ctx, batch); err != nil {
		return "", err
	}
	if err := h.after(ctx, f, t, mark, batch); err != nil {
		return "", err
	}
	got, skipped, err := h.actionsAfter(ctx, mark)
	if err != nil {
		return "", err
	}
	diff := compare(t.ExpActions, got)
	if diff == "" {
		return "", nil
	}
	msg := "exp_actions differ (-expected +got):\n" + indent(strings.TrimRight(diff, "\n"), "  ")
	if len(skipped) > 0 {
		msg += "\nnot acted (refused by a guard or cancelled):\n" + indent(strings.Join(skipped, "\n"), "  ")
	}
	return msg, nil
}

// after runs what a test asks for after its batch: approve what awaits approval, resolve the
// alerts at resolve_after, evaluate again at eval_after.
func (h *harness) after(ctx context.Context, f *File, t Test, mark int64, batch []alert.Alert) error {
	if t.Approve {
		if err := h.approveAll(ctx, mark, f.Now); err != nil {
			return err
		}
	}
	if t.ResolveAfter > 0 {
		at := f.Now.Add(t.ResolveAfter)
		h.clk.set(at)
		if err := h.step(ctx, resolved(batch, at)); err != nil {
			return err
		}
	}
	if t.EvalAfter > 0 && t.EvalAfter != t.ResolveAfter {
		h.clk.set(f.Now.Add(t.EvalAfter))
		return h.step(ctx, nil)
	}
	return nil
}

// step processes a batch at the clock's time (if any), fires the due `for` timers and runs the
// executor until nothing moves.
func (h *harness) step(ctx context.Context, batch []alert.Alert) error {
	if err := h.fireTimers(ctx); err != nil {
		return err
	}
	if len(batch) > 0 {
		if err := h.eng.Process(ctx, batch); err != nil {
			return fmt.Errorf("process: %w", err)
		}
	}
	if err := h.fireTimers(ctx); err != nil {
		return err
	}
	return h.settle(ctx)
}

func (h *harness) fireTimers(ctx context.Context) error {
	for {
		n, err := h.eng.FireDueTimers(ctx)
		if err != nil {
			return fmt.Errorf("timers: %w", err)
		}
		if n == 0 {
			return nil
		}
	}
}

// settle runs executor passes until one decides nothing and no handler is running (handlers run
// on goroutines of the engine; the recording ones return at once).
func (h *harness) settle(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		n, err := h.eng.ExecuteOnce(ctx)
		if err != nil {
			return fmt.Errorf("execute: %w", err)
		}
		if n == 0 {
			running, _, err := h.st.ListActions(ctx, store.ActionFilter{State: vocab.StateRunning, Page: store.Page{Limit: 1}})
			if err != nil {
				return err
			}
			if len(running) == 0 {
				if n, err = h.eng.ExecuteOnce(ctx); err != nil {
					return fmt.Errorf("execute: %w", err)
				}
				if n == 0 {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return errors.New("actions did not settle within 30s")
}

func (h *harness) lastActionID(ctx context.Context) (int64, error) {
	as, _, err := h.st.ListActions(ctx, store.ActionFilter{Page: store.Page{Limit: 1}})
	if err != nil || len(as) == 0 {
		return 0, err
	}
	return as[0].ID, nil
}

// allActionsAfter lists the actions with an id above mark, oldest first.
func (h *harness) allActionsAfter(ctx context.Context, mark int64) ([]store.Action, error) {
	var out []store.Action
	cursor := ""
	for {
		page, next, err := h.st.ListActions(ctx, store.ActionFilter{Page: store.Page{Limit: store.MaxLimit, Cursor: cursor}})
		if err != nil {
			return nil, err
		}
		done := next == ""
		for _, a := range page {
			if a.ID <= mark {
				done = true
				break
			}
			out = append(out, a)
		}
		if done {
			break
		}
		cursor = next
	}
	slices.Reverse(out)
	return out, nil
}

// actionsAfter returns the actions planned after mark that act (ran, wait for approval, wait for
// an earlier step, or failed), and a line per action a guard refused or that was cancelled.
func (h *harness) actionsAfter(ctx context.Context, mark int64) ([]Action, []string, error) {
	as, err := h.allActionsAfter(ctx, mark)
	if err != nil {
		return nil, nil, err
	}
	var got []Action
	var skipped []string
	for _, a := range as {
		if a.State == vocab.StateSkipped {
			skipped = append(skipped, fmt.Sprintf("%s %s %s (%s): %s", a.Rule, a.Phase, a.Handler, a.Reason, a.Error))
			continue
		}
		g := Action{Rule: a.Rule, Handler: a.Handler, Phase: string(a.Phase), Params: normalize(a.Params), Approval: a.Approval}
		if g.Params == nil {
			g.Params = map[string]any{}
		}
		if a.State == vocab.StateFailed || a.State == vocab.StateUnknown {
			g.Failed = cmp.Or(string(a.Reason), string(a.State)) + ": " + a.Error
		}
		g.Verify = verifyOutcome(a)
		got = append(got, g)
	}
	return got, skipped, nil
}

// verifyOutcome is where a rule's verify left an action (Action.Verify).
func verifyOutcome(a store.Action) string {
	switch {
	case a.State == vocab.StateVerifying:
		return VerifyVerifying
	case a.VerifyDeadline == nil:
		return ""
	case a.State == vocab.StateSucceeded:
		return VerifyRecovered
	case a.Reason == vocab.ReasonNotRecovered:
		return VerifyNotRecovered
	}
	return ""
}

// resolved is the firing alerts of batch resolved at at (resolve_after).
func resolved(batch []alert.Alert, at time.Time) []alert.Alert {
	var out []alert.Alert
	for _, a := range batch {
		if a.Status != alert.StatusFiring {
			continue
		}
		a.Status, a.EndsAt, a.ReceivedAt = alert.StatusResolved, at, at
		out = append(out, a)
	}
	return out
}

// alert builds the alert an input stands for at now.
func (in InputAlert) alert(now time.Time) (alert.Alert, error) {
	a := alert.Alert{Source: in.Source, Status: alert.Status(in.Status), Labels: in.Labels, Annotations: in.Annotations,
		Value: in.Value, StartsAt: now.Add(in.StartsAt), ReceivedAt: now}
	if in.EndsAt != nil {
		a.EndsAt = now.Add(*in.EndsAt)
	} else if a.Status == alert.StatusResolved {
		a.EndsAt = now
	}
	if a.Annotations == nil {
		a.Annotations = map[string]string{}
	}
	if err := a.Validate(); err != nil {
		return a, err
	}
	return a, nil
}

func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n")
}
