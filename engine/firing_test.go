package engine_test

import (
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
)

// TestFiringGatesOnAlertsNoRuleActsOn: "do not restart app pods while the database alert fires",
// where no rule matches the database alert itself. firing() sees it from the batch after it
// arrived, until it resolves, across batches and replicas (the set is in the store).
func TestFiringGatesOnAlertsNoRuleActsOn(t *testing.T) {
	h := newHarness(t, `
rules:
  - name: restart
    when: 'alert.name == "KubePodCrashLooping" && alert.status == "firing" && !firing("DatabaseDown", {"cluster": "billing"})'
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.pod }}"}
`, nil)
	db := mkAlert("DatabaseDown", alert.StatusFiring, h.clock.Now().Add(-time.Minute), map[string]string{"cluster": "billing"})
	h.process(db)
	otherDB := mkAlert("DatabaseDown", alert.StatusFiring, h.clock.Now(), map[string]string{"cluster": "ledger"})
	h.process(otherDB)

	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(), map[string]string{"pod": "a"}))
	h.settle()
	if n := len(h.fix.Calls()); n != 0 {
		t.Fatalf("restarted %d pods while DatabaseDown{cluster=billing} fires", n)
	}

	db.Status = alert.StatusResolved
	h.process(db)
	h.clock.Add(time.Minute)
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(), map[string]string{"pod": "b"}))
	h.settle()
	if calls := h.fix.Calls(); len(calls) != 1 || calls[0].Target != "b" {
		t.Fatalf("calls after the database recovered = %+v, want one restart of b (ledger's alert does not gate)", calls)
	}

	// An alert that stopped being re-sent (no resolution) stops counting after a day.
	h.process(mkAlert("DatabaseDown", alert.StatusFiring, h.clock.Now(), map[string]string{"cluster": "billing"}))
	h.clock.Add(25 * time.Hour)
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(), map[string]string{"pod": "c"}))
	h.settle()
	if n := len(h.fix.Calls()); n != 2 {
		t.Fatalf("calls = %d, want 2: a DatabaseDown not seen for a day no longer gates", n)
	}
}
