package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// TestGuardInvariantsUnderRandomStorms drives the engine with random streams of alerts
// (duplicates, re-sends, resolutions, handler failures, pauses and resumes, time passing) and then
// checks, from the store and the audit trail, the invariants the guards promise:
//   - a budget is never exceeded in any window;
//   - no (rule, target) is acted on during its cooldown;
//   - nothing disruptive starts while paused;
//   - every refusal is audited with its reason, and nothing runs twice.
func TestGuardInvariantsUnderRandomStorms(t *testing.T) {
	const (
		budgetMax    = 4
		budgetWindow = 10 * time.Minute
		cooldown     = 3 * time.Minute
	)
	rulesYAML := fmt.Sprintf(`
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    cooldown: %s
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
    escalate:
      - handler: test.page
        params: {target: "oncall-{{ alert.labels.pod }}"}
`, cooldown)
	for _, seed := range []uint64{1, 7, 42, 2026} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			h := newHarness(t, rulesYAML, func(o *engine.Options) {
				o.Budgets = []engine.Budget{{Name: "fixes", Match: "test.fix", Per: "global", Max: budgetMax, Window: budgetWindow}}
				o.BreakerFailures = 1000 // breakers have their own test; keep them out of these invariants
			})
			rng := rand.New(rand.NewPCG(seed, seed))
			ctx := context.Background()
			paused, pauses := false, 0
			var sent []alert.Alert
			for range 80 {
				switch r := rng.IntN(100); {
				case r < 45: // a new episode on one of few pods (targets repeat: cooldowns matter)
					a := mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now().Add(-time.Duration(rng.IntN(60))*time.Second),
						map[string]string{"pod": fmt.Sprint("p", rng.IntN(6))})
					sent = append(sent, a)
					h.process(a)
				case r < 60 && len(sent) > 0: // a re-send or a duplicate
					h.process(sent[rng.IntN(len(sent))])
				case r < 70 && len(sent) > 0: // a resolution
					a := sent[rng.IntN(len(sent))]
					a.Status = alert.StatusResolved
					h.process(a)
				case r < 78: // a handler failure for some target
					h.fix.mu.Lock()
					h.fix.fail[fmt.Sprint("p", rng.IntN(6))] = handlers.Fail(vocab.ReasonNotRecovered, "still failing")
					h.fix.mu.Unlock()
				case r < 84: // pause or resume
					paused = !paused
					if _, err := h.st.SetPause(ctx, paused, "prop", "api", "", h.clock.Now(), nil); err != nil {
						t.Fatal(err)
					}
					if paused {
						pauses++
					}
				default: // time passes
					h.clock.Add(time.Duration(1+rng.IntN(240)) * time.Second)
				}
				h.settle()
			}

			// Budget: in every window ending at a start, at most budgetMax starts.
			if n := h.count(`SELECT count(*) FROM actions a WHERE a.handler = 'test.fix' AND a.started_at IS NOT NULL AND
 (SELECT count(*) FROM actions b WHERE b.handler = 'test.fix' AND b.started_at IS NOT NULL
    AND b.started_at > a.started_at - $1::interval AND b.started_at <= a.started_at) > $2`, budgetWindow.String(), budgetMax); n != 0 {
				t.Errorf("%d starts exceeded the budget", n)
			}
			// Cooldown: two starts of one (rule, target) are at least the cooldown apart.
			if n := h.count(`SELECT count(*) FROM (
  SELECT started_at - lag(started_at) OVER (PARTITION BY rule, target ORDER BY started_at) AS gap
    FROM actions WHERE handler = 'test.fix' AND phase = 'actions' AND started_at IS NOT NULL) x
 WHERE gap < $1::interval`, cooldown.String()); n != 0 {
				t.Errorf("%d starts inside their cooldown", n)
			}
			// Pause: no disruptive action started between a pause and the next resume, in the order
			// the audit trail recorded them (the clock does not always move between steps).
			if n := h.count(`SELECT count(*) FROM audit s JOIN actions a ON a.id = s.action_id,
       audit p
 WHERE p.kind = 'control' AND p.reason = 'pause'
   AND s.kind = 'action' AND s.reason = 'started' AND a.class = 'disruptive'
   AND s.id > p.id
   AND s.id < coalesce((SELECT min(r.id) FROM audit r WHERE r.kind = 'control' AND r.reason = 'resume' AND r.id > p.id), 9223372036854775807)`); n != 0 {
				t.Errorf("%d disruptive starts while paused", n)
			}
			// Every refusal is audited with its reason.
			if n := h.count(`SELECT count(*) FROM actions a WHERE a.state = 'skipped' AND NOT EXISTS
 (SELECT 1 FROM audit x WHERE x.action_id = a.id AND x.reason = a.reason)`); n != 0 {
				t.Errorf("%d refusals without an audit row", n)
			}
			// Nothing ran twice: one call per started action.
			starts := h.count(`SELECT count(*) FROM actions WHERE handler = 'test.fix' AND started_at IS NOT NULL`)
			if calls := len(h.fix.Calls()); calls != starts {
				t.Errorf("handler calls %d, started actions %d", calls, starts)
			}
			t.Logf("seed %d: %d alerts, %d starts, %d pauses, refusals: %d", seed, len(sent), starts, pauses,
				h.count(`SELECT count(*) FROM actions WHERE state = 'skipped'`))
		})
	}
}

// TestBreakerAndStormInvariantsUnderRandomStorms drives random storms over many targets with
// failing fixes, with the circuit breaker and the storm guard on, and checks from the store and the
// audit trail: no disruptive action starts while its breaker is open (before its open period
// ends), no rule starts an action while it has touched more than max_targets targets within the
// window, and no refused action reached its handler.
func TestBreakerAndStormInvariantsUnderRandomStorms(t *testing.T) {
	const (
		openFor    = 2 * time.Minute
		window     = 3 * time.Minute
		maxTargets = 4
	)
	rulesYAML := `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
    escalate:
      - handler: test.page
        params: {target: "oncall-{{ alert.labels.pod }}"}
`
	for _, seed := range []uint64{3, 11, 99} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			h := newHarness(t, rulesYAML, func(o *engine.Options) {
				o.BreakerFailures = 2
				o.BreakerOpenFor = openFor
				o.StormMaxTargets = maxTargets
				o.StormWindow = window
			})
			rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
			var sent []alert.Alert
			for i := range 12 { // half the pods start out beyond repair
				if i%2 == 0 {
					h.fix.fail[fmt.Sprint("p", i)] = handlers.Fail(vocab.ReasonNotRecovered, "still crash looping")
				}
			}
			for range 90 {
				switch r := rng.IntN(100); {
				case r < 30: // a burst: one to four pods at once (bursts close together make a storm)
					for range 1 + rng.IntN(4) {
						a := mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(),
							map[string]string{"pod": fmt.Sprint("p", rng.IntN(12))})
						sent = append(sent, a)
						h.process(a)
					}
				case r < 38 && len(sent) > 0: // a re-send
					h.process(sent[rng.IntN(len(sent))])
				case r < 50: // a fix stops or starts working on some pod
					h.fix.mu.Lock()
					p := fmt.Sprint("p", rng.IntN(12))
					if h.fix.fail[p] == nil {
						h.fix.fail[p] = handlers.Fail(vocab.ReasonNotRecovered, "still crash looping")
					} else {
						delete(h.fix.fail, p)
					}
					h.fix.mu.Unlock()
				default: // time passes
					h.clock.Add(time.Duration(5+rng.IntN(120)) * time.Second)
				}
				h.settle()
			}

			// Breaker: no disruptive start after a breaker_open audit row and before its open
			// period ended.
			if n := h.count(`SELECT count(*) FROM audit p
  JOIN audit s ON s.kind = 'action' AND s.reason = 'started' AND s.id > p.id AND s.at < p.at + $1::interval
  JOIN actions a ON a.id = s.action_id AND a.class = 'disruptive'
 WHERE p.kind = 'control' AND p.reason = 'breaker_open'`, openFor.String()); n != 0 {
				t.Errorf("%d disruptive starts while the breaker was open", n)
			}
			// Storm guard: when an action started, its rule's disruptive actions planned before it
			// within the window touched at most maxTargets targets.
			if n := h.count(`SELECT count(*) FROM actions a
 WHERE a.class = 'disruptive' AND a.phase = 'actions' AND a.started_at IS NOT NULL
   AND (SELECT count(DISTINCT b.target) FROM actions b
         WHERE b.rule = a.rule AND b.class = 'disruptive' AND b.phase = 'actions'
           AND b.created_at > a.started_at - $1::interval AND b.created_at < a.started_at) > $2`, window.String(), maxTargets); n != 0 {
				t.Errorf("%d starts while their rule was in a storm", n)
			}
			// A refusal has no effect: no handler call carries the key of an action that did not start.
			notStarted := map[string]bool{}
			rows, err := h.st.Pool().Query(context.Background(), `SELECT id FROM actions WHERE started_at IS NULL`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					t.Fatal(err)
				}
				notStarted[fmt.Sprint("responder-action-", id)] = true
			}
			rows.Close()
			for _, c := range append(h.fix.Calls(), h.page.Calls()...) {
				if notStarted[c.Key] {
					t.Errorf("handler called for an action that never started: %+v", c)
				}
			}
			storms := h.count(`SELECT count(*) FROM actions WHERE reason = 'storm_blocked'`)
			opens := h.count(`SELECT count(*) FROM audit WHERE reason = 'breaker_open' AND kind = 'control'`)
			if storms == 0 || opens == 0 {
				t.Errorf("the storm did not exercise both guards (storm_blocked %d, breaker openings %d): change the mix", storms, opens)
			}
			t.Logf("seed %d: %d alerts, %d starts, %d storm_blocked, %d breaker_open skips, %d breaker openings", seed, len(sent),
				h.count(`SELECT count(*) FROM actions WHERE started_at IS NOT NULL AND class = 'disruptive'`), storms,
				h.count(`SELECT count(*) FROM actions WHERE reason = 'breaker_open'`), opens)
		})
	}
}
