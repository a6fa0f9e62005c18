package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/vocab"
)

// These tests run match alone: no store, no network, no clock.

var matchNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// stub is a handler for match: Build fails on an empty target; nothing ever runs.
type stub struct {
	name  string
	class vocab.Class
}

func (s stub) Spec() handlers.Spec {
	return handlers.Spec{Name: s.name, Class: s.class, DefaultApproval: handlers.ApprovalNone,
		Params: []handlers.Param{{Name: "target", Type: handlers.String, Required: true}, {Name: "note", Type: handlers.String}}}
}

func (s stub) Build(p handlers.Params) (handlers.Action, error) {
	t, _ := p["target"].(string)
	if t == "" {
		return nil, errors.New("target is empty")
	}
	return stubAction{s.name + ":" + t}, nil
}

type stubAction struct{ target string }

func (a stubAction) Target() string                           { return a.target }
func (a stubAction) Scope() string                            { return "test" }
func (a stubAction) Check(context.Context, alert.Alert) error { return handlers.ErrNotCheckable }
func (a stubAction) Do(context.Context, handlers.Invocation, alert.Alert) (handlers.Result, error) {
	return handlers.Result{}, errors.New("a stub never runs")
}

// testMatcher is a matcher over test.fix (disruptive) and test.page (notify).
func testMatcher(t testing.TB, maxParams int) (matcher, *handlers.Registry) {
	t.Helper()
	reg, err := handlers.NewRegistry(stub{"test.fix", vocab.ClassDisruptive}, stub{"test.page", vocab.ClassNotify})
	if err != nil {
		t.Fatal(err)
	}
	specs := map[string]handlers.Spec{}
	for _, n := range reg.Names() {
		h, _ := reg.Get(n)
		specs[n] = h.Spec()
	}
	return matcher{handlers: reg, specs: specs, actionTimeout: 5 * time.Minute, maxParamsBytes: maxParams}, reg
}

// testRules compiles a rule file.
func testRules(t testing.TB, cat rules.Catalog, y string) *rules.Set {
	t.Helper()
	rs, err := rules.Parse([]byte(y), "rules.yml", cat)
	if err != nil {
		t.Fatal(err)
	}
	set := &rules.Set{Rules: rs}
	for _, r := range rs {
		set.UsesFiring = set.UsesFiring || r.UsesFiring
	}
	return set
}

// testAlert is a valid alert received at matchNow.
func testAlert(name string, status alert.Status, starts time.Time, labels map[string]string) alert.Alert {
	ls := maps.Clone(labels)
	if ls == nil {
		ls = map[string]string{}
	}
	ls[alert.NameLabel] = name
	a := alert.Alert{Source: alert.SourceAlertmanager, Status: status, Labels: ls, StartsAt: starts, ReceivedAt: matchNow}
	if err := a.Validate(); err != nil {
		panic(err)
	}
	return a
}

const matchRules = `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}", note: "{{ alert.annotations.summary }}"}
        timeout: 30s
    escalate:
      - handler: test.page
        params: {target: "oncall", note: "restart of {{ alert.labels.pod }} did not help"}
    on_resolved:
      - handler: test.page
        params: {target: "resolved-{{ alert.labels.pod }}"}
  - name: disk
    when: 'alert.name == "DiskFull" && !firing("Maintenance", {"host": alert.labels.host})'
    for: 5m
    mode: shadow
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.host }}"}
        approval: required
        approvals_required: 2
  - name: broken
    when: alert.name == "Broken" && int(alert.labels.n) > 3
    actions:
      - handler: test.page
        params: {target: "{{ alert.labels.n }}"}
`

// line is one row of a plan, in a form tests compare.
func (pl *plan) lines() []string {
	var out []string
	for i, o := range pl.opens {
		l := fmt.Sprintf("open %s %s %s", o.Rule, o.Alert.Labels[alert.NameLabel], o.State)
		if !o.dueAt.IsZero() {
			l += " due+" + o.dueAt.Sub(o.Alert.StartsAt).String()
		}
		if pl.index[keyOf(o.Rule, o.Alert.Fingerprint, o.Alert.StartsAt)] != i {
			l += " UNINDEXED"
		}
		out = append(out, l)
		for _, d := range slices.Concat(o.actions, o.escalate) {
			out = append(out, "  "+d.line())
		}
	}
	for _, r := range pl.refreshed() {
		out = append(out, fmt.Sprintf("refresh %s %s", r.rule, r.Name))
	}
	for _, r := range pl.resolves {
		out = append(out, fmt.Sprintf("resolve %s", r.Alert.Name))
	}
	for _, r := range slices.Sorted(maps.Keys(pl.matches)) {
		out = append(out, fmt.Sprintf("match %s %d", r, pl.matches[r]))
	}
	for _, f := range pl.failures {
		out = append(out, fmt.Sprintf("failure %s %s", f.rule, f.alert.Name))
	}
	return out
}

// refreshKey is one incident a plan's refresh names: its rule and the alert it gets.
type refreshKey struct {
	rule string
	alert.Alert
}

// refreshed are the incidents pl's refresh names, one per rule and alert, in key order.
func (pl *plan) refreshed() []refreshKey {
	var out []refreshKey
	for _, k := range pl.refresh {
		for _, r := range pl.set.ForRules() {
			if !slices.Contains(k.Except, r) {
				out = append(out, refreshKey{r, k.Alert})
			}
		}
	}
	slices.SortFunc(out, func(a, b refreshKey) int {
		return cmp.Or(cmp.Compare(a.rule, b.rule), cmp.Compare(a.Fingerprint, b.Fingerprint), a.StartsAt.Compare(b.StartsAt))
	})
	return out
}

func (d draft) line() string {
	na := d.na
	params, _ := json.Marshal(na.Params)
	l := fmt.Sprintf("%s/%d %s %s", na.Phase, na.Step, na.Handler, na.State)
	if na.Reason != "" {
		l += " " + string(na.Reason)
	}
	l += fmt.Sprintf(" %s class=%s mode=%s approval=%s", params, na.Class, na.Mode, na.Approval)
	if na.ApprovalsRequired != 0 {
		l += fmt.Sprintf("x%d", na.ApprovalsRequired)
	}
	if na.Timeout != 0 {
		l += " timeout=" + na.Timeout.String()
	}
	if d.err != nil {
		l += " err=" + d.err.Error()
	}
	return l
}

func TestMatch(t *testing.T) {
	m, reg := testMatcher(t, 64<<10)
	set := testRules(t, reg, matchRules)
	crash := func(status alert.Status, pod, summary string) alert.Alert {
		a := testAlert("KubePodCrashLooping", status, matchNow.Add(-time.Minute), map[string]string{"pod": pod})
		if summary != "" {
			a.Annotations = map[string]string{"summary": summary}
		}
		return a
	}
	disk := func(ago time.Duration, host string) alert.Alert {
		return testAlert("DiskFull", alert.StatusFiring, matchNow.Add(-ago), map[string]string{"host": host})
	}
	for _, tc := range []struct {
		name   string
		alerts []alert.Alert
		firing rules.FiringSet
		want   []string
	}{{
		name:   "a firing alert opens an incident with its actions rendered",
		alerts: []alert.Alert{crash(alert.StatusFiring, "web-1", "crashing")},
		want: []string{
			"open restart KubePodCrashLooping firing",
			`  actions/0 test.fix planned {"target":"web-1"} class=disruptive mode=enforce approval=none timeout=5m0s`,
			`  actions/1 test.fix planned {"note":"crashing","target":"web-1"} class=disruptive mode=enforce approval=none timeout=30s`,
			"refresh disk KubePodCrashLooping",
			"match restart 1",
		},
	}, {
		name:   "a resolved alert resolves its episode and leaves a tombstone, never an incident",
		alerts: []alert.Alert{crash(alert.StatusResolved, "web-1", "")},
		want:   []string{"open restart KubePodCrashLooping resolved", "resolve KubePodCrashLooping"},
	}, {
		name:   "firing and resolved in one batch: the firing upsert stays, the resolution follows",
		alerts: []alert.Alert{crash(alert.StatusResolved, "web-1", "x"), crash(alert.StatusFiring, "web-1", "x")},
		want: []string{
			"open restart KubePodCrashLooping firing",
			`  actions/0 test.fix planned {"target":"web-1"} class=disruptive mode=enforce approval=none timeout=5m0s`,
			`  actions/1 test.fix planned {"note":"x","target":"web-1"} class=disruptive mode=enforce approval=none timeout=30s`,
			"refresh disk KubePodCrashLooping",
			"resolve KubePodCrashLooping",
			"match restart 1",
		},
	}, {
		name:   "a redelivered alert is one upsert",
		alerts: []alert.Alert{crash(alert.StatusFiring, "web-1", "x"), crash(alert.StatusFiring, "web-1", "x")},
		want: []string{
			"open restart KubePodCrashLooping firing",
			`  actions/0 test.fix planned {"target":"web-1"} class=disruptive mode=enforce approval=none timeout=5m0s`,
			`  actions/1 test.fix planned {"note":"x","target":"web-1"} class=disruptive mode=enforce approval=none timeout=30s`,
			"refresh disk KubePodCrashLooping",
			"match restart 1",
		},
	}, {
		name:   "for: not held yet: pending, its timer due at startsAt+for, no actions",
		alerts: []alert.Alert{disk(time.Minute, "db-1")},
		want:   []string{"open disk DiskFull pending due+5m0s", "match disk 1"},
	}, {
		name:   "for: held: firing; shadow mode and approval carried by the actions",
		alerts: []alert.Alert{disk(10*time.Minute, "db-1")},
		want: []string{
			"open disk DiskFull firing",
			`  actions/0 test.fix awaiting_approval {"target":"db-1"} class=disruptive mode=shadow approval=requiredx2 timeout=5m0s`,
			"match disk 1",
		},
	}, {
		name:   "firing() gates a rule: the pending incident is refreshed, not matched",
		alerts: []alert.Alert{disk(time.Minute, "db-1")},
		firing: firingSnapshot{"Maintenance": {{"host": "db-1"}}},
		want:   []string{"refresh disk DiskFull"},
	}, {
		name:   "firing() for another host does not gate it",
		alerts: []alert.Alert{disk(time.Minute, "db-1")},
		firing: firingSnapshot{"Maintenance": {{"host": "db-2"}}},
		want:   []string{"open disk DiskFull pending due+5m0s", "match disk 1"},
	}, {
		name:   "a step that does not render fails bad_param, the rest is cancelled and the escalation drafted",
		alerts: []alert.Alert{crash(alert.StatusFiring, "web-1", "")},
		want: []string{
			"open restart KubePodCrashLooping firing",
			`  actions/0 test.fix planned {"target":"web-1"} class=disruptive mode=enforce approval=none timeout=5m0s`,
			`  actions/1 test.fix failed bad_param {} class= mode=enforce approval=none timeout=30s err=test.fix: param "note": {{ alert.annotations.summary }}: the alert has no annotation "summary"`,
			`  escalate/0 test.page planned {"note":"restart of web-1 did not help","target":"oncall"} class=notify mode=enforce approval=none timeout=5m0s`,
			"refresh disk KubePodCrashLooping",
			"match restart 1",
		},
	}, {
		name:   "a step that does not build fails bad_param with its params",
		alerts: []alert.Alert{crash(alert.StatusFiring, "", "x")},
		want: []string{
			"open restart KubePodCrashLooping firing",
			`  actions/0 test.fix failed bad_param {"target":""} class= mode=enforce approval=none timeout=5m0s err=target is empty`,
			`  actions/1 test.fix skipped cancelled {} class= mode=enforce approval=`,
			`  escalate/0 test.page planned {"note":"restart of  did not help","target":"oncall"} class=notify mode=enforce approval=none timeout=5m0s`,
			"refresh disk KubePodCrashLooping",
			"match restart 1",
		},
	}, {
		name:   "a rule that fails to evaluate is a failure, not a match",
		alerts: []alert.Alert{testAlert("Broken", alert.StatusFiring, matchNow, map[string]string{"n": "x"})},
		want:   []string{"refresh disk Broken", "failure broken Broken"},
	}, {
		name: "several rules and alerts: one upsert each, in key order",
		alerts: []alert.Alert{
			disk(10*time.Minute, "db-2"),
			testAlert("Broken", alert.StatusFiring, matchNow, map[string]string{"n": "7"}),
			crash(alert.StatusResolved, "web-2", ""),
			testAlert("Other", alert.StatusFiring, matchNow, nil),
		},
		want: []string{
			"open broken Broken firing",
			`  actions/0 test.page planned {"target":"7"} class=notify mode=enforce approval=none timeout=5m0s`,
			"open disk DiskFull firing",
			`  actions/0 test.fix awaiting_approval {"target":"db-2"} class=disruptive mode=shadow approval=requiredx2 timeout=5m0s`,
			"open restart KubePodCrashLooping resolved",
			"refresh disk Broken",
			"refresh disk Other",
			"resolve KubePodCrashLooping",
			"match broken 1",
			"match disk 1",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			firing := tc.firing
			if firing == nil {
				firing = noneFiring{}
			}
			pl := m.match(set, tc.alerts, firing, matchNow)
			if got := pl.lines(); !slices.Equal(got, tc.want) {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if pl.empty() != (len(tc.want) == 0) {
				t.Errorf("empty() = %v", pl.empty())
			}
		})
	}
}

// Every other phase is drafted like the actions: escalate and on_resolved render from the alert
// they are given, and a missing label fails the step.
func TestDraftPhases(t *testing.T) {
	m, reg := testMatcher(t, 64<<10)
	set := testRules(t, reg, matchRules)
	r := set.Rule("restart")
	a := testAlert("KubePodCrashLooping", alert.StatusResolved, matchNow, map[string]string{"pod": "web-1"})
	for _, tc := range []struct {
		phase vocab.Phase
		a     alert.Alert
		want  []string
	}{
		{vocab.PhaseOnResolved, a, []string{`on_resolved/0 test.page planned {"target":"resolved-web-1"} class=notify mode=enforce approval=none timeout=5m0s`}},
		{vocab.PhaseEscalate, a, []string{`escalate/0 test.page planned {"note":"restart of web-1 did not help","target":"oncall"} class=notify mode=enforce approval=none timeout=5m0s`}},
		{vocab.PhaseOnResolved, testAlert("KubePodCrashLooping", alert.StatusResolved, matchNow, nil),
			[]string{`on_resolved/0 test.page failed bad_param {} class= mode=enforce approval=none timeout=5m0s err=test.page: param "target": {{ alert.labels.pod }}: the alert has no label "pod"`}},
		{vocab.PhaseResolve, a, nil}, // resolve steps come from the sent actions, not the rule
	} {
		var got []string
		for _, d := range m.draft(r, tc.phase, tc.a, matchNow, noneFiring{}) {
			got = append(got, d.line())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s:\n%s\nwant:\n%s", tc.phase, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
		}
	}
}

// Params rendered over the limit fail bad_param; the action stores none of them.
func TestMatchParamsOverTheLimit(t *testing.T) {
	m, reg := testMatcher(t, 64)
	set := testRules(t, reg, matchRules)
	a := testAlert("KubePodCrashLooping", alert.StatusFiring, matchNow, map[string]string{"pod": strings.Repeat("p", 100)})
	pl := m.match(set, []alert.Alert{a}, noneFiring{}, matchNow)
	if len(pl.opens) != 1 || len(pl.opens[0].actions) != 2 {
		t.Fatalf("plan: %q", pl.lines())
	}
	d := pl.opens[0].actions[0]
	if d.na.State != vocab.StateFailed || d.na.Reason != vocab.ReasonBadParam || len(d.na.Params) != 0 ||
		!strings.Contains(d.na.Error, "over the limit of 64 bytes") {
		t.Errorf("step 0 = %s", d.line())
	}
}

// match reads the batch and leaves it as it was.
func TestMatchLeavesTheBatch(t *testing.T) {
	m, reg := testMatcher(t, 64<<10)
	set := testRules(t, reg, matchRules)
	a := testAlert("KubePodCrashLooping", alert.StatusFiring, matchNow, map[string]string{"pod": "web-1"})
	b := a
	b.ReceivedAt = matchNow.Add(time.Second)
	batch := []alert.Alert{a, b}
	m.match(set, batch, noneFiring{}, matchNow)
	if !batch[0].ReceivedAt.Equal(matchNow) || !batch[1].ReceivedAt.Equal(matchNow.Add(time.Second)) || len(batch) != 2 {
		t.Errorf("batch changed: %+v", batch)
	}
}

// BenchmarkMatch measures match alone on a batch of 2560 firing alerts (one bus fetch), one rule.
func BenchmarkMatch(b *testing.B) {
	m, reg := testMatcher(b, 64<<10)
	set := testRules(b, reg, `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
    escalate:
      - handler: test.page
        params: {target: "oncall"}
`)
	as := make([]alert.Alert, 2560)
	for j := range as {
		as[j] = testAlert("KubePodCrashLooping", alert.StatusFiring, matchNow.Add(-time.Minute), map[string]string{"namespace": "shop", "pod": fmt.Sprintf("p-%d", j)})
	}
	b.ReportAllocs()
	for range b.N {
		m.match(set, as, noneFiring{}, matchNow)
	}
}
