package engine_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/httpreq"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// gate is a disruptive handler whose calls to its peer (Resolve, Describe, Check, WorkloadSize)
// block while their gate is closed: the engine must make them with no transaction open.
type gate struct {
	mu      sync.Mutex
	gates   map[string]chan struct{} // call → closed when the call may return
	entered chan string              // each call's name, when it starts
	calls   []string                 // targets Do was called for
	fail    error                    // what Check says once it may return
}

func newGate(closed ...string) *gate {
	g := &gate{gates: map[string]chan struct{}{}, entered: make(chan string, 64)}
	for _, c := range closed {
		g.gates[c] = make(chan struct{})
	}
	return g
}

// open lets every call named call return (idempotent).
func (g *gate) open(call string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ch, ok := g.gates[call]; ok {
		close(ch)
		delete(g.gates, call)
	}
}

func (g *gate) pass(ctx context.Context, call string) error {
	g.entered <- call
	g.mu.Lock()
	ch := g.gates[call]
	g.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitEntered waits until the call named call started.
func (g *gate) waitEntered(t *testing.T, call string) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case c := <-g.entered:
			if c == call {
				return
			}
		case <-deadline:
			t.Fatalf("%s was never called", call)
		}
	}
}

func (g *gate) Calls() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.calls...)
}

func (g *gate) Spec() handlers.Spec {
	return handlers.Spec{Name: "test.gate", Class: vocab.ClassDisruptive, DefaultApproval: handlers.ApprovalNone,
		Params: []handlers.Param{{Name: "target", Type: handlers.String, Required: true}, {Name: "member", Type: handlers.String}}}
}

func (g *gate) Build(p handlers.Params) (handlers.Action, error) {
	t, _ := p["target"].(string)
	m, _ := p["member"].(string)
	return &gateAction{g: g, target: t, member: m}, nil
}

type gateAction struct {
	g        *gate
	target   string
	member   string
	resolved bool
}

func (a *gateAction) Target() string {
	if a.resolved {
		return "test.gate:" + a.target + "/resolved"
	}
	return "test.gate:" + a.target
}
func (a *gateAction) Scope() string  { return "test" }
func (a *gateAction) Member() string { return a.member }
func (a *gateAction) WorkloadSize(ctx context.Context) (int, error) {
	return 10, a.g.pass(ctx, "size")
}
func (a *gateAction) Resolve(ctx context.Context) error {
	err := a.g.pass(ctx, "resolve")
	a.resolved = err == nil
	return err
}
func (a *gateAction) Describe(ctx context.Context) (string, error) {
	return "described " + a.target, a.g.pass(ctx, "describe")
}
func (a *gateAction) Check(ctx context.Context, _ alert.Alert) error {
	if err := a.g.pass(ctx, "check"); err != nil {
		return err
	}
	return a.g.fail
}
func (a *gateAction) Do(context.Context, handlers.Invocation, alert.Alert) (handlers.Result, error) {
	a.g.mu.Lock()
	defer a.g.mu.Unlock()
	a.g.calls = append(a.g.calls, a.target)
	return handlers.Result{Detail: "done"}, nil
}

// classy is a disruptive handler whose actions report the class of their `class` param without
// the handler letting a rule choose it (no Spec.ClassParam).
type classy struct{}

func (classy) Spec() handlers.Spec {
	return handlers.Spec{Name: "test.classy", Class: vocab.ClassDisruptive, DefaultApproval: handlers.ApprovalNone,
		Params: []handlers.Param{{Name: "target", Type: handlers.String, Required: true}, {Name: "class", Type: handlers.String}}}
}

func (classy) Build(p handlers.Params) (handlers.Action, error) {
	t, _ := p["target"].(string)
	c, _ := p["class"].(string)
	return classyAction{t, vocab.Class(c)}, nil
}

type classyAction struct {
	target string
	class  vocab.Class
}

func (a classyAction) Target() string                           { return "test.classy:" + a.target }
func (a classyAction) Scope() string                            { return "test" }
func (a classyAction) Class() vocab.Class                       { return a.class }
func (a classyAction) Check(context.Context, alert.Alert) error { return handlers.ErrNotCheckable }
func (a classyAction) Do(context.Context, handlers.Invocation, alert.Alert) (handlers.Result, error) {
	return handlers.Result{}, nil
}

// newHarnessWith is newHarness with more handlers registered beside test.fix and test.page.
func newHarnessWith(t testing.TB, ruleYAML string, mod func(*engine.Options), extra ...handlers.Handler) *harness {
	t.Helper()
	var reg *handlers.Registry
	h := newHarness(t, "rules: []\n", func(o *engine.Options) {
		fix, _ := o.Handlers.Get("test.fix")
		page, _ := o.Handlers.Get("test.page")
		var err error
		if reg, err = handlers.NewRegistry(append([]handlers.Handler{fix, page}, extra...)...); err != nil {
			t.Fatal(err)
		}
		o.Handlers, o.Rules = reg, loadRules(t, reg, ruleYAML)
		if mod != nil {
			mod(o)
		}
	})
	h.reg = reg
	return h
}

// incompressible returns n random hex digits.
func incompressible(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// openTransactions counts the transactions open in the test's database, besides the caller's.
func (h *harness) openTransactions() int {
	h.t.Helper()
	return h.count(`SELECT count(*) FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL`)
}

func TestLongLabelInTargetDoesNotStopOtherActions(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
	}))
	defer srv.Close()
	hr := httpreq.New(httpreq.Options{AllowedHosts: []string{strings.TrimPrefix(srv.URL, "http://")}, Retries: -1})
	h := newHarnessWith(t, `
rules:
  - name: restart-hook
    when: alert.name == "PodDown"
    cooldown: 15m
    actions:
      - handler: http.request
        params: {url: "`+srv.URL+`/hooks/restart/{{ alert.labels.pod }}"}
  - name: page
    when: alert.name == "PodDown"
    actions:
      - handler: test.page
        params: {target: "oncall"}
`, nil, hr)
	long := incompressible(3000) // PostgreSQL compresses index entries: a repeated letter would fit
	h.process(mkAlert("PodDown", alert.StatusFiring, t0, map[string]string{"pod": long}))
	h.settle()
	if n := h.count(`SELECT count(*) FROM actions WHERE handler = 'test.page' AND state = 'succeeded'`); n != 1 {
		t.Fatalf("pages sent = %d, want 1: %v", n, h.actions())
	}
	if n := h.count(`SELECT count(*) FROM actions WHERE handler = 'http.request' AND state = 'succeeded' AND length(target) > 3000`); n != 1 {
		t.Fatalf("the long target's action did not run: %v", h.actions())
	}
	// Later passes still run, and the long target's cooldown holds.
	h.clock.Add(time.Minute)
	h.process(mkAlert("PodDown", alert.StatusFiring, t0.Add(time.Minute), map[string]string{"pod": long}))
	h.settle()
	if n := h.count(`SELECT count(*) FROM actions WHERE handler = 'test.page' AND state = 'succeeded'`); n != 2 {
		t.Fatalf("pages sent = %d, want 2: %v", n, h.actions())
	}
	if n := h.count(`SELECT count(*) FROM actions WHERE handler = 'http.request' AND state = 'skipped' AND reason = 'cooldown'`); n != 1 {
		t.Fatalf("the second restart of the long target was not refused by its cooldown: %v", h.actions())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(paths) != 1 || paths[0] != "/hooks/restart/"+long {
		t.Fatalf("requests: %d", len(paths))
	}
}

func TestStoreErrorOnOneActionFailsOnlyThatAction(t *testing.T) {
	h := newHarness(t, crashRule, nil)
	ctx := context.Background()
	// A constraint the database enforces on one action's row only.
	if _, err := h.st.Pool().Exec(ctx, `
CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'poisoned action' USING ERRCODE = 'check_violation'; END $$;
CREATE TRIGGER poison BEFORE UPDATE ON actions FOR EACH ROW
  WHEN (NEW.state = 'running' AND NEW.target = 'test.fix:poison') EXECUTE FUNCTION poison();`); err != nil {
		t.Fatal(err)
	}
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "poison"}),
		mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "web-1"}))
	h.settle()
	var state, reason, msg string
	if err := h.st.Pool().QueryRow(ctx, `SELECT state, reason, error FROM actions WHERE target = 'test.fix:poison'`).Scan(&state, &reason, &msg); err != nil {
		t.Fatal(err)
	}
	if state != "failed" || reason != "internal_error" || !strings.Contains(msg, "poisoned action") {
		t.Fatalf("poisoned action: %s/%s %q", state, reason, msg)
	}
	if calls := h.fix.Calls(); len(calls) != 2 || calls[0].Target != "web-1" || calls[1].Target != "web-1-verify" {
		t.Fatalf("the other incident's actions: %+v", calls)
	}
	if calls := h.page.Calls(); len(calls) != 1 || calls[0].Target != "oncall" {
		t.Fatalf("the failed action's escalation: %+v", calls)
	}
}

func TestParamsOverTheLimitFailBadParam(t *testing.T) {
	h := newHarness(t, `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
  - name: page
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: test.page
        params: {target: "oncall"}
`, nil)
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": strings.Repeat("x", 70000)}))
	h.settle()
	var state, reason, msg, params string
	if err := h.st.Pool().QueryRow(context.Background(), `SELECT state, reason, error, params::text FROM actions WHERE handler = 'test.fix'`).
		Scan(&state, &reason, &msg, &params); err != nil {
		t.Fatal(err)
	}
	if state != "failed" || reason != "bad_param" || !strings.Contains(msg, "70013 bytes") || !strings.Contains(msg, "65536") || params != "{}" {
		t.Fatalf("oversized action: %s/%s %q params %d bytes", state, reason, msg, len(params))
	}
	if len(h.fix.Calls()) != 0 || len(h.page.Calls()) != 1 {
		t.Fatalf("calls: fix %d, page %d", len(h.fix.Calls()), len(h.page.Calls()))
	}
}

// A cooldown another replica started after this pass read the cooldowns refuses the action at
// start.
func TestCooldownIsClaimedAtStart(t *testing.T) {
	h := newHarness(t, `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping"
    cooldown: 15m
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
`, func(o *engine.Options) { o.ClaimBatch = 1 })
	ctx := context.Background()
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "web-1", "container": "a"}))
	// Hold the pass between its read of the cooldowns and its start.
	lock, err := h.st.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx) //nolint:errcheck // a rollback after the test needs no check
	if _, err := lock.Exec(ctx, `LOCK TABLE breakers IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := h.eng.ExecuteOnce(ctx); done <- err }()
	testwait.Until(t, 10*time.Second, "the pass waits for the breakers table", func() bool {
		return h.count(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) > 0
	})
	// Another replica restarts web-1 meanwhile and starts the rule's cooldown.
	if err := h.st.InTx(ctx, func(tx pgx.Tx) error {
		return h.st.SetCooldownTx(ctx, tx, store.CooldownKey{Rule: "restart", Target: "test.fix:web-1"}, h.clock.Now().Add(15*time.Minute))
	}); err != nil {
		t.Fatal(err)
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.settle()
	if calls := h.fix.Calls(); len(calls) != 0 {
		t.Fatalf("ran within another replica's cooldown: %+v", calls)
	}
	expectActions(t, h.actions(), "actions/0 test.fix skipped cooldown")
}

func TestRuleMayNotLowerAHandlersClass(t *testing.T) {
	reg, err := handlers.NewRegistry(classy{}, httpreq.New(httpreq.Options{AllowedHosts: []string{"hooks.internal"}}))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(p, []byte(`
rules:
  - name: sneaky
    when: alert.name == "X"
    actions:
      - handler: test.classy
        params: {target: "db", class: notify}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = rules.LoadFiles([]string{p}, reg)
	if err == nil || !strings.Contains(err.Error(), "rules.yml:6:") || !strings.Contains(err.Error(), "not lower it to notify") {
		t.Fatalf("load error = %v, want a file:line refusal", err)
	}

	// A class the action reports at run time (a templated param) is not taken either; http.request's
	// class param still is.
	h := newHarnessWith(t, `
rules:
  - name: sneaky
    when: alert.name == "X"
    actions:
      - handler: test.classy
        params: {target: "db", class: "{{ alert.labels.class }}"}
  - name: hook
    when: alert.name == "X"
    actions:
      - handler: http.request
        params: {url: "http://hooks.internal/tell", class: notify}
  - name: disruptive-hook
    when: alert.name == "X"
    actions:
      - handler: http.request
        params: {url: "http://hooks.internal/restart", class: disruptive}
`, nil, classy{}, httpreq.New(httpreq.Options{AllowedHosts: []string{"hooks.internal"}}))
	h.process(mkAlert("X", alert.StatusFiring, t0, map[string]string{"class": "notify"}))
	got := map[string]string{}
	rows, err := h.st.Pool().Query(context.Background(), `SELECT rule, class FROM actions`)
	if err != nil {
		t.Fatal(err)
	}
	var rule, class string
	if _, err := pgx.ForEachRow(rows, []any{&rule, &class}, func() error { got[rule] = class; return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "map[disruptive-hook:disruptive hook:notify sneaky:disruptive]" {
		t.Fatalf("classes: %v", got)
	}
}

// A handler's Check that hangs holds no lock: the kill switch is written at once, and the action
// it checked does not start after the pause.
func TestPauseIsNotBlockedByAHangingCheck(t *testing.T) {
	g := newGate("check")
	defer g.open("check")
	h := newHarnessWith(t, `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: test.gate
        params: {target: "{{ alert.labels.pod }}"}
`, nil, g)
	ctx := context.Background()
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "web-1"}))
	h.clock.Add(20 * time.Minute) // the evidence is stale: Check must re-confirm it
	done := make(chan error, 1)
	go func() { _, err := h.eng.ExecuteOnce(ctx); done <- err }()
	g.waitEntered(t, "check")
	if n := h.openTransactions(); n != 0 {
		t.Errorf("%d transactions open while Check runs", n)
	}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := h.st.SetPause(pctx, true, "alice", "api", "incident", h.clock.Now(), nil); err != nil {
		t.Fatalf("pause while a Check hangs: %v", err)
	}
	g.open("check")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.settle()
	if calls := g.Calls(); len(calls) != 0 {
		t.Fatalf("started after the pause: %v", calls)
	}
	expectActions(t, h.actions(), "actions/0 test.gate skipped paused")
}

// Resolve and Describe (planning's lookups) and WorkloadSize run with no transaction open.
func TestLookupsRunWithNoTransactionOpen(t *testing.T) {
	g := newGate("resolve", "describe", "size")
	defer func() { g.open("resolve"); g.open("describe"); g.open("size") }()
	h := newHarnessWith(t, `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: test.gate
        params: {target: "{{ alert.labels.deployment }}", member: "{{ alert.labels.pod }}"}
        approval: required
`, func(o *engine.Options) { o.StormMaxWorkloadFraction = 0.5 }, g)
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		done <- h.eng.Process(ctx, []alert.Alert{
			mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"deployment": "web", "pod": "web-1"}),
			mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"deployment": "web", "pod": "web-2"})})
	}()
	for _, call := range []string{"resolve", "describe"} {
		g.waitEntered(t, call)
		if n := h.openTransactions(); n != 0 {
			t.Errorf("%d transactions open while %s runs", n, call)
		}
		g.open(call)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var target, evidence string
	if err := h.st.Pool().QueryRow(ctx, `SELECT target, evidence FROM actions ORDER BY id LIMIT 1`).Scan(&target, &evidence); err != nil {
		t.Fatal(err)
	}
	if target != "test.gate:web/resolved" || !strings.HasPrefix(evidence, "described web") {
		t.Fatalf("planned with target %q, evidence %q", target, evidence)
	}
	if _, err := h.st.Pool().Exec(ctx, `UPDATE actions SET state = 'approved' WHERE state = 'awaiting_approval'`); err != nil {
		t.Fatal(err)
	}
	go func() { _, err := h.eng.ExecuteOnce(ctx); done <- err }()
	g.waitEntered(t, "size")
	if n := h.openTransactions(); n != 0 {
		t.Errorf("%d transactions open while WorkloadSize runs", n)
	}
	g.open("size")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.settle()
	if calls := g.Calls(); len(calls) != 2 {
		t.Fatalf("Do calls = %v, want both members, one at a time", calls)
	}
}

// Two replicas claim an action each of one rule and target: the one that decides after the other
// started (its WorkloadSize call was slow) is refused by the cooldown the other started.
func TestCooldownHoldsAcrossReplicas(t *testing.T) {
	const rule = `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping"
    cooldown: 15m
    actions:
      - handler: test.gate
        params: {target: "{{ alert.labels.deployment }}", member: "{{ alert.labels.pod }}"}
`
	opts := func(o *engine.Options) { o.StormMaxWorkloadFraction, o.ClaimBatch = 0.5, 1 }
	ga, gb := newGate(), newGate("size")
	defer gb.open("size")
	h := newHarnessWith(t, rule, opts, ga)
	regB, err := handlers.NewRegistry(gb)
	if err != nil {
		t.Fatal(err)
	}
	o := engine.Options{Store: h.st, Handlers: regB, Rules: loadRules(t, regB, rule), Owner: "replica-b", Now: h.clock.Now,
		MaxAlertAge: 15 * time.Minute, Lease: 30 * time.Second}
	opts(&o)
	b, err := engine.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"deployment": "web", "pod": "web-1"}),
		mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"deployment": "web", "pod": "web-2"}))
	done := make(chan error, 1)
	go func() { _, err := b.ExecuteOnce(ctx); done <- err }()
	gb.waitEntered(t, "size")
	h.settle() // replica a restarts the other pod meanwhile
	gb.open("size")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "actions settle (replica b's handler goroutine records its outcome)", func() bool {
		return h.count(`SELECT count(*) FROM actions WHERE state IN ('running', 'planned')`) == 0
	})
	if a, b := ga.Calls(), gb.Calls(); len(a)+len(b) != 1 {
		t.Fatalf("restarts: replica a %v, replica b %v (want one within the cooldown)", a, b)
	}
	if n := h.count(`SELECT count(*) FROM actions WHERE state = 'skipped' AND reason = 'cooldown'`); n != 1 {
		t.Fatalf("skipped/cooldown = %d: %v", n, h.actions())
	}
}

// A handler's message the database cannot store as is (a NUL byte) is recorded cleaned, and the
// pass goes on.
func TestUnstorableHandlerMessageFailsNothingElse(t *testing.T) {
	g := newGate()
	g.fail = errors.New("pod gone\x00\xff")
	h := newHarnessWith(t, `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: test.gate
        params: {target: "{{ alert.labels.pod }}"}
  - name: page
    when: alert.name == "DiskLow"
    actions:
      - handler: test.page
        params: {target: "oncall"}
`, nil, g)
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": "web-1"}))
	h.clock.Add(20 * time.Minute) // stale: Check must re-confirm, and it says the pod is gone
	h.process(mkAlert("DiskLow", alert.StatusFiring, h.clock.Now(), nil))
	h.settle()
	var msg string
	if err := h.st.Pool().QueryRow(context.Background(), `SELECT error FROM actions WHERE handler = 'test.gate' AND state = 'skipped' AND reason = 'stale'`).Scan(&msg); err != nil {
		t.Fatalf("%v: %v", err, h.actions())
	}
	if !strings.HasSuffix(msg, "pod gone\uFFFD\uFFFD") {
		t.Fatalf("error = %q", msg)
	}
	if calls := h.page.Calls(); len(calls) != 1 {
		t.Fatalf("pages: %v", calls)
	}
}
