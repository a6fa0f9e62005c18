package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// promoter is a handler with result fields (test.promote): Do reports fields, like
// postgres.promote reports the new primary.
type promoter struct {
	mu     sync.Mutex
	fields map[string]any
	calls  int
}

func (p *promoter) Spec() handlers.Spec {
	return handlers.Spec{Name: "test.promote", Class: vocab.ClassDisruptive, DefaultApproval: handlers.ApprovalNone,
		Params: []handlers.Param{{Name: "target", Type: handlers.String, Required: true, Target: true},
			{Name: "min_timeline", Type: handlers.Int}},
		Results: []handlers.ResultField{{Name: "new_primary", Type: handlers.String}, {Name: "timeline", Type: handlers.Int}}}
}

func (p *promoter) Build(params handlers.Params) (handlers.Action, error) {
	t, _ := params["target"].(string)
	if t == "" {
		return nil, errors.New("target is empty")
	}
	// A check of a param's value, as k8s.scale checks its bounds: a stand-in (1) fails it.
	if n, ok := params["min_timeline"].(int); ok && n < 2 {
		return nil, handlers.Fail(vocab.ReasonBadParam, "min_timeline %d is below 2", n)
	}
	return &promoteAction{p: p, target: t}, nil
}

type promoteAction struct {
	p      *promoter
	target string
}

func (a *promoteAction) Target() string                           { return "test.promote:" + a.target }
func (a *promoteAction) Scope() string                            { return "test" }
func (a *promoteAction) Check(context.Context, alert.Alert) error { return handlers.ErrNotCheckable }
func (a *promoteAction) Do(context.Context, handlers.Invocation, alert.Alert) (handlers.Result, error) {
	a.p.mu.Lock()
	defer a.p.mu.Unlock()
	a.p.calls++
	return handlers.Result{Detail: "promoted", Fields: a.p.fields}, nil
}

const chainRule = `
rules:
  - name: failover
    when: alert.name == "DatabaseDown" && alert.status == "firing"
    actions:
      - id: promote
        handler: test.promote
        params: {target: "{{ alert.labels.cluster }}"}
      - handler: test.page
        params: {target: "clients", note: "primary {{ steps.promote.result.new_primary }} on timeline {{ steps.promote.result.timeline }} for {{ alert.labels.cluster }}"}
    escalate:
      - handler: test.page
        params: {target: "oncall", note: "failover of {{ alert.labels.cluster }} did not complete"}
`

func dbDown() alert.Alert {
	return mkAlert("DatabaseDown", alert.StatusFiring, t0.Add(-time.Minute), map[string]string{"cluster": "orders"})
}

// params returns the stored params of the action at (phase, step) of the first incident.
func (h *harness) params(phase vocab.Phase, step int) map[string]any {
	h.t.Helper()
	var id int64
	if err := h.st.Pool().QueryRow(context.Background(), `SELECT id FROM actions WHERE phase = $1 AND step = $2 ORDER BY id LIMIT 1`, phase, step).Scan(&id); err != nil {
		h.t.Fatal(err)
	}
	a, err := h.st.GetAction(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return a.Params
}

func TestChainedSteps(t *testing.T) {
	const want = "primary 10.0.0.7:5432 on timeline 3 for orders"
	tests := []struct {
		name   string
		rule   string
		fields map[string]any
		mod    func(*engine.Options)
		// before runs after the plan, before the executor.
		before func(h *harness)
		want   []string
		// note is what test.page got for clients ("" when it was not called); errText a fragment
		// of the chained step's error.
		note, errText string
	}{
		{name: "the result feeds the later step", rule: chainRule,
			fields: map[string]any{"new_primary": "10.0.0.7:5432", "timeline": 3},
			want:   []string{"actions/0 test.promote succeeded ", "actions/1 test.page succeeded "}, note: want},
		{name: "a field the handler did not fill fails the step and escalates", rule: chainRule,
			fields: map[string]any{"new_primary": "10.0.0.7:5432"},
			want: []string{"actions/0 test.promote succeeded ", "actions/1 test.page failed bad_param",
				"escalate/0 test.page succeeded "},
			errText: `the result of step "promote" has no field "timeline"`},
		{name: "dry run: the chained step records dry_run, its params unrendered", rule: chainRule,
			fields: map[string]any{"new_primary": "x", "timeline": 1}, mod: func(o *engine.Options) { o.DryRun = true },
			want: []string{"actions/0 test.promote dry_run dry_run", "actions/1 test.page dry_run dry_run"}},
		{name: "a referenced step that was only a dry run skips the chained step", rule: chainRule,
			fields: map[string]any{"new_primary": "x", "timeline": 1},
			before: func(h *harness) {
				h.exec(`UPDATE actions SET state = 'dry_run', reason = 'dry_run', finished_at = now() WHERE step = 0`)
			},
			want:    []string{"actions/0 test.promote dry_run dry_run", "actions/1 test.page skipped step_not_succeeded"},
			errText: `its params read the result of step "promote", which did not succeed (dry_run)`},
		{name: "a result that would move the target fails the step", fields: map[string]any{"new_primary": "db-2", "timeline": 3},
			rule: strings.Replace(chainRule, `target: "clients"`, `target: "{{ steps.promote.result.new_primary }}"`, 1),
			want: []string{"actions/0 test.promote succeeded ", "actions/1 test.page failed bad_param",
				"escalate/0 test.page succeeded "},
			errText: `it would act on "test.page:db-2" (scope "test"), not on "test.page:steps.promote.result.new_primary" (scope "test") as planned`},
		{name: "a handler that refuses the stand-ins fails the step when planned",
			fields: map[string]any{"new_primary": "x", "timeline": 3},
			rule: strings.Replace(chainRule, `handler: test.page
        params: {target: "clients", note: "primary {{ steps.promote.result.new_primary }} on timeline {{ steps.promote.result.timeline }} for {{ alert.labels.cluster }}"}`,
				`handler: test.promote
        params: {target: "clients", min_timeline: "{{ steps.promote.result.timeline }}"}`, 1),
			// The step before the one that failed to plan runs (as for any step that does not
			// render when planned); the escalation is planned at once.
			want: []string{"actions/0 test.promote succeeded ", "actions/1 test.promote failed bad_param",
				"escalate/0 test.page succeeded "},
			errText: "min_timeline 1 is below 2 (planned with stand-ins for steps.promote.result.timeline"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &promoter{fields: tc.fields}
			h := newHarnessWith(t, tc.rule, tc.mod, p)
			h.process(dbDown())
			if tc.before != nil {
				tc.before(h)
			}
			h.settle()
			expectActions(t, h.actions(), tc.want...)
			var note string
			for _, c := range h.page.Calls() {
				if c.Target == "clients" {
					note = c.Note
				}
			}
			if note != tc.note {
				t.Errorf("test.page got note %q, want %q", note, tc.note)
			}
			if tc.errText != "" {
				if n := h.count(`SELECT count(*) FROM actions WHERE step = 1 AND phase = 'actions' AND strpos(error, $1) > 0`, tc.errText); n != 1 {
					t.Errorf("no chained step with error %q: %v", tc.errText, h.errors())
				}
			}
		})
	}
}

// TestChainedStepRecordsWhatItSent: the stored params of a chained step are the rule's text until
// it runs, then what it sent; the first step keeps its result fields.
func TestChainedStepRecordsWhatItSent(t *testing.T) {
	p := &promoter{fields: map[string]any{"new_primary": "10.0.0.7:5432", "timeline": 3}}
	h := newHarnessWith(t, chainRule, nil, p)
	h.process(dbDown())
	planned := h.params(vocab.PhaseActions, 1)["note"]
	if planned != "primary {{ steps.promote.result.new_primary }} on timeline {{ steps.promote.result.timeline }} for {{ alert.labels.cluster }}" {
		t.Errorf("planned note = %q, want the rule's text", planned)
	}
	h.settle()
	if got := h.params(vocab.PhaseActions, 1)["note"]; got != "primary 10.0.0.7:5432 on timeline 3 for orders" {
		t.Errorf("note after the run = %q", got)
	}
	if n := h.count(`SELECT count(*) FROM actions WHERE step = 0 AND result_fields = '{"new_primary": "10.0.0.7:5432", "timeline": 3}'::jsonb`); n != 1 {
		t.Errorf("the promote step's result fields were not kept")
	}
}

// TestChainedStepRendersFromTheStore: another engine (a restart, another replica, a reload that
// changed the rule) renders the chained step from the rows alone, and a notification retried
// after a failure renders the same values again.
func TestChainedStepRendersFromTheStore(t *testing.T) {
	p := &promoter{fields: map[string]any{"new_primary": "10.0.0.7:5432", "timeline": 3}}
	h := newHarnessWith(t, chainRule, nil, p)
	h.page.failures = 1 // the first attempt fails: the page is retried from the store
	h.process(dbDown())
	// Engine A runs the first step only.
	if _, err := h.eng.ExecuteOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitState(t, h, 0, vocab.StateSucceeded)
	// Engine B: new rules (the chained step's text changed: what runs is what was planned), new
	// memory, the same database and handlers.
	changed := strings.Replace(chainRule, "primary {{", "PRIMARY {{", 1)
	b := *h
	b.eng = newEngineOn(t, h.st, h.reg, changed, h.clock)
	b.settle()
	h.clock.Add(time.Minute) // the retry's backoff
	b.settle()
	calls := h.page.Calls()
	if len(calls) != 2 || calls[0] != calls[1] || calls[0].Note != "primary 10.0.0.7:5432 on timeline 3 for orders" {
		t.Fatalf("calls %+v, want the same rendered note twice", calls)
	}
	expectActions(t, h.actions(), "actions/0 test.promote succeeded ", "actions/1 test.page succeeded ")
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.calls != 1 {
		t.Errorf("promote ran %d times, want once", p.calls)
	}
}

func waitState(t *testing.T, h *harness, step int, want vocab.State) {
	t.Helper()
	testwait.UntilDetail(t, 10*time.Second, fmt.Sprintf("step %d %s", step, want), func() (bool, string) {
		n := h.count(`SELECT count(*) FROM actions WHERE phase = 'actions' AND step = $1 AND state = $2`, step, want)
		return n == 1, fmt.Sprint(h.actions())
	})
}

func newEngineOn(t *testing.T, st *store.Store, reg *handlers.Registry, ruleYAML string, c *clock) *engine.Engine {
	t.Helper()
	e, err := engine.New(engine.Options{Store: st, Handlers: reg, Rules: loadRules(t, reg, ruleYAML), Owner: "replica-b",
		Now: c.Now, MaxAlertAge: 15 * time.Minute, Lease: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (h *harness) exec(q string, args ...any) {
	h.t.Helper()
	if _, err := h.st.Pool().Exec(context.Background(), q, args...); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) errors() []string {
	h.t.Helper()
	rows, err := h.st.Pool().Query(context.Background(), `SELECT phase || '/' || step || ' ' || reason || ': ' || error FROM actions ORDER BY id`)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// TestChainedStepsInBulk: a batch whose actions the planner writes in bulk (COPY, from 64 rows on)
// keeps every chained step's chain: each renders from its own incident's promotion.
func TestChainedStepsInBulk(t *testing.T) {
	const n = 40 // two steps each: 80 actions in one write
	p := &promoter{fields: map[string]any{"new_primary": "10.0.0.7:5432", "timeline": 3}}
	h := newHarnessWith(t, chainRule, nil, p)
	var batch []alert.Alert
	for i := range n {
		batch = append(batch, mkAlert("DatabaseDown", alert.StatusFiring, t0.Add(-time.Minute), map[string]string{"cluster": fmt.Sprintf("c%02d", i)}))
	}
	h.process(batch...)
	if got := h.count(`SELECT count(*) FROM actions WHERE chain IS NOT NULL`); got != n {
		t.Fatalf("%d chained steps stored with their chain, want %d", got, n)
	}
	h.settle()
	notes := map[string]bool{}
	for _, c := range h.page.Calls() {
		notes[c.Note] = true
	}
	for i := range n {
		if want := fmt.Sprintf("primary 10.0.0.7:5432 on timeline 3 for c%02d", i); !notes[want] {
			t.Errorf("no page %q among %d", want, len(notes))
		}
	}
}

// BenchmarkExecuteChained measures what a chained step costs the executor: each iteration plans a
// batch of two-step incidents (test.promote, then test.page) and times the passes that run them
// all, once with the page reading the promotion's result (rendered when claimed, from the rows)
// and once with the same page written out (rendered when planned), in the same run. It reports
// actions run per second.
func BenchmarkExecuteChained(b *testing.B) {
	const batch = 256
	plain := strings.Replace(chainRule, "primary {{ steps.promote.result.new_primary }} on timeline {{ steps.promote.result.timeline }}",
		"primary 10.0.0.7:5432 on timeline 3", 1)
	for _, mode := range []struct{ name, rule string }{{"plain", plain}, {"chained", chainRule}} {
		b.Run(mode.name, func(b *testing.B) {
			p := &promoter{fields: map[string]any{"new_primary": "10.0.0.7:5432", "timeline": 3}}
			h := newHarnessWith(b, mode.rule, func(o *engine.Options) { o.MaxConcurrent = batch * 2 }, p)
			var spent time.Duration
			for i := range b.N {
				var as []alert.Alert
				for j := range batch {
					as = append(as, mkAlert("DatabaseDown", alert.StatusFiring, h.clock.Now(), map[string]string{"cluster": fmt.Sprintf("c-%d-%d", i, j)}))
				}
				h.process(as...)
				start := time.Now()
				h.settle()
				spent += time.Since(start)
			}
			if n := h.count(`SELECT count(*) FROM actions WHERE state = 'succeeded'`); n != b.N*batch*2 {
				b.Fatalf("%d actions succeeded, want %d: %v", n, b.N*batch*2, h.errors()[:3])
			}
			b.ReportMetric(float64(b.N*batch*2)/spent.Seconds(), "actions/s")
		})
	}
}
