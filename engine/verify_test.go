package engine_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/vocab"
)

// verifyRule restarts a crashlooping pod, then verifies within 5m (verify is the YAML of the
// rule's verify mapping).
func verifyRule(verify string) string {
	return `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    verify: ` + verify + `
    actions:
      - handler: test.page
        params: {target: "oncall", note: "restarting {{ alert.labels.pod }}"}
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
    escalate:
      - handler: test.page
        params: {target: "oncall", note: "restart of {{ alert.labels.pod }} did not help"}
`
}

// newVerifyHarness is a harness with its own metrics registry.
func newVerifyHarness(t *testing.T, verify string, mod func(*engine.Options)) (*harness, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, verifyRule(verify), func(o *engine.Options) {
		o.Registerer = reg
		if mod != nil {
			mod(o)
		}
	})
	return h, reg
}

// outcomes reads responder_actions_total of rule restart by handler and outcome ("handler outcome"
// → value), leaving out zeros.
func outcomes(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "responder_actions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if v := m.GetCounter().GetValue(); v != 0 {
				out[l["handler"]+" "+l["outcome"]] += v
			}
		}
	}
	return out
}

func (h *harness) fireTimers() int {
	h.t.Helper()
	n, err := h.eng.FireDueTimers(context.Background())
	if err != nil {
		h.t.Fatalf("timers: %v", err)
	}
	return n
}

// breakerFailures is the consecutive failures counted for test.fix's scope.
func (h *harness) breakerFailures() int {
	return h.count(`SELECT coalesce((SELECT failures FROM breakers WHERE handler = 'test.fix' AND scope = 'test'), 0)`)
}

func (h *harness) audits(reason string) int {
	return h.count(`SELECT count(*) FROM audit WHERE kind = 'action' AND reason = $1`, reason)
}

var crashing = func() alert.Alert {
	return mkAlert("KubePodCrashLooping", alert.StatusFiring, t0.Add(-time.Minute), map[string]string{"pod": "web-1"})
}

// startVerifying runs the rule's actions: the last one goes verifying.
func (h *harness) startVerifying() {
	h.t.Helper()
	h.process(crashing())
	h.settle()
	expectActions(h.t.(*testing.T), h.actions(), "actions/0 test.page succeeded ", "actions/1 test.fix verifying ")
	if n := h.count(`SELECT count(*) FROM actions WHERE state = 'verifying' AND verify_deadline = $1 AND finished_at IS NULL AND lease_until IS NULL`,
		h.clock.Now().Add(5*time.Minute)); n != 1 {
		h.t.Fatalf("verifying actions with the deadline now+5m = %d, want 1", n)
	}
}

func TestVerifyResolvedWithinSucceeds(t *testing.T) {
	h, reg := newVerifyHarness(t, `{within: 5m}`, nil)
	h.startVerifying()
	if got := outcomes(t, reg); fmt.Sprint(got) != "map[test.page succeeded:1]" {
		t.Fatalf("outcomes while verifying = %v: the verifying action has no outcome yet", got)
	}
	h.clock.Add(2 * time.Minute)
	if n := h.fireTimers(); n != 0 {
		t.Fatalf("settled %d verifications before the alert resolved or the deadline", n)
	}
	h.process(mkAlert("KubePodCrashLooping", alert.StatusResolved, t0.Add(-time.Minute), map[string]string{"pod": "web-1"}))
	if n := h.fireTimers(); n != 1 {
		t.Fatalf("settled %d verifications after the resolution, want 1", n)
	}
	h.settle()
	h.clock.Add(10 * time.Minute) // past the deadline: nothing more happens
	if n := h.fireTimers(); n != 0 {
		t.Fatalf("settled %d more", n)
	}
	expectActions(t, h.actions(), "actions/0 test.page succeeded ", "actions/1 test.fix succeeded ", "resolve/0 test.page succeeded ")
	if got := outcomes(t, reg); fmt.Sprint(got) != "map[test.fix succeeded:1 test.page succeeded:2]" { // the page and its resolve
		t.Errorf("outcomes = %v, want each action counted once", got)
	}
	if n := h.audits(string(vocab.ReasonVerifyStarted)); n != 1 {
		t.Errorf("verify_started audit rows = %d, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM audit WHERE reason = 'recovered' AND actor = 'replica-a'
	                    AND detail->>'condition' = 'the incident resolved' AND detail->>'deadline' IS NOT NULL`); n != 1 {
		t.Errorf("recovered audit rows with condition and deadline = %d, want 1", n)
	}
	if n := h.breakerFailures(); n != 0 {
		t.Errorf("breaker failures = %d", n)
	}
}

func TestVerifyTimeoutFailsNotRecoveredAndEscalates(t *testing.T) {
	h, reg := newVerifyHarness(t, `{within: 5m}`, nil)
	h.startVerifying()
	h.clock.Add(5*time.Minute - time.Second)
	h.process(crashing()) // still firing: a re-send is no resolution
	if n := h.fireTimers(); n != 0 {
		t.Fatalf("settled %d before the deadline", n)
	}
	h.clock.Add(time.Second)
	if n := h.fireTimers(); n != 1 {
		t.Fatalf("settled %d at the deadline, want 1", n)
	}
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.page succeeded ", "actions/1 test.fix failed not_recovered",
		"escalate/0 test.page succeeded ")
	calls := h.page.Calls()
	if len(calls) != 2 || calls[1].Note != "restart of web-1 did not help" {
		t.Errorf("page calls = %+v, want the escalation", calls)
	}
	if n := h.breakerFailures(); n != 1 {
		t.Errorf("breaker failures = %d, want 1 (not_recovered counts)", n)
	}
	if got := outcomes(t, reg); fmt.Sprint(got) != "map[test.fix failed:1 test.page succeeded:2]" {
		t.Errorf("outcomes = %v", got)
	}
	if n := h.count(`SELECT count(*) FROM audit WHERE reason = 'not_recovered' AND detail->>'condition' = 'the incident resolved'
	                    AND detail->>'error' LIKE 'verify: the incident''s resolution%'`); n != 1 {
		t.Errorf("not_recovered audit rows = %d, want 1", n)
	}
	// A late resolution changes nothing.
	h.process(mkAlert("KubePodCrashLooping", alert.StatusResolved, t0.Add(-time.Minute), map[string]string{"pod": "web-1"}))
	if n := h.fireTimers(); n != 0 {
		t.Errorf("settled %d after the outcome", n)
	}
}

func TestVerifyBreakerOpensOnNotRecovered(t *testing.T) {
	h, _ := newVerifyHarness(t, `{within: 1m}`, func(o *engine.Options) { o.BreakerFailures = 1 })
	h.process(crashing())
	h.settle()
	h.clock.Add(time.Minute)
	h.fireTimers()
	if n := h.count(`SELECT count(*) FROM breakers WHERE handler = 'test.fix' AND scope = 'test' AND state = 'open'`); n != 1 {
		t.Fatalf("open breakers = %d, want 1", n)
	}
}

func TestVerifyWhenHoldsSucceeds(t *testing.T) {
	const when = `{within: 5m, when: 'probe("api-health").success'}`
	h, reg := newVerifyHarness(t, when, nil)
	probeAlert := func(st alert.Status) alert.Alert {
		a := mkAlert("api-health", st, t0.Add(-2*time.Minute), map[string]string{"probe_kind": "http"})
		a.Source = alert.SourceProbe
		return withValue(a, 503)
	}
	h.process(probeAlert(alert.StatusFiring))
	h.startVerifying()
	h.clock.Add(time.Minute)
	h.process(crashing()) // a batch: the probe still fails
	if n := h.fireTimers(); n != 0 {
		t.Fatalf("settled %d while the probe fails", n)
	}
	h.clock.Add(time.Minute)
	h.process(probeAlert(alert.StatusResolved)) // the crashing pod's incident stays open
	if n := h.fireTimers(); n != 1 {
		t.Fatalf("settled %d once the probe recovered, want 1", n)
	}
	expectActions(t, h.actions(), "actions/0 test.page succeeded ", "actions/1 test.fix succeeded ")
	if got := h.incidentStates(); fmt.Sprint(got) != "[firing]" {
		t.Errorf("incidents = %v", got)
	}
	if got := outcomes(t, reg); fmt.Sprint(got) != "map[test.fix succeeded:1 test.page succeeded:1]" {
		t.Errorf("outcomes = %v", got)
	}
	if n := h.count(`SELECT count(*) FROM audit WHERE reason = 'recovered' AND detail->>'condition' = 'probe("api-health").success'`); n != 1 {
		t.Errorf("recovered audit rows = %d", n)
	}
}

func TestVerifyWhenOverTheIncidentsAlert(t *testing.T) {
	// The condition reads the incident's latest alert: a re-send with a lower value makes it hold.
	h, _ := newVerifyHarness(t, `{within: 5m, when: 'alert.value < 3'}`, nil)
	h.process(withValue(crashing(), 9))
	h.settle()
	h.process(withValue(crashing(), 5))
	if n := h.fireTimers(); n != 0 {
		t.Fatalf("settled %d at value 5", n)
	}
	h.clock.Add(time.Minute)
	h.process(withValue(crashing(), 1))
	if n := h.fireTimers(); n != 1 {
		t.Fatalf("settled %d at value 1, want 1", n)
	}
	expectActions(t, h.actions(), "actions/0 test.page succeeded ", "actions/1 test.fix succeeded ")
}

func TestVerifyWhenFalseAtTheDeadline(t *testing.T) {
	h, _ := newVerifyHarness(t, `{within: 5m, when: 'alert.value < 3'}`, nil)
	h.process(withValue(crashing(), 9))
	h.settle()
	h.clock.Add(5 * time.Minute)
	if n := h.fireTimers(); n != 1 {
		t.Fatalf("settled %d at the deadline", n)
	}
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.page succeeded ", "actions/1 test.fix failed not_recovered",
		"escalate/0 test.page succeeded ")
	if n := h.count(`SELECT count(*) FROM actions WHERE reason = 'not_recovered' AND error LIKE 'verify: when "alert.value < 3" did not hold by %'`); n != 1 {
		t.Errorf("not_recovered with the condition in its error = %d", n)
	}
}

func TestVerifyOnlyWhenTheHandlerSucceeded(t *testing.T) {
	h, _ := newVerifyHarness(t, `{within: 5m}`, nil)
	h.fix.fail["web-1"] = fmt.Errorf("no such pod")
	h.process(crashing())
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.page succeeded ", "actions/1 test.fix failed error", "escalate/0 test.page succeeded ")
	if n := h.count(`SELECT count(*) FROM actions WHERE verify_deadline IS NOT NULL`); n != 0 {
		t.Errorf("verify deadlines = %d", n)
	}
}

func TestVerifyNotInDryRun(t *testing.T) {
	h, _ := newVerifyHarness(t, `{within: 5m}`, func(o *engine.Options) { o.DryRun = true })
	h.process(crashing())
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.page dry_run dry_run", "actions/1 test.fix dry_run dry_run")
}

// A restart between the handler's success and the deadline: a new engine on the same store (the
// deadline is a row) settles the verification once.
func TestVerifySurvivesARestart(t *testing.T) {
	h, _ := newVerifyHarness(t, `{within: 5m}`, nil)
	h.startVerifying()
	reg := prometheus.NewRegistry()
	b, err := engine.New(engine.Options{Store: h.st, Handlers: h.reg, Rules: h.eng.Rules(), Owner: "replica-b", Now: h.clock.Now, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	h.eng = b // the first engine is gone
	h.clock.Add(5 * time.Minute)
	if n := h.fireTimers(); n != 1 {
		t.Fatalf("the new engine settled %d, want 1", n)
	}
	if n := h.fireTimers(); n != 0 {
		t.Fatalf("settled again: %d", n)
	}
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.page succeeded ", "actions/1 test.fix failed not_recovered",
		"escalate/0 test.page succeeded ")
	if got := outcomes(t, reg); fmt.Sprint(got) != "map[test.fix failed:1 test.page succeeded:1]" {
		t.Errorf("the new engine's outcomes = %v", got)
	}
	if n := h.count(`SELECT count(*) FROM audit WHERE reason = 'not_recovered' AND actor = 'replica-b'`); n != 1 {
		t.Errorf("not_recovered audit rows by replica-b = %d", n)
	}
}

// Engines racing the deadline (replicas, and the batch-triggered pass of each): one outcome, one
// escalation, one count.
func TestVerifyRacingEnginesSettleOnce(t *testing.T) {
	for _, status := range []alert.Status{"", alert.StatusResolved} {
		t.Run("resolved="+string(status), func(t *testing.T) {
			h, reg0 := newVerifyHarness(t, `{within: 5m}`, nil)
			h.startVerifying()
			engines := []*engine.Engine{h.eng}
			regs := []*prometheus.Registry{reg0}
			for i := range 5 {
				reg := prometheus.NewRegistry()
				e, err := engine.New(engine.Options{Store: h.st, Handlers: h.reg, Rules: h.eng.Rules(), Owner: fmt.Sprint("replica-", i), Now: h.clock.Now, Registerer: reg})
				if err != nil {
					t.Fatal(err)
				}
				engines, regs = append(engines, e), append(regs, reg)
			}
			h.clock.Add(5 * time.Minute) // due either way
			if status != "" {
				h.process(mkAlert("KubePodCrashLooping", status, t0.Add(-time.Minute), map[string]string{"pod": "web-1"}))
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			total := 0
			for _, e := range engines {
				for range 3 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						n, err := e.FireVerifications(context.Background())
						if err != nil {
							t.Error(err)
						}
						mu.Lock()
						total += n
						mu.Unlock()
					}()
				}
			}
			wg.Wait()
			if total != 1 {
				t.Fatalf("verifications settled %d times, want 1", total)
			}
			counted := 0.0
			for _, reg := range regs {
				for k, v := range outcomes(t, reg) {
					if k != "test.page succeeded" {
						counted += v
					}
				}
			}
			if counted != 1 {
				t.Errorf("test.fix outcomes counted %v times, want 1", counted)
			}
			want := 1 // not_recovered: one escalation
			if status == alert.StatusResolved {
				want = 0
			}
			if n := h.count(`SELECT count(*) FROM actions WHERE phase = 'escalate'`); n != want {
				t.Errorf("escalations planned = %d, want %d", n, want)
			}
			if n := h.count(`SELECT count(*) FROM audit WHERE reason IN ('recovered', 'not_recovered')`); n != 1 {
				t.Errorf("outcome audit rows = %d, want 1", n)
			}
		})
	}
}

func TestVerifyAfterAReloadWithoutIt(t *testing.T) {
	// The rule no longer verifies: the verifying action is judged by the default condition.
	h, _ := newVerifyHarness(t, `{within: 5m, when: 'alert.value < 3'}`, nil)
	h.startVerifying()
	h.eng.SetRules(loadRules(t, h.reg, crashRule))
	h.process(mkAlert("KubePodCrashLooping", alert.StatusResolved, t0.Add(-time.Minute), map[string]string{"pod": "web-1"}))
	if n := h.fireTimers(); n != 1 {
		t.Fatalf("settled %d", n)
	}
	if n := h.count(`SELECT count(*) FROM actions WHERE phase = 'actions' AND step = 1 AND state = 'succeeded'`); n != 1 {
		t.Fatalf("actions: %v", h.actions())
	}
}
