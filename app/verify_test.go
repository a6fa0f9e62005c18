package app_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/testwait"
)

// verifyFixture runs a rule whose http.request (a real call to the sink) is verified within
// within, escalating to page.teams (a local Teams webhook).
func verifyFixture(t *testing.T, within string) (*fixture, *teamsRecorder) {
	teams := newTeamsRecorder(t)
	f := startApp(t, fixtureOpts{
		files: map[string]string{"teams-url": teams.URL + "/workflows/abc/invoke?sig=teams-signature-for-tests\n"},
		extra: "  page:\n    teams: {url_file: teams-url}\n",
		rules: func(s *sink) string {
			return fmt.Sprintf(`
rules:
  - name: restart-and-verify
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    verify: {within: %s}
    actions:
      - handler: http.request
        params: {url: "http://%s/hooks/restart/{{ alert.labels.pod }}"}
    escalate:
      - handler: page.teams
        params: {title: "restart of {{ alert.labels.pod }} did not help"}
`, within, s.HostPort())
		},
	})
	return f, teams
}

// restartAction is the rule's http.request action as the API shows it.
func (f *fixture) restartAction() map[string]any {
	f.t.Helper()
	for _, a := range f.actions("?rule=restart-and-verify") {
		if a["handler"] == "http.request" {
			return a
		}
	}
	return nil
}

// actionsTotal is responder_actions_total of one rule, handler and outcome.
func actionsTotal(t *testing.T, f *fixture, rule, handler, outcome string) float64 {
	t.Helper()
	mfs, err := f.app.Registry().Gather()
	must(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "responder_actions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["rule"] == rule && l["handler"] == handler && l["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestVerifyNotRecoveredEscalates: the restart "succeeds" (the sink answers 200) but the alert
// keeps firing: when verify.within has passed, the action fails with not_recovered, the
// escalation's Teams card is sent, and the outcome is counted once.
func TestVerifyNotRecoveredEscalates(t *testing.T) {
	f, teams := verifyFixture(t, "2s")
	starts := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	if code := f.post(payload("firing", starts, "web-1")); code != http.StatusOK {
		t.Fatalf("webhook: %d", code)
	}
	testwait.Until(t, 30*time.Second, "the restart call", func() bool { return len(f.sink.Calls()) == 1 })
	// Verifying until the deadline (unless the machine is slow enough that it passed already).
	testwait.Until(t, 30*time.Second, "the action verifying or settled", func() bool {
		a := f.restartAction()
		return a != nil && a["verify_deadline"] != nil && (a["state"] == "verifying" || a["state"] == "failed")
	})
	testwait.Until(t, 30*time.Second, "the escalation's Teams card", func() bool { return len(teams.got()) == 1 })
	if card := teams.got()[0]; !strings.Contains(card, "restart of web-1 did not help") {
		t.Errorf("card: %s", card)
	}
	a := f.restartAction()
	if a["state"] != "failed" || a["reason"] != "not_recovered" || !strings.HasPrefix(fmt.Sprint(a["error"]), "verify: the incident's resolution") {
		t.Errorf("action: %v", a)
	}
	if got := countState(f.actions("?rule=restart-and-verify"), "succeeded"); got != 1 {
		t.Errorf("succeeded actions = %d, want the escalation's", got)
	}
	testwait.Until(t, 10*time.Second, "the outcome counted", func() bool {
		return actionsTotal(t, f, "restart-and-verify", "http.request", "failed") == 1
	})
	if n := actionsTotal(t, f, "restart-and-verify", "http.request", "succeeded"); n != 0 {
		t.Errorf("succeeded counted %v times", n)
	}
	if len(f.sink.Calls()) != 1 {
		t.Errorf("restart calls = %d, want 1 (verify never re-runs)", len(f.sink.Calls()))
	}
}

// TestVerifyResolvedSucceeds: the alert resolves within verify.within: the action succeeds and
// nothing escalates.
func TestVerifyResolvedSucceeds(t *testing.T) {
	f, teams := verifyFixture(t, "2m")
	starts := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	if code := f.post(payload("firing", starts, "web-1")); code != http.StatusOK {
		t.Fatalf("webhook: %d", code)
	}
	testwait.Until(t, 30*time.Second, "the action verifying", func() bool {
		a := f.restartAction()
		return a != nil && a["state"] == "verifying"
	})
	if code := f.post(payload("resolved", starts, "web-1")); code != http.StatusOK {
		t.Fatalf("webhook: %d", code)
	}
	testwait.Until(t, 30*time.Second, "the action succeeded", func() bool { return f.restartAction()["state"] == "succeeded" })
	testwait.Until(t, 10*time.Second, "the outcome counted", func() bool {
		return actionsTotal(t, f, "restart-and-verify", "http.request", "succeeded") == 1
	})
	if n := len(teams.got()); n != 0 {
		t.Errorf("Teams cards = %d, want none", n)
	}
}
