package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
	"github.com/responder-sre/responder/vocab"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// clock is an injected clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// recorder is a handler test double for the engine's seam: it records every Do and fails or
// blocks on demand. Real handlers are tested against real peers in their own packages and end to
// end in app.
type recorder struct {
	name  string
	class vocab.Class
	// failures, when set, is how many Do calls fail (server_error) before they succeed.
	failures int
	mu       sync.Mutex
	calls    []recCall
	fail     map[string]error // target → error
	block    chan struct{}    // when set, Do waits for it (or ctx)
	// size is the workload size reported by actions built with a "member" param
	// (handlers.WorkloadMember); sizeErr, when set, is the error instead.
	size    int
	sizeErr error
}

type recCall struct {
	Target, Key, Note string
}

func (r *recorder) Spec() handlers.Spec {
	s := handlers.Spec{Name: r.name, Class: r.class, DefaultApproval: handlers.ApprovalNone,
		Params: []handlers.Param{{Name: "target", Type: handlers.String, Required: true}, {Name: "note", Type: handlers.String},
			{Name: "member", Type: handlers.String}}}
	if r.class == vocab.ClassNotify { // like page.webhook: a sent notification is resolved later
		s.ResolveParams = func(p handlers.Params) (handlers.Params, bool) {
			if p["note"] == "resolve" {
				return nil, false
			}
			q := maps.Clone(p)
			q["note"] = "resolve"
			return q, true
		}
	}
	return s
}

func (r *recorder) Build(p handlers.Params) (handlers.Action, error) {
	t, _ := p["target"].(string)
	if t == "" {
		return nil, errors.New("target is empty")
	}
	note, _ := p["note"].(string)
	if m, _ := p["member"].(string); m != "" {
		return &memberAction{recAction{r: r, target: t, note: note}, m}, nil
	}
	return &recAction{r: r, target: t, note: note}, nil
}

// memberAction acts on one member (a pod) of its target workload.
type memberAction struct {
	recAction
	member string
}

func (a *memberAction) Member() string { return a.member }
func (a *memberAction) WorkloadSize(context.Context) (int, error) {
	a.r.mu.Lock()
	defer a.r.mu.Unlock()
	return a.r.size, a.r.sizeErr
}

type recAction struct {
	r            *recorder
	target, note string
}

func (a *recAction) Target() string                           { return a.r.name + ":" + a.target }
func (a *recAction) Scope() string                            { return "test" }
func (a *recAction) Check(context.Context, alert.Alert) error { return handlers.ErrNotCheckable }
func (a *recAction) Do(ctx context.Context, inv handlers.Invocation, _ alert.Alert) (handlers.Result, error) {
	a.r.mu.Lock()
	a.r.calls = append(a.r.calls, recCall{a.target, inv.IdempotencyKey, a.note})
	err := a.r.fail[a.target]
	if err == nil && a.r.failures > 0 {
		a.r.failures--
		err = handlers.Fail(vocab.ReasonServerError, "pager answered 503")
	}
	block := a.r.block
	a.r.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return handlers.Result{}, ctx.Err()
		}
	}
	return handlers.Result{Detail: "done " + a.target}, err
}

func (r *recorder) Calls() []recCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recCall(nil), r.calls...)
}

type harness struct {
	t     testing.TB
	clock *clock
	st    *store.Store
	eng   *engine.Engine
	fix   *recorder
	page  *recorder
	reg   *handlers.Registry
}

var t0 = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)

func newHarness(t testing.TB, ruleYAML string, mod func(*engine.Options)) *harness {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	h := &harness{t: t, clock: &clock{t: t0}, st: st,
		fix:  &recorder{name: "test.fix", class: vocab.ClassDisruptive, fail: map[string]error{}},
		page: &recorder{name: "test.page", class: vocab.ClassNotify, fail: map[string]error{}}}
	h.reg, err = handlers.NewRegistry(h.fix, h.page)
	if err != nil {
		t.Fatal(err)
	}
	set := loadRules(t, h.reg, ruleYAML)
	o := engine.Options{Store: st, Handlers: h.reg, Rules: set, Owner: "replica-a", Now: h.clock.Now,
		MaxAlertAge: 15 * time.Minute, Lease: 30 * time.Second}
	if mod != nil {
		mod(&o)
	}
	h.eng, err = engine.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func loadRules(t testing.TB, cat rules.Catalog, y string) *rules.Set {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := rules.LoadFiles([]string{p}, cat)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func mkAlert(name string, status alert.Status, starts time.Time, labels map[string]string) alert.Alert {
	ls := maps.Clone(labels)
	if ls == nil {
		ls = map[string]string{}
	}
	ls["alertname"] = name
	a := alert.Alert{Source: alert.SourceAlertmanager, Status: status, Labels: ls, StartsAt: starts, ReceivedAt: starts}
	if err := a.Validate(); err != nil {
		panic(err)
	}
	return a
}

func (h *harness) process(as ...alert.Alert) {
	h.t.Helper()
	for i := range as {
		if as[i].ReceivedAt.Before(h.clock.Now()) {
			as[i].ReceivedAt = h.clock.Now()
		}
	}
	if err := h.eng.Process(context.Background(), as); err != nil {
		h.t.Fatalf("process: %v", err)
	}
}

// settle runs executor passes until one decides nothing and no handler is running. Actions that
// wait for a human (or behind one) do not count.
func (h *harness) settle() {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond) // poll interval while handler goroutines finish
	defer tick.Stop()
	for time.Now().Before(deadline) {
		n, err := h.eng.ExecuteOnce(context.Background())
		if err != nil {
			h.t.Fatalf("execute: %v", err)
		}
		if n == 0 && h.count(`SELECT count(*) FROM actions WHERE state = 'running'`) == 0 {
			if n, err = h.eng.ExecuteOnce(context.Background()); err != nil {
				h.t.Fatalf("execute: %v", err)
			}
			if n == 0 {
				return
			}
		}
		<-tick.C
	}
	h.t.Fatalf("actions did not settle: %v", h.actions())
}

type row struct {
	Phase           vocab.Phase
	Handler, Target string
	State           vocab.State
	Reason          vocab.Reason
	Step            int
}

func (h *harness) actions() []row {
	h.t.Helper()
	rows, err := h.st.Pool().Query(context.Background(), `SELECT phase, step, handler, state, reason, target FROM actions ORDER BY id`)
	if err != nil {
		h.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.Phase, &x.Step, &x.Handler, &x.State, &x.Reason, &x.Target)
		return x, err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *harness) incidentStates() []string {
	h.t.Helper()
	rows, err := h.st.Pool().Query(context.Background(), `SELECT state FROM incidents ORDER BY id`)
	if err != nil {
		h.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *harness) count(q string, args ...any) int {
	h.t.Helper()
	var n int
	if err := h.st.Pool().QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

func expectActions(t *testing.T, got []row, want ...string) {
	t.Helper()
	var g []string
	for _, r := range got {
		g = append(g, fmt.Sprintf("%s/%d %s %s %s", r.Phase, r.Step, r.Handler, r.State, r.Reason))
	}
	if fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("actions:\n got  %q\n want %q", g, want)
	}
}

const crashRule = `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    cooldown: 15m
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}-verify"}
    escalate:
      - handler: test.page
        params: {target: "oncall", note: "restart of {{ alert.labels.pod }} did not help"}
    on_resolved:
      - handler: test.page
        params: {target: "resolved-{{ alert.labels.pod }}"}
`

func TestFiringRunsStepsInOrderOnce(t *testing.T) {
	h := newHarness(t, crashRule, nil)
	a := mkAlert("KubePodCrashLooping", alert.StatusFiring, t0.Add(-time.Minute), map[string]string{"pod": "web-1"})
	h.process(a)
	h.process(a) // redelivery
	h.settle()
	h.process(a) // a re-send after execution
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix succeeded ", "actions/1 test.fix succeeded ")
	calls := h.fix.Calls()
	if len(calls) != 2 || calls[0].Target != "web-1" || calls[1].Target != "web-1-verify" {
		t.Fatalf("calls = %+v", calls)
	}
	if calls[0].Key == "" || calls[0].Key == calls[1].Key {
		t.Fatalf("idempotency keys must be set and distinct: %+v", calls)
	}
	if got := h.incidentStates(); fmt.Sprint(got) != "[firing]" {
		t.Fatalf("incidents = %v", got)
	}
	if n := h.count(`SELECT count(*) FROM audit WHERE kind = 'action' AND reason = 'started'`); n != 2 {
		t.Fatalf("started audit rows = %d, want 2", n)
	}
}

func TestNonMatchingAlertDoesNothing(t *testing.T) {
	h := newHarness(t, crashRule, nil)
	h.process(mkAlert("TargetDown", alert.StatusFiring, t0, map[string]string{"job": "api"}))
	h.settle()
	if n := h.count(`SELECT count(*) FROM incidents`); n != 0 {
		t.Fatalf("incidents = %d", n)
	}
}

func TestConcurrentDuplicatesPlanOnce(t *testing.T) {
	h := newHarness(t, crashRule, nil)
	a := mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "web-1"})
	var wg sync.WaitGroup
	var retries atomic.Int64
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				err := h.eng.Process(context.Background(), []alert.Alert{a})
				if err != nil && store.IsTransient(err) && retries.Add(1) < 200 {
					continue // serialization races between concurrent transactions are retried, as the bus does
				}
				errs <- err
				return
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("transient retries: %d", retries.Load())
	if n := h.count(`SELECT count(*) FROM incidents`); n != 1 {
		t.Fatalf("incidents = %d, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM actions`); n != 2 {
		t.Fatalf("actions = %d, want 2 (one per step)", n)
	}
}

const forRule = `
rules:
  - name: disk
    when: alert.name == "DiskLow" && alert.value < 10
    for: 1m
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.instance }}"}
`

func withValue(a alert.Alert, v float64) alert.Alert { a.Value = &v; return a }

func TestForWaitsThenFires(t *testing.T) {
	h := newHarness(t, forRule, nil)
	h.process(withValue(mkAlert("DiskLow", alert.StatusFiring, t0, map[string]string{"instance": "db-1"}), 5))
	if got := h.incidentStates(); fmt.Sprint(got) != "[pending]" {
		t.Fatalf("incidents = %v", got)
	}
	h.clock.Add(30 * time.Second)
	if n, err := h.eng.FireDueTimers(context.Background()); err != nil || n != 0 {
		t.Fatalf("timers before due: n=%d err=%v", n, err)
	}
	h.settle()
	if n := h.count(`SELECT count(*) FROM actions`); n != 0 {
		t.Fatalf("acted before for elapsed: %d actions", n)
	}
	h.clock.Add(31 * time.Second)
	if n, err := h.eng.FireDueTimers(context.Background()); err != nil || n != 1 {
		t.Fatalf("timers at due: n=%d err=%v", n, err)
	}
	if n, _ := h.eng.FireDueTimers(context.Background()); n != 0 {
		t.Fatalf("a timer fired twice")
	}
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix succeeded ")
	if got := h.incidentStates(); fmt.Sprint(got) != "[firing]" {
		t.Fatalf("incidents = %v", got)
	}
}

func TestForRechecksAtExpiry(t *testing.T) {
	h := newHarness(t, forRule, nil)
	a := mkAlert("DiskLow", alert.StatusFiring, t0, map[string]string{"instance": "db-1"})
	h.process(withValue(a, 5))
	h.clock.Add(30 * time.Second)
	h.process(withValue(a, 50)) // same episode, the condition no longer holds
	h.clock.Add(31 * time.Second)
	if _, err := h.eng.FireDueTimers(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if n := h.count(`SELECT count(*) FROM actions`); n != 0 {
		t.Fatalf("acted although the re-check failed")
	}
	if n := h.count(`SELECT count(*) FROM audit WHERE reason = 'recheck_failed'`); n != 1 {
		t.Fatalf("recheck_failed audit rows = %d", n)
	}
	if got := h.incidentStates(); fmt.Sprint(got) != "[pending]" {
		t.Fatalf("incidents = %v", got)
	}
}

func TestResolveCancelsAndRunsOnResolved(t *testing.T) {
	h := newHarness(t, crashRule, func(o *engine.Options) { o.MaxConcurrent = 1; o.Lease = time.Hour })
	h.fix.block = make(chan struct{})
	a := mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "web-1"})
	h.process(a)
	if _, err := h.eng.ExecuteOnce(context.Background()); err != nil { // step 0 starts and blocks
		t.Fatal(err)
	}
	r := a
	r.Status, r.EndsAt = alert.StatusResolved, t0.Add(2*time.Minute)
	h.clock.Add(2 * time.Minute)
	h.process(r)
	close(h.fix.block)
	h.settle()
	expectActions(t, h.actions(),
		"actions/0 test.fix succeeded ",
		"actions/1 test.fix skipped cancelled",
		"on_resolved/0 test.page succeeded ")
	if got := h.incidentStates(); fmt.Sprint(got) != "[resolved]" {
		t.Fatalf("incidents = %v", got)
	}
	// A late firing of the resolved episode is a no-op.
	h.process(a)
	h.settle()
	if n := h.count(`SELECT count(*) FROM actions`); n != 3 {
		t.Fatalf("late firing planned actions: %d", n)
	}
}

func TestResolvedBeforeFiringIsTombstone(t *testing.T) {
	h := newHarness(t, crashRule, nil)
	a := mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "web-1"})
	r := a
	r.Status = alert.StatusResolved
	h.process(r)
	h.process(a)
	h.settle()
	if n := h.count(`SELECT count(*) FROM actions`); n != 0 {
		t.Fatalf("a firing older than its resolution acted: %v", h.actions())
	}
	if got := h.incidentStates(); fmt.Sprint(got) != "[resolved]" {
		t.Fatalf("incidents = %v", got)
	}
}

const singleRule = `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping"
    cooldown: 15m
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
    escalate:
      - handler: test.page
        params: {target: "oncall"}
`

func TestCooldownSkipsWithoutEscalation(t *testing.T) {
	h := newHarness(t, singleRule, nil)
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "web-1"}))
	h.settle()
	h.clock.Add(5 * time.Minute)
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0.Add(5*time.Minute), map[string]string{"pod": "web-1"}))
	h.settle()
	h.clock.Add(11 * time.Minute) // 16m after the first run: cooldown over
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0.Add(16*time.Minute), map[string]string{"pod": "web-1"}))
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix succeeded ", "actions/0 test.fix skipped cooldown", "actions/0 test.fix succeeded ")
	if len(h.fix.Calls()) != 2 {
		t.Fatalf("calls = %v", h.fix.Calls())
	}
}

func TestDryRunNeverCallsDo(t *testing.T) {
	for _, tc := range []struct {
		name, rules, reason string
		dry                 bool
	}{
		{"global dry run", singleRule, "dry_run", true},
		{"shadow rule", `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping"
    mode: shadow
    cooldown: 15m
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
`, "shadow", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.rules, func(o *engine.Options) { o.DryRun = tc.dry })
			h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "web-1"}))
			h.settle()
			expectActions(t, h.actions(), "actions/0 test.fix dry_run "+tc.reason)
			if len(h.fix.Calls()) != 0 {
				t.Fatalf("dry run called Do: %v", h.fix.Calls())
			}
			if n := h.count(`SELECT count(*) FROM cooldowns`); n != 0 {
				t.Fatalf("dry run started a cooldown")
			}
		})
	}
}

func TestStaleAlertIsSkipped(t *testing.T) {
	h := newHarness(t, singleRule, nil)
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "web-1"}))
	h.clock.Add(16 * time.Minute) // responder was stuck: the alert is older than max_alert_age
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix skipped stale")
	if len(h.fix.Calls()) != 0 {
		t.Fatal("acted on a stale alert")
	}
}

func TestFailureStopsStepsAndEscalates(t *testing.T) {
	h := newHarness(t, crashRule, nil)
	h.fix.fail["web-1"] = handlers.Fail(vocab.ReasonServerError, "HTTP 503")
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "web-1"}))
	h.settle()
	expectActions(t, h.actions(),
		"actions/0 test.fix failed server_error",
		"actions/1 test.fix skipped cancelled",
		"escalate/0 test.page succeeded ")
}

func TestBadParamFailsAtPlanAndEscalates(t *testing.T) {
	h := newHarness(t, singleRule, nil)
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, nil)) // no pod label
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix failed bad_param", "escalate/0 test.page succeeded ")
}

func TestExpiredLeaseBecomesUnknownNotRerun(t *testing.T) {
	h := newHarness(t, singleRule, func(o *engine.Options) { o.Lease = 10 * time.Second })
	h.fix.block = make(chan struct{})
	defer close(h.fix.block)
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "web-1"}))
	if _, err := h.eng.ExecuteOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Replica A is stuck (its lease is not renewed: Run is not running); replica B takes over.
	b, err := engine.New(engine.Options{Store: h.st, Handlers: h.reg, Rules: h.eng.Rules(), Owner: "replica-b", Now: h.clock.Now,
		Lease: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Add(11 * time.Second)
	if _, err := b.ExecuteOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := h.actions()
	if got[0].State != "unknown" || got[0].Reason != "lease_expired" {
		t.Fatalf("actions = %+v", got)
	}
	if len(got) != 2 || got[1].Phase != "escalate" {
		t.Fatalf("no escalation planned: %+v", got)
	}
	if len(h.fix.Calls()) != 1 {
		t.Fatalf("the action ran again: %v", h.fix.Calls())
	}
}

func TestPausedSkipsDisruptiveButNotifies(t *testing.T) {
	h := newHarness(t, `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: test.page
        params: {target: "tell-humans"}
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
`, func(o *engine.Options) { o.Paused = true })
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "web-1"}))
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.page succeeded ", "actions/1 test.fix skipped paused")
	if len(h.fix.Calls()) != 0 || len(h.page.Calls()) != 1 {
		t.Fatalf("fix calls %v, page calls %v", h.fix.Calls(), h.page.Calls())
	}
}

func TestBatchWithNanosecondStartsAtKeepsAlertsApart(t *testing.T) {
	h := newHarness(t, singleRule, nil)
	var as []alert.Alert
	for i, pod := range []string{"web-1", "web-2", "web-3"} {
		a := mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": pod})
		a.StartsAt = t0.Add(time.Duration(i*7+1) * time.Nanosecond) // finer than PostgreSQL keeps
		as = append(as, a)
	}
	h.process(as...)
	h.settle()
	got := map[string]bool{}
	for _, c := range h.fix.Calls() {
		got[c.Target] = true
	}
	if len(got) != 3 {
		t.Fatalf("each incident must act on its own alert: calls %v", h.fix.Calls())
	}
}

func TestForLongerThanMaxAlertAgeStillActs(t *testing.T) {
	h := newHarness(t, `
rules:
  - name: slow
    when: alert.name == "DiskLow"
    for: 20m
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.instance }}"}
`, nil) // max_alert_age 15m; Alertmanager re-sends only every repeat_interval
	h.process(mkAlert("DiskLow", alert.StatusFiring, t0, map[string]string{"instance": "db-1"}))
	h.clock.Add(21 * time.Minute)
	if _, err := h.eng.FireDueTimers(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix succeeded ")
}

func TestLateTimerIsStale(t *testing.T) {
	h := newHarness(t, forRule, nil)
	h.process(withValue(mkAlert("DiskLow", alert.StatusFiring, t0, map[string]string{"instance": "db-1"}), 5))
	h.clock.Add(2 * time.Hour) // responder was down when the timer was due
	if _, err := h.eng.FireDueTimers(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix skipped stale")
}

func TestFullSlotsWaitWithoutSpinning(t *testing.T) {
	h := newHarness(t, singleRule, func(o *engine.Options) { o.MaxConcurrent = 1; o.Lease = time.Hour })
	h.fix.block = make(chan struct{})
	h.process(
		mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "a"}),
		mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "b"}))
	n, err := h.eng.ExecuteOnce(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("first pass: n=%d err=%v, want one action started", n, err)
	}
	n, err = h.eng.ExecuteOnce(context.Background())
	if err != nil || n != 0 {
		t.Fatalf("pass with every slot busy: n=%d err=%v, want 0 (nothing decided)", n, err)
	}
	close(h.fix.block)
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix succeeded ", "actions/0 test.fix succeeded ")
}

func TestApprovalExpiresAndEscalates(t *testing.T) {
	h := newHarness(t, `
rules:
  - name: careful
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
        approval: required
    escalate:
      - handler: test.page
        params: {target: "oncall"}
`, func(o *engine.Options) { o.ApprovalTTL = 15 * time.Minute })
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "a"}))
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix awaiting_approval ")
	h.clock.Add(16 * time.Minute)
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix expired approval_ttl", "escalate/0 test.page succeeded ")
	if len(h.fix.Calls()) != 0 {
		t.Fatal("an unapproved action ran")
	}
}

func TestHandlerPastItsTimeoutBecomesUnknown(t *testing.T) {
	h := newHarness(t, singleRule, func(o *engine.Options) { o.Lease = 10 * time.Minute; o.ActionTimeout = time.Minute })
	h.fix.block = make(chan struct{})
	defer close(h.fix.block)
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "a"}))
	if _, err := h.eng.ExecuteOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := h.count(`SELECT id FROM actions`)
	// The owner keeps renewing its lease, but the handler ignores its deadline.
	h.clock.Add(9 * time.Minute)
	if err := h.st.RenewLeases(context.Background(), "replica-a", []int64{int64(id)}, h.clock.Now().Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	h.clock.Add(3 * time.Minute) // 12m after start: past timeout (1m) plus grace (the lease, 10m)
	if _, err := h.eng.ExecuteOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := h.actions()
	if got[0].State != "unknown" || got[0].Reason != "timeout" {
		t.Fatalf("actions = %+v", got)
	}
	if len(got) != 2 || got[1].Phase != "escalate" {
		t.Fatalf("no escalation: %+v", got)
	}
}

const approvalRule = `
rules:
  - name: careful
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
        approval: required
        approvals_required: 2
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}-verify"}
    escalate:
      - handler: test.page
        params: {target: "oncall"}
`

func (h *harness) actionID(phase string, step int) int64 {
	h.t.Helper()
	return int64(h.count(`SELECT id FROM actions WHERE phase = $1 AND step = $2`, phase, step))
}

func TestTwoPersonApprovalRunsOnce(t *testing.T) {
	h := newHarness(t, approvalRule, func(o *engine.Options) { o.ApprovalTTL = 15 * time.Minute })
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "a"}))
	h.settle()
	id := h.actionID("actions", 0)
	ctx := context.Background()
	res, err := h.approvals().Decide(ctx, id, "alice", store.DecisionApprove, "api")
	if err != nil || res.Action.State != vocab.StateAwaitingApproval {
		t.Fatalf("first approval: %+v %v", res.Action, err)
	}
	if res, err := h.approvals().Decide(ctx, id, "alice", store.DecisionApprove, "api"); err != nil || !res.Replay {
		t.Fatalf("the same approver again must be a replay: %+v %v", res, err)
	}
	h.settle()
	if len(h.fix.Calls()) != 0 {
		t.Fatal("ran with one of two approvals")
	}
	// Two replicas receive bob's approval at once: decided once, run once.
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.approvals().Decide(ctx, id, "bob", store.DecisionApprove, "slack"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix succeeded ", "actions/1 test.fix succeeded ")
	if calls := h.fix.Calls(); len(calls) != 2 || calls[0].Target != "a" {
		t.Fatalf("calls = %v", calls)
	}
	var by string
	if err := h.st.Pool().QueryRow(ctx, `SELECT approved_by FROM actions WHERE id = $1`, id).Scan(&by); err != nil || by != "alice,bob" {
		t.Fatalf("approved_by = %q (%v)", by, err)
	}
	if _, err := h.approvals().Decide(ctx, id, "carol", store.DecisionDeny, "api"); !errors.Is(err, store.ErrNotAwaiting) {
		t.Fatalf("a decision after the fact: %v, want ErrNotAwaiting", err)
	}
}

func TestDenyStopsWithoutEscalation(t *testing.T) {
	h := newHarness(t, approvalRule, nil)
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "a"}))
	h.settle()
	if _, err := h.approvals().Decide(context.Background(), h.actionID("actions", 0), "alice", store.DecisionDeny, "api"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix denied denied", "actions/1 test.fix skipped cancelled")
	if len(h.fix.Calls())+len(h.page.Calls()) != 0 {
		t.Fatal("a denied action ran or escalated")
	}
}

func TestPauseRowSkipsDisruptiveAndIsNotReplayed(t *testing.T) {
	h := newHarness(t, `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: test.page
        params: {target: "tell-{{ alert.labels.pod }}"}
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
`, nil)
	ctx := context.Background()
	if _, err := h.st.SetPause(ctx, true, "alice", "api", "maintenance", h.clock.Now(), nil); err != nil {
		t.Fatal(err)
	}
	pausedAt := h.clock.Now()
	for i := range 20 {
		h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": fmt.Sprint("p", i)}))
	}
	h.settle()
	if len(h.fix.Calls()) != 0 || len(h.page.Calls()) != 20 {
		t.Fatalf("paused: %d disruptive calls, %d pages (want 0 and 20)", len(h.fix.Calls()), len(h.page.Calls()))
	}
	if n := h.count(`SELECT count(*) FROM actions WHERE handler = 'test.fix' AND started_at >= $1`, pausedAt); n != 0 {
		t.Fatalf("%d disruptive actions started after the pause", n)
	}
	h.clock.Add(time.Minute)
	if _, err := h.st.SetPause(ctx, false, "alice", "api", "", h.clock.Now(), nil); err != nil {
		t.Fatal(err)
	}
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0.Add(time.Minute), map[string]string{"pod": "after"}))
	h.settle()
	if calls := h.fix.Calls(); len(calls) != 1 || calls[0].Target != "after" {
		t.Fatalf("after resume: %v (paused actions must not be replayed)", calls)
	}
	if n := h.count(`SELECT count(*) FROM actions WHERE state = 'skipped' AND reason = 'paused'`); n != 20 {
		t.Fatalf("skipped/paused = %d, want 20", n)
	}
}

func TestPauseWithEndLapses(t *testing.T) {
	h := newHarness(t, singleRule, nil)
	until := h.clock.Now().Add(10 * time.Minute)
	if _, err := h.st.SetPause(context.Background(), true, "bob", "api", "deploy", h.clock.Now(), &until); err != nil {
		t.Fatal(err)
	}
	h.clock.Add(11 * time.Minute)
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0.Add(11*time.Minute), map[string]string{"pod": "a"}))
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix succeeded ")
}

const pageRule = `
rules:
  - name: page-oncall
    when: alert.name == "PostgresDown"
    actions:
      - handler: test.page
        params: {target: "{{ alert.labels.cluster }}", note: "trigger"}
`

func TestPageRetriedFromTheStoreUntilThePagerTakesIt(t *testing.T) {
	h := newHarness(t, pageRule, nil)
	h.page.failures = 3
	h.process(mkAlert("PostgresDown", alert.StatusFiring, t0, map[string]string{"cluster": "main"}))
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.page planned server_error")
	for range 3 { // 30s, 60s, 120s: past max_alert_age too, still delivered
		h.clock.Add(10 * time.Minute)
		h.settle()
	}
	expectActions(t, h.actions(), "actions/0 test.page succeeded ")
	if n := len(h.page.Calls()); n != 4 {
		t.Fatalf("pager calls = %d, want 4 (3 failures, 1 success)", n)
	}
	if n := h.count(`SELECT count(*) FROM audit WHERE reason = 'retry_scheduled'`); n != 3 {
		t.Fatalf("retry_scheduled audit rows = %d", n)
	}
}

func TestResolvedIncidentResolvesItsPages(t *testing.T) {
	h := newHarness(t, pageRule, nil)
	a := mkAlert("PostgresDown", alert.StatusFiring, t0, map[string]string{"cluster": "main"})
	h.process(a)
	h.settle()
	r := a
	r.Status = alert.StatusResolved
	h.clock.Add(time.Minute)
	h.process(r)
	h.process(r) // redelivered: still one resolve
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.page succeeded ", "resolve/0 test.page succeeded ")
	calls := h.page.Calls()
	if len(calls) != 2 || calls[1].Note != "resolve" || calls[1].Target != "main" {
		t.Fatalf("pager calls = %+v", calls)
	}
}

func TestPageRetryIsNotBlockedByItsOwnCooldown(t *testing.T) {
	h := newHarness(t, `
rules:
  - name: page-oncall
    when: alert.name == "PostgresDown"
    cooldown: 15m
    actions:
      - handler: test.page
        params: {target: "{{ alert.labels.cluster }}", note: "trigger"}
`, nil)
	h.page.failures = 1
	h.process(mkAlert("PostgresDown", alert.StatusFiring, t0, map[string]string{"cluster": "main"}))
	h.settle()
	h.clock.Add(time.Minute)
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.page succeeded ")
}

func TestPageInFlightWhenTheIncidentResolvesIsStillResolved(t *testing.T) {
	h := newHarness(t, pageRule, func(o *engine.Options) { o.Lease = time.Hour })
	h.page.block = make(chan struct{})
	a := mkAlert("PostgresDown", alert.StatusFiring, t0, map[string]string{"cluster": "main"})
	h.process(a)
	if _, err := h.eng.ExecuteOnce(context.Background()); err != nil { // the trigger is in flight
		t.Fatal(err)
	}
	r := a
	r.Status = alert.StatusResolved
	h.process(r)
	close(h.page.block)
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.page succeeded ", "resolve/0 test.page succeeded ")
}

func TestLateOrAnonymousApprovalsAreRefused(t *testing.T) {
	h := newHarness(t, approvalRule, nil)
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "a"}))
	h.settle()
	id := h.actionID("actions", 0)
	ctx := context.Background()
	if _, err := h.approvals().Decide(ctx, id, "api", store.DecisionApprove, "api"); !errors.Is(err, store.ErrAnonymousApprover) {
		t.Fatalf("anonymous approval of a two-person action: %v", err)
	}
	h.clock.Add(20 * time.Minute) // the executor has not expired it yet
	if _, err := h.approvals().Decide(ctx, id, "alice", store.DecisionApprove, "api"); !errors.Is(err, store.ErrNotAwaiting) {
		t.Fatalf("approval after approvals.ttl: %v, want ErrNotAwaiting", err)
	}
}

func TestPauseIsNotStarvedByOverlappingClaims(t *testing.T) {
	h := newHarness(t, singleRule, nil)
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var holding [2]atomic.Bool // claimer i has held the lock once
	// Two executors whose claim transactions overlap back to back: each holds the kill switch's
	// shared lock 40ms, the second starts 20ms after the first, so one always holds it.
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-time.After(time.Duration(i) * 20 * time.Millisecond) // stagger the claimers (the scenario), not a wait for work
			for {
				err := h.st.InTx(ctx, func(tx pgx.Tx) error {
					if _, err := h.st.PauseTx(ctx, tx); err != nil {
						return err
					}
					holding[i].Store(true)
					<-time.After(40 * time.Millisecond) // hold the lock (the scenario), not a wait for work
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	testwait.Until(t, 10*time.Second, "both claimers running", func() bool { return holding[0].Load() && holding[1].Load() })
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := h.st.SetPause(pctx, true, "alice", "api", "storm", h.clock.Now(), nil)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("pause under overlapping claims: %v", err)
	}
}

const budgetRules = `
rules:
  - name: restart-pods
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
    escalate:
      - handler: test.page
        params: {target: "oncall-{{ alert.labels.pod }}"}
  - name: restart-nodes
    when: alert.name == "NodeDown"
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.node }}"}
`

func TestBudgetSharedByAllRules(t *testing.T) {
	h := newHarness(t, budgetRules, func(o *engine.Options) {
		o.Budgets = []engine.Budget{{Name: "fixes", Match: "test.f*", Per: "global", Max: 3, Window: 10 * time.Minute}}
	})
	for i := range 2 {
		h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": fmt.Sprint("p", i)}))
		h.process(mkAlert("NodeDown", alert.StatusFiring, t0, map[string]string{"node": fmt.Sprint("n", i)}))
	}
	h.settle()
	if n := len(h.fix.Calls()); n != 3 {
		t.Fatalf("disruptive calls = %d, want 3 (the budget, across both rules)", n)
	}
	if n := h.count(`SELECT count(*) FROM actions WHERE state = 'skipped' AND reason = 'budget_exhausted'`); n != 1 {
		t.Fatalf("budget_exhausted = %d, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM budget_spend`); n != 3 {
		t.Fatalf("spent = %d, want 3 (a refusal spends nothing)", n)
	}
	// The window slides: after it, the budget allows again.
	h.clock.Add(11 * time.Minute)
	h.process(mkAlert("NodeDown", alert.StatusFiring, t0.Add(11*time.Minute), map[string]string{"node": "n9"}))
	h.settle()
	if n := len(h.fix.Calls()); n != 4 {
		t.Fatalf("after the window: calls = %d, want 4", n)
	}
}

func TestBudgetPerScopeAndEscalation(t *testing.T) {
	// test.fix's scope is "test" for every action; per: namespace counts per scope.
	h := newHarness(t, budgetRules, func(o *engine.Options) {
		o.Budgets = []engine.Budget{{Name: "per-ns", Match: "test.fix", Per: "namespace", Max: 1, Window: time.Hour}}
	})
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "a"}))
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "b"}))
	h.settle()
	got := h.actions()
	var exhausted, escalated int
	for _, r := range got {
		if r.Reason == "budget_exhausted" {
			exhausted++
		}
		if r.Phase == "escalate" && r.State == "succeeded" {
			escalated++
		}
	}
	if len(h.fix.Calls()) != 1 || exhausted != 1 || escalated != 1 {
		t.Fatalf("calls %v, exhausted %d, escalated %d: %+v", h.fix.Calls(), exhausted, escalated, got)
	}
}

func TestBudgetNeverOverspentByConcurrentExecutors(t *testing.T) {
	h := newHarness(t, singleRule, func(o *engine.Options) {
		o.MaxConcurrent = 64
		o.Budgets = []engine.Budget{{Name: "all", Match: "*", Per: "global", Max: 5, Window: time.Hour}}
	})
	var as []alert.Alert
	for i := range 40 {
		as = append(as, mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": fmt.Sprint("p", i)}))
	}
	h.process(as...)
	// Three "replicas" claim at once.
	others := make([]*engine.Engine, 2)
	for i := range others {
		e, err := engine.New(engine.Options{Store: h.st, Handlers: h.reg, Rules: h.eng.Rules(), Owner: fmt.Sprint("replica-", i),
			Now: h.clock.Now, MaxConcurrent: 64, ClaimBatch: 5,
			Budgets: []engine.Budget{{Name: "all", Match: "*", Per: "global", Max: 5, Window: time.Hour}}})
		if err != nil {
			t.Fatal(err)
		}
		others[i] = e
	}
	var wg sync.WaitGroup
	for _, e := range append(others, h.eng) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if _, err := e.ExecuteOnce(context.Background()); err != nil && !store.IsTransient(err) {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	h.settle()
	if n := len(h.fix.Calls()); n != 5 {
		t.Fatalf("disruptive calls = %d, want exactly the budget (5)", n)
	}
	if n := h.count(`SELECT count(*) FROM actions WHERE reason = 'budget_exhausted'`); n != 35 {
		t.Fatalf("budget_exhausted = %d, want 35", n)
	}
}

func TestCircuitBreakerOpensTrialsAndCloses(t *testing.T) {
	h := newHarness(t, `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
    escalate:
      - handler: test.page
        params: {target: "oncall-{{ alert.labels.pod }}"}
`, func(o *engine.Options) { o.BreakerFailures = 3; o.BreakerOpenFor = 5 * time.Minute })
	send := func(pods ...string) {
		for _, p := range pods {
			h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(), map[string]string{"pod": p}))
		}
		h.settle()
	}
	states := func() map[string]string {
		out := map[string]string{}
		for _, r := range h.actions() {
			if r.Phase == "actions" {
				out[strings.TrimPrefix(r.Target, "test.fix:")] = string(r.State) + "/" + string(r.Reason)
			}
		}
		return out
	}
	for _, p := range []string{"a", "b", "c"} {
		h.fix.fail[p] = handlers.Fail(vocab.ReasonNotRecovered, "still crash looping")
	}
	h.fix.fail["pdb"] = handlers.Fail(vocab.ReasonPDBBlocked, "the PodDisruptionBudget allows no eviction")
	send("pdb", "a", "b") // a PDB refusal does not count
	if len(h.fix.Calls()) != 3 {
		t.Fatalf("calls = %v", h.fix.Calls())
	}
	send("c") // the third real failure opens the breaker
	send("d", "e")
	st := states()
	if st["d"] != "skipped/breaker_open" || st["e"] != "skipped/breaker_open" || len(h.fix.Calls()) != 4 {
		t.Fatalf("with the breaker open: %v, calls %d", st, len(h.fix.Calls()))
	}
	if n := h.count(`SELECT count(*) FROM actions WHERE phase = 'escalate' AND state = 'succeeded'`); n != 6 {
		t.Fatalf("escalations = %d, want 6 (4 failures, the PDB one included, + 2 refusals)", n)
	}
	// After open_for, exactly one trial runs; it fails, and the breaker opens again.
	h.clock.Add(6 * time.Minute)
	h.fix.fail["f"] = handlers.Fail(vocab.ReasonNotRecovered, "no")
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(), map[string]string{"pod": "f"}))
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(), map[string]string{"pod": "g"}))
	h.settle()
	st = states()
	trials := 0
	for _, p := range []string{"f", "g"} {
		if st[p] == "failed/not_recovered" || st[p] == "succeeded/" {
			trials++
		}
	}
	if trials != 1 {
		t.Fatalf("half-open trials = %d, want exactly 1: %v", trials, st)
	}
	// Next period: a successful trial closes it.
	h.clock.Add(6 * time.Minute)
	send("h")
	send("i")
	st = states()
	if st["h"] != "succeeded/" || st["i"] != "succeeded/" {
		t.Fatalf("after a good trial: %v", st)
	}
	var state string
	if err := h.st.Pool().QueryRow(context.Background(), `SELECT state FROM breakers WHERE handler = 'test.fix'`).Scan(&state); err != nil || state != "closed" {
		t.Fatalf("breaker = %q (%v), want closed", state, err)
	}
}

func TestStormGuardActsOnNoneAndEscalatesOnce(t *testing.T) {
	h := newHarness(t, singleRule, func(o *engine.Options) { o.StormMaxTargets = 5; o.StormWindow = 5 * time.Minute })
	var as []alert.Alert
	for i := range 8 { // one rule, 8 targets at once: more than 5
		as = append(as, mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": fmt.Sprint("p", i)}))
	}
	h.process(as...)
	h.settle()
	if n := len(h.fix.Calls()); n != 0 {
		t.Fatalf("a storm acted on %d targets", n)
	}
	if n := h.count(`SELECT count(*) FROM actions WHERE reason = 'storm_blocked'`); n != 8 {
		t.Fatalf("storm_blocked = %d, want 8", n)
	}
	if n := len(h.page.Calls()); n != 1 {
		t.Fatalf("escalations = %d, want exactly 1 for the storm", n)
	}
	if n := h.count(`SELECT count(*) FROM incidents WHERE state = 'suppressed'`); n != 8 {
		t.Fatalf("suppressed incidents = %d, want 8", n)
	}
	// Once the window has passed, a single target acts again.
	h.clock.Add(6 * time.Minute)
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0.Add(6*time.Minute), map[string]string{"pod": "calm"}))
	h.settle()
	if calls := h.fix.Calls(); len(calls) != 1 || calls[0].Target != "calm" {
		t.Fatalf("after the storm: %v", calls)
	}
}

func TestStormGuardBelowTheLimitActs(t *testing.T) {
	h := newHarness(t, singleRule, func(o *engine.Options) { o.StormMaxTargets = 5 })
	for i := range 5 {
		h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": fmt.Sprint("p", i)}))
	}
	h.settle()
	if n := len(h.fix.Calls()); n != 5 {
		t.Fatalf("calls = %d, want 5 (at the limit is not a storm)", n)
	}
}

func TestShadowRecordsEveryGuardsVerdict(t *testing.T) {
	h := newHarness(t, `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping"
    mode: shadow
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
`, func(o *engine.Options) { o.StormMaxTargets = 1 })
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "a"}),
		mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "b"}))
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix dry_run shadow", "actions/0 test.fix dry_run shadow")
	if len(h.fix.Calls()) != 0 {
		t.Fatal("shadow mode called Do")
	}
	if n := h.count(`SELECT count(*) FROM audit WHERE reason = 'shadow' AND detail->>'verdict' LIKE '%would touch 2 targets%'`); n != 2 {
		t.Fatalf("storm verdicts recorded = %d, want 2", n)
	}
	if n := h.count(`SELECT count(*) FROM incidents WHERE state = 'suppressed'`); n != 0 {
		t.Fatalf("shadow mode suppressed %d incidents", n)
	}
}

func TestShadowRecordsTheBudgetVerdict(t *testing.T) {
	h := newHarness(t, `
rules:
  - name: real
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
  - name: candidate
    when: alert.name == "NodeDown"
    mode: shadow
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.node }}"}
`, func(o *engine.Options) {
		o.Budgets = []engine.Budget{{Name: "one", Match: "test.fix", Per: "global", Max: 1, Window: time.Hour}}
	})
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "a"}))
	h.settle() // spends the budget's only unit
	h.process(mkAlert("NodeDown", alert.StatusFiring, t0, map[string]string{"node": "n1"}))
	h.settle()
	if n := h.count(`SELECT count(*) FROM audit WHERE reason = 'shadow' AND detail->>'verdict' LIKE '%budget one exhausted%'`); n != 1 {
		t.Fatalf("budget verdicts recorded = %d, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM budget_spend`); n != 1 {
		t.Fatalf("shadow mode spent budget: %d rows", n)
	}
}

func TestBreakerTrialLostWithItsReplicaIsFreed(t *testing.T) {
	h := newHarness(t, singleRule, func(o *engine.Options) {
		o.BreakerFailures = 1
		o.BreakerOpenFor = time.Minute
		o.Lease = 10 * time.Second
	})
	h.fix.fail["a"] = handlers.Fail(vocab.ReasonNotRecovered, "no")
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "a"}))
	h.settle() // opens the breaker
	h.clock.Add(2 * time.Minute)
	h.fix.block = make(chan struct{})
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(), map[string]string{"pod": "b"}))
	if _, err := h.eng.ExecuteOnce(context.Background()); err != nil { // b starts as the trial and hangs
		t.Fatal(err)
	}
	// b's replica dies: another replica expires its lease; the trial slot must be freed.
	other, err := engine.New(engine.Options{Store: h.st, Handlers: h.reg, Rules: h.eng.Rules(), Owner: "replica-b", Now: h.clock.Now,
		Lease: 10 * time.Second, BreakerFailures: 1, BreakerOpenFor: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Add(11 * time.Second)
	if _, err := other.ExecuteOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(h.fix.block) // a closed channel no longer blocks: later calls return at once
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(), map[string]string{"pod": "c"}))
	h.settle()
	var state string
	if err := h.st.Pool().QueryRow(context.Background(), `SELECT state FROM actions WHERE target = 'test.fix:c'`).Scan(&state); err != nil || state != "succeeded" {
		t.Fatalf("c = %q (%v): the breaker must let a new trial run after the lost one", state, err)
	}
}

// TestBreakerMachineIsSharedByReplicas: gobreaker's machine lives in the breaker row, so failures
// counted by one replica and by another add up, and a replica started later continues from them.
func TestBreakerMachineIsSharedByReplicas(t *testing.T) {
	h := newHarness(t, singleRule, func(o *engine.Options) {
		o.BreakerFailures = 3
		o.BreakerOpenFor = time.Minute
	})
	for _, p := range []string{"a", "b", "c", "d"} {
		h.fix.fail[p] = handlers.Fail(vocab.ReasonNotRecovered, "still crash looping")
	}
	h.fix.fail["pdb"] = handlers.Fail(vocab.ReasonPDBBlocked, "no disruption allowed")
	for _, p := range []string{"a", "pdb", "b"} {
		h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(), map[string]string{"pod": p}))
	}
	h.settle()
	machine := func() (state string, failures int, consecutive int) {
		t.Helper()
		var raw []byte
		if err := h.st.Pool().QueryRow(context.Background(), `SELECT state, failures, machine FROM breakers`).Scan(&state, &failures, &raw); err != nil {
			t.Fatal(err)
		}
		var m struct {
			Counts struct{ ConsecutiveFailures int } `json:"counts"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("machine %s: %v", raw, err)
		}
		return state, failures, m.Counts.ConsecutiveFailures
	}
	if s, f, c := machine(); s != "closed" || f != 2 || c != 2 {
		t.Fatalf("after two failures and a PDB refusal: state %s, failures %d, machine consecutive failures %d; want closed, 2, 2", s, f, c)
	}

	// Another replica, started now, records the third failure: the breaker opens.
	other, err := engine.New(engine.Options{Store: h.st, Handlers: h.reg, Rules: h.eng.Rules(), Owner: "replica-b", Now: h.clock.Now,
		BreakerFailures: 3, BreakerOpenFor: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Process(context.Background(), []alert.Alert{mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(), map[string]string{"pod": "c"})}); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "c failed", func() bool {
		if h.count(`SELECT count(*) FROM actions WHERE target = 'test.fix:c' AND state = 'failed'`) > 0 {
			return true
		}
		if _, err := other.ExecuteOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		return false
	})
	if _, err := other.ExecuteOnce(context.Background()); err != nil { // feeds the outcome
		t.Fatal(err)
	}
	if s, _, _ := machine(); s != "open" {
		t.Fatalf("after the third failure (on another replica): state %s, want open", s)
	}
	// The first replica now refuses: its guard reads the same row.
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(), map[string]string{"pod": "d"}))
	h.settle()
	var state, reason string
	if err := h.st.Pool().QueryRow(context.Background(), `SELECT state, reason FROM actions WHERE target = 'test.fix:d' AND phase = 'actions'`).Scan(&state, &reason); err != nil {
		t.Fatal(err)
	}
	if state != "skipped" || reason != "breaker_open" {
		t.Fatalf("d = %s/%s, want skipped/breaker_open", state, reason)
	}
}

// TestRedeliveryToAnotherReplicaDuringSlowHandler: while replica A's handler is slow, the same
// alert is delivered again to replica B (JetStream's ack wait ran out) and B's executor runs
// passes: the action exists once, B cannot claim it (the claim is a compare-and-set on the row),
// and the effect happens once.
func TestRedeliveryToAnotherReplicaDuringSlowHandler(t *testing.T) {
	h := newHarness(t, singleRule, nil)
	a := mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(), map[string]string{"pod": "a"})
	h.fix.block = make(chan struct{})
	h.process(a)
	if _, err := h.eng.ExecuteOnce(context.Background()); err != nil { // A starts it; the handler hangs
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "A's handler started", func() bool { return len(h.fix.Calls()) > 0 })
	b, err := engine.New(engine.Options{Store: h.st, Handlers: h.reg, Rules: h.eng.Rules(), Owner: "replica-b", Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // redelivered to B, possibly more than once, and B keeps executing
		a.ReceivedAt = h.clock.Now()
		if err := b.Process(context.Background(), []alert.Alert{a}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.ExecuteOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	close(h.fix.block)
	h.settle()
	if _, err := b.ExecuteOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(h.fix.Calls()); n != 1 {
		t.Fatalf("handler calls = %d, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM actions WHERE phase = 'actions'`); n != 1 {
		t.Fatalf("actions = %d, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM actions WHERE phase = 'actions' AND state = 'succeeded'`); n != 1 {
		t.Fatalf("succeeded actions = %d, want 1", n)
	}
}

// TestBreakerTrialWithoutStoredMachine: an open breaker whose row holds no gobreaker machine (a
// row from before the machines were stored) still runs one trial, and a failed trial opens it again.
func TestBreakerTrialWithoutStoredMachine(t *testing.T) {
	h := newHarness(t, singleRule, func(o *engine.Options) {
		o.BreakerFailures = 3
		o.BreakerOpenFor = time.Minute
	})
	for _, p := range []string{"a", "c", "d", "b"} {
		h.fix.fail[p] = handlers.Fail(vocab.ReasonNotRecovered, "no")
	}
	for _, p := range []string{"a", "c", "d"} {
		h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(), map[string]string{"pod": p}))
	}
	h.settle()
	if _, err := h.st.Pool().Exec(context.Background(), `UPDATE breakers SET machine = NULL`); err != nil {
		t.Fatal(err)
	}
	h.clock.Add(2 * time.Minute)
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(), map[string]string{"pod": "b"}))
	h.settle()
	var state string
	if err := h.st.Pool().QueryRow(context.Background(), `SELECT state FROM breakers`).Scan(&state); err != nil {
		t.Fatal(err)
	}
	if state != "open" {
		t.Fatalf("breaker after a failed trial = %s, want open", state)
	}
	if n := len(h.fix.Calls()); n != 4 {
		t.Fatalf("calls = %d, want 4 (three failures and the trial)", n)
	}
}

// approvals decides as the API does (Engine.Decide), with approvals.ttl 15m, at the harness's clock.
func (h *harness) approvals() engine.Approvals {
	return engine.Approvals{Store: h.st, TTL: 15 * time.Minute, Now: h.clock.Now}
}
