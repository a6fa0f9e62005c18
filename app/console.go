package app

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/responder-sre/responder/console"
	"github.com/responder-sre/responder/identity"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// mountConsole serves the web console under /ui/ on mux: the one built from the configuration
// in force (a reload builds it again).
func (a *App) mountConsole(mux *http.ServeMux) error {
	ui, err := a.newConsole(a.cur())
	if err != nil {
		return err
	}
	a.setLive(func(l *live) { l.console = ui })
	mux.Handle(console.Prefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.cur().console.ServeHTTP(w, r)
	}))
	return nil
}

// newConsole builds the web console (/ui/) on the store and the engine. Its users are web.users
// and the trusted proxy's (identity.Web); approvals.approvers.web may approve and deny. Under
// --web.no-auth without console users, everyone is "anonymous", an admin and approver, as the API
// is open to everyone then; without either, nobody gets in.
func (a *App) newConsole(l *live) (http.Handler, error) {
	approvers := append([]string(nil), l.cfg.Approvals.Approvers.Web...)
	if l.webAuth == nil && a.o.NoAuth {
		approvers = []string{noAuthConsoleUser.Name}
	}
	return console.New(console.Options{
		Authenticate: a.consoleAuthenticate,
		Approvers:    approvers,
		Store:        consoleStore{a},
		ApprovalTTL:  l.cfg.Approvals.TTL.D(),
		CSRFKey:      a.csrfKey,
		Now:          a.o.Now,
		Logger:       a.log.With("component", "console"),
	})
}

// noAuthConsoleUser is who a console request is under --web.no-auth when no console user is
// configured.
var noAuthConsoleUser = identity.Principal{Name: "anonymous", Role: identity.RoleAdmin, Via: identity.ViaWeb}

// errNoConsoleUsers refuses every console login when neither web.users nor web.auth is set.
var errNoConsoleUsers = errors.New("no console users are configured (web.users, web.auth)")

// consoleAuthenticate is the console's authenticator: identity.Web when console users are
// configured.
func (a *App) consoleAuthenticate(r *http.Request) (identity.Principal, error) {
	switch web := a.cur().webAuth; {
	case web != nil:
		return web.Authenticate(r)
	case a.o.NoAuth:
		return noAuthConsoleUser, nil
	}
	return identity.Principal{}, errNoConsoleUsers
}

// consoleStore is the console's view of the store and the engine: the same reads and decisions as
// the API's (listIncidents, getIncident, status, decide, pause, resume, resetBreaker).
type consoleStore struct{ a *App }

func (s consoleStore) Incidents(ctx context.Context, f store.IncidentFilter) ([]store.Incident, string, error) {
	return s.a.st.ListIncidents(ctx, f)
}

func (s consoleStore) Incident(ctx context.Context, id int64) (*console.Incident, error) {
	inc, err := s.a.st.GetIncident(ctx, id)
	if err != nil {
		return nil, err
	}
	al, err := s.a.st.IncidentAlert(ctx, id)
	if err != nil {
		return nil, err
	}
	for i := range inc.Actions {
		redactParams(&inc.Actions[i])
	}
	return &console.Incident{Incident: *inc, Alert: al}, nil
}

func (s consoleStore) AwaitingApproval(ctx context.Context) ([]store.Action, error) {
	acts, _, err := s.a.st.ListActions(ctx, store.ActionFilter{State: vocab.StateAwaitingApproval, Page: store.Page{Limit: store.MaxLimit}})
	for i := range acts {
		redactParams(&acts[i])
	}
	return acts, err
}

func (s consoleStore) PendingApprovals(ctx context.Context) (int, error) {
	return s.a.st.PendingApprovals(ctx)
}

func (s consoleStore) Audit(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, string, error) {
	return s.a.st.ListAudit(ctx, f)
}

// Status reads every part on its own: one that fails says "unavailable" (logged), the others are
// shown, and the kill switch's forms stay usable while the bus is down.
func (s consoleStore) Status(ctx context.Context) console.Status {
	a := s.a
	set := a.eng.Rules()
	lead := a.leaderStatus()
	st := console.Status{ConfigPaused: a.conf().Safety.Paused, DryRun: a.dryRun(), Version: a.o.Version, Rules: len(set.Rules), RuleHash: set.Hash,
		Leader: console.Leader{Replica: lead.Replica, Leading: lead.Leading, Token: lead.Token}}
	unavailable := func(part string, err error) string {
		a.log.Warn("console status: read failed", "part", part, "err", err)
		return "unavailable"
	}
	var err error
	if st.Pause, err = a.st.Pause(ctx); err != nil {
		st.PauseErr = unavailable("pause", err)
	}
	st.Paused = st.ConfigPaused || st.Pause.Active(a.o.Now())
	if st.Breakers, err = a.st.Breakers(ctx); err != nil {
		st.BreakersErr = unavailable("breakers", err)
	}
	if st.BusPending, err = a.bus.Pending(ctx); err != nil {
		st.BusPendingErr = unavailable("bus", err)
	}
	if st.DeadLetters, err = a.st.UnreplayedDeadLetters(ctx); err != nil {
		st.DeadLettersErr = unavailable("dead_letters", err)
	}
	if st.ApprovalsPending, err = a.st.PendingApprovals(ctx); err != nil {
		st.ApprovalsPendingErr = unavailable("approvals", err)
	}
	for _, b := range a.budgetStatus(ctx) {
		st.Budgets = append(st.Budgets, console.Budget{Name: b.Name, Match: b.Match, Per: b.Per, Window: b.Window, Max: b.Max,
			MostUsed: b.MostUsed, Err: b.Error})
	}
	return st
}

func (s consoleStore) RuleNames() []string {
	set := s.a.eng.Rules()
	names := make([]string, 0, len(set.Rules))
	for _, r := range set.Rules {
		names = append(names, r.Name)
	}
	return names
}

// Decide decides through the engine's approval policy, as the API and Slack do, and wakes the
// executor.
func (s consoleStore) Decide(ctx context.Context, actionID int64, approver, decision, via string) (store.DecisionResult, error) {
	res, err := s.a.eng.Decide(ctx, actionID, approver, decision, via)
	if err == nil {
		s.a.eng.Kick()
	}
	return res, err
}

func (s consoleStore) Pause(ctx context.Context, by, reason string, d time.Duration) (store.PauseState, error) {
	now := s.a.o.Now()
	var until *time.Time
	if d > 0 {
		u := now.Add(d)
		until = &u
	}
	return s.setPause(ctx, true, by, reason, now, until)
}

func (s consoleStore) Resume(ctx context.Context, by, reason string) (store.PauseState, error) {
	return s.setPause(ctx, false, by, reason, s.a.o.Now(), nil)
}

func (s consoleStore) setPause(ctx context.Context, paused bool, by, reason string, now time.Time, until *time.Time) (store.PauseState, error) {
	ps, err := s.a.st.SetPause(ctx, paused, by, string(identity.ViaWeb), reason, now, until)
	if err == nil {
		s.a.eng.Kick() // the pause watch interrupts running disruptive actions at once
	}
	return ps, err
}

func (s consoleStore) ResetBreaker(ctx context.Context, handler, scope, by string) (bool, error) {
	return s.a.st.ResetBreaker(ctx, store.BreakerKey{Handler: handler, Scope: scope}, by, string(identity.ViaWeb), s.a.o.Now())
}

func (s consoleStore) Drills(ctx context.Context, f store.DrillFilter) ([]store.DrillRun, string, error) {
	return s.a.st.ListDrillRuns(ctx, f)
}
