package engine_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// slackRec stands for page.slack: it records the params of every action it runs (text, channel),
// and as "drill" the Invocation's Drill it ran with.
type slackRec struct {
	mu    sync.Mutex
	calls []handlers.Params
}

func (s *slackRec) Spec() handlers.Spec {
	return handlers.Spec{Name: "page.slack", Class: vocab.ClassNotify, DefaultApproval: handlers.ApprovalNone,
		TargetPerIncident: true, Scope: "slack",
		Params: []handlers.Param{{Name: "text", Type: handlers.String, Required: true}, {Name: "channel", Type: handlers.String}}}
}

func (s *slackRec) Build(p handlers.Params) (handlers.Action, error) {
	if t, _ := p["text"].(string); t == "" {
		return nil, errors.New("text may not be empty")
	}
	return &slackRecAction{s: s, p: maps.Clone(p)}, nil
}

func (s *slackRec) Calls() []handlers.Params {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]handlers.Params(nil), s.calls...)
}

type slackRecAction struct {
	s *slackRec
	p handlers.Params
}

func (a *slackRecAction) Target() string {
	ch, _ := a.p["channel"].(string)
	return "slack:" + ch
}
func (a *slackRecAction) Scope() string                            { return "slack" }
func (a *slackRecAction) Check(context.Context, alert.Alert) error { return handlers.ErrNotCheckable }
func (a *slackRecAction) NotCheckable()                            {}
func (a *slackRecAction) Do(_ context.Context, inv handlers.Invocation, _ alert.Alert) (handlers.Result, error) {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	p := maps.Clone(a.p)
	p["drill"] = inv.Drill
	a.s.calls = append(a.s.calls, p)
	return handlers.Result{Detail: "posted to " + a.Target()}, nil
}

const drillRules = `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
    escalate:
      - handler: page.webhook
        params: {target: "oncall", note: "{{ alert.labels.pod }} restart refused"}
  - name: page
    when: alert.name == "ApiDown"
    actions:
      - handler: page.webhook
        params: {target: "oncall"}
      - handler: page.slack
        params: {text: "api down", channel: "#oncall"}
      - handler: test.page
        params: {target: "team"}
`

// newDrillHarness has test.fix, test.page, page.webhook (a recorder) and page.slack (slackRec).
func newDrillHarness(t *testing.T, mod func(*engine.Options)) (*harness, *recorder, *slackRec) {
	t.Helper()
	webhook := &recorder{name: "page.webhook", class: vocab.ClassNotify, fail: map[string]error{}}
	sl := &slackRec{}
	h := newHarnessWith(t, drillRules, mod, webhook, sl)
	for _, id := range []string{"drill-20261122T030000Z-0a1b", "api-20261122T030000Z-0a1b"} {
		knownRun(t, h, id)
	}
	return h, webhook, sl
}

// knownRun records drill run id in the store: a responder_drill label counts only for a run the
// store started.
func knownRun(t *testing.T, h *harness, id string) {
	t.Helper()
	if _, err := h.st.Pool().Exec(context.Background(), `INSERT INTO drill_runs (run_id, name, trigger, actor, rto_seconds, started_at, version)
VALUES ($1, 'drill', 'cli', 'test', 60, now(), 'test')`, id); err != nil {
		t.Fatal(err)
	}
}

func drillAlert(name, pod, run string, extra ...string) alert.Alert {
	labels := map[string]string{"pod": pod}
	if run != "" {
		labels[alert.DrillLabel] = run
	}
	for i := 0; i+1 < len(extra); i += 2 {
		labels[extra[i]] = extra[i+1]
	}
	return mkAlert(name, alert.StatusFiring, t0, labels)
}

// A drill's disruptive actions spend the drills budget, never a production one: with the
// production budget spent, a drill still acts; with the drills budget spent, it is skipped
// (budget_exhausted, and escalates: its page is not sent either).
func TestDrillSpendsTheDrillsBudget(t *testing.T) {
	h, webhook, _ := newDrillHarness(t, func(o *engine.Options) {
		o.Budgets = []engine.Budget{{Name: "prod", Match: "test.*", Per: "global", Max: 1, Window: time.Hour}}
		o.DrillBudget = engine.Budget{Max: 2, Window: time.Hour}
	})
	h.process(drillAlert("KubePodCrashLooping", "p0", "")) // spends the production budget
	h.process(drillAlert("KubePodCrashLooping", "p1", "")) // production budget exhausted
	h.settle()
	for i := range 3 { // two within the drills budget, the third over it
		h.process(drillAlert("KubePodCrashLooping", fmt.Sprint("d", i), "drill-20261122T030000Z-0a1b"))
		h.settle()
	}
	expectActions(t, h.actions(),
		"actions/0 test.fix succeeded ",
		"actions/0 test.fix skipped budget_exhausted", "escalate/0 page.webhook succeeded ",
		"actions/0 test.fix succeeded ",
		"actions/0 test.fix succeeded ",
		"actions/0 test.fix skipped budget_exhausted", "escalate/0 page.webhook dry_run drill")
	if calls := h.fix.Calls(); len(calls) != 3 || calls[1].Target != "d0" || calls[2].Target != "d1" {
		t.Fatalf("calls %+v, want p0, d0, d1", calls)
	}
	if n := len(webhook.Calls()); n != 1 {
		t.Fatalf("page.webhook called %d times, want once (production's escalation, not the drill's)", n)
	}
	for budget, want := range map[string]int{"prod": 1, "drills": 2} {
		if n := h.count(`SELECT count(*) FROM budget_spend WHERE budget = $1`, budget); n != want {
			t.Errorf("budget %s spent %d, want %d", budget, n, want)
		}
	}
	var errText string
	if err := h.st.Pool().QueryRow(context.Background(),
		`SELECT error FROM actions WHERE reason = 'budget_exhausted' ORDER BY id DESC LIMIT 1`).Scan(&errText); err != nil {
		t.Fatal(err)
	}
	if want := "budget drills: 2 * actions per 1h0m0s already spent"; !strings.Contains(errText, want) {
		t.Errorf("error %q, want it to hold %q", errText, want)
	}
}

// Every other guard applies to drills: paused, a drill's disruptive action is skipped (paused).
func TestDrillWhilePausedIsSkipped(t *testing.T) {
	h, _, _ := newDrillHarness(t, func(o *engine.Options) { o.Paused = true })
	h.process(drillAlert("KubePodCrashLooping", "d0", "drill-20261122T030000Z-0a1b"))
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix skipped paused")
	if len(h.fix.Calls()) != 0 {
		t.Fatal("a paused drill acted")
	}
}

// A drill's pages: page.slack goes to drills.page (the params recorded on the action and the
// started audit row say so); any other notify action is recorded dry_run/drill and never called;
// with page: real, all are sent as the rules say.
func TestDrillPages(t *testing.T) {
	const run = "api-20261122T030000Z-0a1b"
	for _, tc := range []struct {
		name      string
		drillPage string
		alert     alert.Alert
		want      []string
		channel   string // where page.slack posted; "": it did not
		webhooks  int
		drill     string // the Invocation's Drill page.slack ran with (what makes its text say DRILL)
	}{
		{"redirected", "#drills", drillAlert("ApiDown", "p", run),
			[]string{"actions/0 page.webhook dry_run drill", "actions/1 page.slack succeeded ", "actions/2 test.page dry_run drill"}, "#drills", 0, run},
		{"no drills.page: nothing sent", "", drillAlert("ApiDown", "p", run),
			[]string{"actions/0 page.webhook dry_run drill", "actions/1 page.slack dry_run drill", "actions/2 test.page dry_run drill"}, "", 0, ""},
		{"page: real", "#drills", drillAlert("ApiDown", "p", run, alert.DrillPageLabel, "real"),
			[]string{"actions/0 page.webhook succeeded ", "actions/1 page.slack succeeded ", "actions/2 test.page succeeded "}, "#oncall", 1, run},
		{"not a drill", "#drills", drillAlert("ApiDown", "p", "", alert.DrillPageLabel, "real"),
			[]string{"actions/0 page.webhook succeeded ", "actions/1 page.slack succeeded ", "actions/2 test.page succeeded "}, "#oncall", 1, ""},
		// A label naming a run the store never started (copied onto a real alert) is no drill:
		// its pages reach the on-call, and page.slack is not told it is a drill's (its text must
		// not say DRILL).
		{"unknown run", "#drills", drillAlert("ApiDown", "p", "forged-20261122T030000Z-ffff"),
			[]string{"actions/0 page.webhook succeeded ", "actions/1 page.slack succeeded ", "actions/2 test.page succeeded "}, "#oncall", 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, webhook, sl := newDrillHarness(t, func(o *engine.Options) { o.DrillPage = tc.drillPage })
			h.process(tc.alert)
			h.settle()
			expectActions(t, h.actions(), tc.want...)
			if n := len(webhook.Calls()); n != tc.webhooks {
				t.Errorf("page.webhook called %d times, want %d", n, tc.webhooks)
			}
			calls := sl.Calls()
			switch {
			case tc.channel == "" && len(calls) != 0:
				t.Fatalf("page.slack posted %v, want nothing", calls)
			case tc.channel != "" && (len(calls) != 1 || calls[0]["channel"] != tc.channel || calls[0]["text"] != "api down"):
				t.Fatalf("page.slack posted %v, want one page to %s", calls, tc.channel)
			case tc.channel != "" && calls[0]["drill"] != tc.drill:
				t.Errorf("page.slack ran with Invocation.Drill %q, want %q", calls[0]["drill"], tc.drill)
			}
			if got := h.params(vocab.PhaseActions, 1)["channel"]; tc.channel != "" && got != tc.channel {
				t.Errorf("the action's params say channel %v, want %s (where it went)", got, tc.channel)
			}
			redirected := h.count(`SELECT count(*) FROM audit WHERE reason = 'started' AND detail->>'drill_page' = '#drills'`)
			if want := map[bool]int{true: 1}[tc.name == "redirected"]; redirected != want {
				t.Errorf("started audit rows naming drills.page: %d, want %d", redirected, want)
			}
		})
	}
	t.Run("the result says where it would have gone", func(t *testing.T) {
		h, _, _ := newDrillHarness(t, nil)
		h.process(drillAlert("ApiDown", "p", run))
		h.settle()
		var result string
		if err := h.st.Pool().QueryRow(context.Background(),
			`SELECT result FROM actions WHERE handler = 'page.webhook'`).Scan(&result); err != nil {
			t.Fatal(err)
		}
		if want := "drill: page.webhook to page.webhook:oncall not sent (drills.page)"; result != want {
			t.Errorf("result %q, want %q", result, want)
		}
	})
}
