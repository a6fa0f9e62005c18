package app_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/testwait"
)

// TestScheduledDrills: a drills: scenario with a schedule runs under the leader lease, once per
// slot, through the same path as the CLI's (its alert through the intake, its approval as
// drill:<name>, its report in the history); the metrics say how it went and how often it runs.
func TestScheduledDrills(t *testing.T) {
	f := startApp(t, fixtureOpts{
		extra: `drills:
  page: "#drills"
  scenarios:
    - name: hook-drill
      schedule: "@every 2s"
      rto: 1m
      inject:
        alerts:
          - labels: {alertname: HookDown, service: billing}
      approve: auto
      expect:
        - {rule: hook-down, handler: http.request, state: succeeded}
      resolve: true
`,
		rules: func(s *sink) string {
			return fmt.Sprintf(`
rules:
  - name: hook-down
    when: alert.name == "HookDown" && alert.status == "firing" && alert.drill
    actions:
      - handler: http.request
        approval: required
        params: {url: "http://%s/hooks/{{ alert.labels.service }}"}
`, s.HostPort())
		},
	})
	type run struct {
		RunID        string     `json:"run_id"`
		Trigger      string     `json:"trigger"`
		Actor        string     `json:"actor"`
		ScheduledFor *time.Time `json:"scheduled_for"`
		Passed       *bool      `json:"passed"`
		Failure      string     `json:"failure"`
	}
	var runs []run
	testwait.Until(t, time.Minute, "two scheduled runs to finish", func() bool {
		_, b := f.do("GET", "/api/v1/drills", readToken, nil)
		var l struct{ Items []run }
		must(t, json.Unmarshal(b, &l))
		runs = runs[:0]
		for _, r := range l.Items {
			if r.Passed != nil {
				runs = append(runs, r)
			}
		}
		return len(runs) >= 2
	})
	slots := map[time.Time]bool{}
	for _, r := range runs {
		if r.Trigger != "schedule" || r.Actor != "schedule" || r.ScheduledFor == nil || !*r.Passed {
			t.Fatalf("run %+v: want a passed run by the schedule, with its slot", r)
		}
		if slots[*r.ScheduledFor] {
			t.Fatalf("slot %s ran twice", r.ScheduledFor)
		}
		slots[*r.ScheduledFor] = true
	}
	for _, a := range f.actions("") {
		if a["approved_by"] != "drill:hook-drill" || a["state"] != "succeeded" {
			t.Fatalf("action %v: want succeeded, approved by drill:hook-drill", a)
		}
	}
	testwait.Until(t, 10*time.Second, "the drill metrics", func() bool {
		return metricValue(t, f, "responder_drill_success") == 1 && metricValue(t, f, "responder_drill_schedule_interval_seconds") == 2 &&
			metricValue(t, f, "responder_drill_last_run_timestamp_seconds") > 0
	})
}
