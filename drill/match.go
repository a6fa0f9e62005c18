package drill

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/vocab"
)

// found is an action of the run with its incident.
type found struct {
	a   *Action
	inc *Incident
}

// match pairs the expectations with the run's actions, in order: the k-th expectation takes the
// first action (by created_at, then id) of its rule and handler that no earlier expectation took.
func match(expect []config.DrillExpect, incs []Incident) []Step {
	var all []found
	for i := range incs {
		for j := range incs[i].Actions {
			all = append(all, found{&incs[i].Actions[j], &incs[i]})
		}
	}
	slices.SortFunc(all, func(p, q found) int {
		return cmp.Or(p.a.CreatedAt.Compare(q.a.CreatedAt), cmp.Compare(p.a.ID, q.a.ID))
	})
	used := map[int64]bool{}
	steps := make([]Step, len(expect))
	for k, e := range expect {
		want := e.State
		if want == "" {
			want = vocab.StateSucceeded
		}
		steps[k] = Step{Rule: e.Rule, Handler: e.Handler, Expected: want}
		for _, f := range all {
			if used[f.a.ID] || f.a.Rule != e.Rule || f.a.Handler != e.Handler {
				continue
			}
			used[f.a.ID] = true
			fillStep(&steps[k], f)
			break
		}
	}
	return steps
}

// fillStep copies the matched action's state and times into s.
func fillStep(s *Step, f found) {
	a := f.a
	created := a.CreatedAt
	s.ActionID, s.IncidentID, s.State, s.Reason, s.Error, s.ApprovedBy = a.ID, f.inc.ID, a.State, a.Reason, a.Error, a.ApprovedBy
	s.CreatedAt, s.StartedAt, s.FinishedAt = &created, a.StartedAt, a.FinishedAt
	s.Met = a.State == s.Expected
	s.ApprovedAt = approvalAt(f.inc, a.ID)
	if s.ApprovedAt != nil {
		s.ApproveSeconds = seconds(created, *s.ApprovedAt)
	}
	if a.StartedAt != nil && a.FinishedAt != nil {
		s.ActSeconds = seconds(*a.StartedAt, *a.FinishedAt)
	}
	if a.VerifyDeadline != nil {
		s.RecoveredAt = auditAt(f.inc, a.ID, func(e AuditEntry) bool { return e.Reason == reasonRecovered })
		if s.RecoveredAt == nil && a.State == vocab.StateSucceeded {
			s.RecoveredAt = f.inc.ResolvedAt
		}
	}
}

// approvalAt is when the action's approval settled: the audit entry of kind approval that
// approved it, else its last approval entry; nil when it had none.
func approvalAt(inc *Incident, actionID int64) *time.Time {
	if t := auditAt(inc, actionID, func(e AuditEntry) bool {
		return e.Kind == auditApproval && e.Reason == string(vocab.StateApproved)
	}); t != nil {
		return t
	}
	return auditAt(inc, actionID, func(e AuditEntry) bool { return e.Kind == auditApproval })
}

// auditAt is the time of the last audit entry of the action that ok accepts.
func auditAt(inc *Incident, actionID int64, ok func(AuditEntry) bool) *time.Time {
	var at *time.Time
	for _, e := range inc.Audit {
		if e.ActionID != nil && *e.ActionID == actionID && ok(e) && (at == nil || e.At.After(*at)) {
			t := e.At
			at = &t
		}
	}
	return at
}

// firstFailed explains the first expectation whose action ended in another final state; "" when
// none did.
func firstFailed(steps []Step) string {
	for k, s := range steps {
		if s.ActionID == 0 || s.Met || !s.State.Final() {
			continue
		}
		why := fmt.Sprintf("expect[%d] %s/%s: action %d ended %s", k, s.Rule, s.Handler, s.ActionID, s.State)
		if s.Reason != "" {
			why += fmt.Sprintf(" (%s)", s.Reason)
		}
		if s.Error != "" {
			why += ": " + s.Error
		}
		return why + fmt.Sprintf(", want %s", s.Expected)
	}
	return ""
}

func allMet(steps []Step) bool {
	for _, s := range steps {
		if !s.Met {
			return false
		}
	}
	return true
}

// handlersDone reports whether every expected step's handler has finished: the step is met, or
// its handler succeeded and its verification waits (verifying).
func handlersDone(steps []Step) bool {
	for _, s := range steps {
		if !s.Met && s.State != vocab.StateSucceeded && s.State != vocab.StateVerifying {
			return false
		}
	}
	return true
}

// pending says which expectations are not met and where they stand.
func pending(steps []Step) string {
	var out []string
	for k, s := range steps {
		switch {
		case s.Met:
		case s.ActionID == 0:
			out = append(out, fmt.Sprintf("expect[%d] %s/%s: no such action", k, s.Rule, s.Handler))
		default:
			out = append(out, fmt.Sprintf("expect[%d] %s/%s: action %d is %s, want %s", k, s.Rule, s.Handler, s.ActionID, s.State, s.Expected))
		}
	}
	if len(out) == 0 {
		return "every expectation met"
	}
	return strings.Join(out, "; ")
}

// timing fills the report's times from the steps and the run's incidents.
func (x *run) timing(steps []Step) {
	r := &x.rep
	r.DetectSeconds, r.DecideSeconds, r.ApproveSeconds, r.ActSeconds, r.RecoverSeconds = 0, 0, 0, 0, 0
	if r.InjectedAt.IsZero() || len(steps) == 0 || steps[0].ActionID == 0 {
		return
	}
	first := x.incident(steps[0].IncidentID)
	if first != nil {
		// Received: the first receipt. received_at is the latest alert's (a probe repeats its
		// firing), so it is the first only when not after the incident was opened.
		detected, received := first.StartsAt, first.CreatedAt
		if first.ReceivedAt != nil && first.ReceivedAt.Before(received) {
			received = *first.ReceivedAt
		}
		if len(x.d.Inject.Exec) == 0 {
			detected = received // synthetic alerts: detected when received
		}
		r.DetectSeconds = seconds(r.InjectedAt, detected)
		r.DecideSeconds = seconds(received, *steps[0].CreatedAt)
	}
	for _, s := range steps {
		r.ApproveSeconds += s.ApproveSeconds
		r.ActSeconds += s.ActSeconds
	}
	last := steps[len(steps)-1]
	end := last.FinishedAt
	if last.RecoveredAt != nil {
		end = last.RecoveredAt
	}
	if end != nil {
		r.RecoverSeconds = seconds(r.InjectedAt, *end)
	}
	r.ApproveSeconds, r.ActSeconds = round(r.ApproveSeconds), round(r.ActSeconds)
}

func (x *run) incident(id int64) *Incident {
	for i := range x.snap {
		if x.snap[i].ID == id {
			return &x.snap[i]
		}
	}
	return nil
}

// seconds is to - from in seconds, rounded to the millisecond; never negative (clocks of two
// hosts may disagree by a little).
func seconds(from, to time.Time) float64 {
	return round(max(to.Sub(from).Seconds(), 0))
}

func round(s float64) float64 { return math.Round(s*1000) / 1000 }
