package engine_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/engine"
)

// TestStormGuardWorkloadFraction: a rule restarting pods of one workload may touch at most
// max_workload_fraction of its members within the window; the rest are storm_blocked (one
// escalation), other workloads are unaffected, and a workload whose size cannot be read is refused.
func TestStormGuardWorkloadFraction(t *testing.T) {
	const rulesYAML = `
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    actions:
      - handler: test.fix
        params: {target: "{{ alert.labels.deployment }}", member: "{{ alert.labels.pod }}"}
    escalate:
      - handler: test.page
        params: {target: "oncall"}
`
	tests := []struct {
		name     string
		size     int
		sizeErr  error
		pods     int
		wantRun  int
		wantStop int
	}{
		{name: "10 replicas, 0.3: three pods", size: 10, pods: 6, wantRun: 3, wantStop: 3},
		{name: "one replica: its pod is always allowed", size: 1, pods: 1, wantRun: 1},
		{name: "2 replicas, 0.3: one pod", size: 2, pods: 2, wantRun: 1, wantStop: 1},
		{name: "size unknown: refused after the first", sizeErr: errors.New("apiserver unreachable"), pods: 2, wantRun: 1, wantStop: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, rulesYAML, func(o *engine.Options) {
				o.StormMaxWorkloadFraction = 0.3
				o.StormWindow = 5 * time.Minute
			})
			h.fix.size, h.fix.sizeErr = tc.size, tc.sizeErr
			for i := range tc.pods {
				h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(),
					map[string]string{"deployment": "api", "pod": fmt.Sprint("api-", i)}))
				h.settle()
			}
			// Another workload is not affected by api's storm.
			h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, h.clock.Now(), map[string]string{"deployment": "web", "pod": "web-0"}))
			h.settle()
			ran, stopped := 0, 0
			for _, r := range h.actions() {
				if r.Phase != "actions" || r.Target != "test.fix:api" {
					continue
				}
				switch {
				case r.State == "succeeded":
					ran++
				case r.State == "skipped" && r.Reason == "storm_blocked":
					stopped++
				default:
					t.Errorf("unexpected action %+v", r)
				}
			}
			if ran != tc.wantRun || stopped != tc.wantStop {
				t.Fatalf("ran %d, storm-blocked %d; want %d and %d", ran, stopped, tc.wantRun, tc.wantStop)
			}
			if n := h.count(`SELECT count(*) FROM actions WHERE target = 'test.fix:web' AND state = 'succeeded'`); n != 1 {
				t.Fatalf("web's restarts = %d, want 1", n)
			}
			pages := 0
			for _, c := range h.page.Calls() {
				if strings.HasPrefix(c.Target, "oncall") {
					pages++
				}
			}
			if want := min(tc.wantStop, 1); pages != want {
				t.Fatalf("escalations = %d, want %d (a storm escalates once)", pages, want)
			}
		})
	}
}
