package app

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/identity"
	"github.com/responder-sre/responder/source/alertmanager"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

func (a *App) buildHTTP() error {
	cfg := a.conf()
	wh, err := alertmanager.NewHandler(alertmanager.Options{
		Tokens:       cfg.WebhookTokens(),
		NoAuth:       a.o.NoAuth,
		MaxBodyBytes: int64(cfg.Webhook.MaxBodyBytes),
		MaxAlerts:    cfg.Limits.MaxAlertsPerRequest,
		Limits:       alertLimits(cfg.Limits),
		Emit:         a.bus.Publish,
		OnReject:     a.auditReject,
		Now:          a.o.Now,
		Logger:       a.log.With("component", "webhook"),
		Registerer:   a.reg,
	})
	if err != nil {
		return err
	}
	a.webhook = wh
	mux := http.NewServeMux()
	mux.Handle("/webhook/alertmanager", wh)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.HandleFunc("GET /livez", a.livez)
	mux.HandleFunc("GET /healthz", a.livez)
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("POST /-/reload", a.auth(accessAdmin, a.postReload))
	mux.Handle("GET /api/v1/incidents", a.auth(accessRead, a.listIncidents))
	mux.Handle("GET /api/v1/incidents/{id}", a.auth(accessRead, a.getIncident))
	mux.Handle("GET /api/v1/actions", a.auth(accessRead, a.listActions))
	mux.Handle("GET /api/v1/actions/{id}", a.auth(accessRead, a.getAction))
	mux.Handle("GET /api/v1/audit", a.auth(accessRead, a.listAudit))
	mux.Handle("GET /api/v1/status", a.auth(accessRead, a.status))
	mux.Handle("POST /api/v1/actions/{id}/approve", a.auth(accessAdmin, a.decide(store.DecisionApprove)))
	mux.Handle("POST /api/v1/actions/{id}/deny", a.auth(accessAdmin, a.decide(store.DecisionDeny)))
	mux.Handle("POST /api/v1/pause", a.auth(accessAdmin, a.pause))
	mux.Handle("POST /api/v1/resume", a.auth(accessAdmin, a.resume))
	mux.Handle("POST /api/v1/breakers/{handler}/{scope}/reset", a.auth(accessAdmin, a.resetBreaker))
	mux.Handle("GET /api/v1/dead-letters", a.auth(accessRead, a.listDeadLetters))
	mux.Handle("GET /api/v1/dead-letters/{id}", a.auth(accessRead, a.getDeadLetter))
	mux.Handle("POST /api/v1/dead-letters/replay", a.auth(accessAdmin, a.postReplayDeadLetters))
	mux.Handle("POST /api/v1/dead-letters/{id}/replay", a.auth(accessAdmin, a.postReplayDeadLetter))
	mux.Handle("GET /api/v1/drills", a.auth(accessRead, a.listDrills))
	mux.Handle("GET /api/v1/drills/{id}", a.auth(accessRead, a.getDrill))
	mux.Handle("POST /api/v1/drills", a.auth(accessAdmin, a.postDrill))
	mux.Handle("POST /api/v1/drills/{id}/approve/{action_id}", a.auth(accessAdmin, a.approveDrillAction))
	mux.Handle("POST /api/v1/drills/{id}/finish", a.auth(accessAdmin, a.finishDrill))
	if a.slack != nil {
		// Authenticated by Slack's request signature (slack.signing_secret_file), not by our tokens.
		mux.Handle("/slack/commands", a.slack.CommandsHandler())
		mux.Handle("/slack/interactions", a.slack.InteractionsHandler())
	}
	if err := a.mountConsole(mux); err != nil {
		return err
	}
	mux.Handle("/api/", a.auth(accessRead, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API endpoint: "+r.Method+" "+r.URL.Path)
	}))
	a.mux = mux
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	return nil
}

// auditReject records an alert the webhook refused (best effort: the rest of the group is accepted).
func (a *App) auditReject(ctx context.Context, al alert.Alert, err *alert.InvalidError) {
	actor := "webhook"
	if al.Source == alert.SourceProbe {
		actor = "probe"
	}
	// The labels are clipped: the alert may have been rejected for their size.
	e := store.AuditInsert{At: a.o.Now(), Kind: store.AuditAlertRejected, Actor: actor, Reason: err.Reason,
		Detail: map[string]any{"detail": err.Detail, "labels": clipLabels(al.Labels), "status": al.Status, "fingerprint": al.Fingerprint}}
	// Bounded: a store outage must not hold Alertmanager's request (the alerts are on the bus).
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if aerr := a.st.Audit(ctx, e); aerr != nil {
		a.log.Warn("could not audit a rejected alert", "reason", err.Reason, "err", aerr)
	}
}

func (a *App) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	checks := map[string]string{}
	ready := true
	check := func(name string, err error) {
		if err != nil {
			// /readyz is unauthenticated: the details (hosts, users) go to the log, not the answer.
			a.log.Warn("not ready", "check", name, "err", err)
			ready = false
			checks[name] = readyzDetail(err)
			return
		}
		checks[name] = "ok"
	}
	check("bus", a.bus.Ready(ctx))
	// The store is reported, never required: intake needs only the bus (the alerts wait there while
	// the database is down or failing over), and a pod taken out of its Service would turn
	// Alertmanager's deliveries into retries that pile up.
	switch err := cmp.Or(a.st.Ping(ctx), a.bus.Processing()); {
	case err != nil:
		a.log.Warn("store degraded", "check", "database", "err", err)
		checks["database"] = storeDegraded
	default:
		checks["database"] = "ok"
	}
	if a.eng.Rules() == nil {
		check("rules", errors.New("no rules loaded"))
	} else {
		check("rules", nil)
	}
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, apiReady{Ready: ready, Checks: checks})
}

func (a *App) postReload(w http.ResponseWriter, r *http.Request) {
	res, err := a.reloadConfig(r.Context())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	changed := res.changed
	if changed == nil {
		changed = []string{} // never null
	}
	writeJSON(w, http.StatusOK, apiReloaded{Status: "reloaded", Rules: len(res.rules.Rules), RuleHash: res.rules.Hash,
		Changed: changed})
}

func page(r *http.Request) (store.Page, error) {
	q := r.URL.Query()
	p := store.Page{Cursor: q.Get("cursor")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			return p, errors.New("limit must be a positive integer")
		}
		p.Limit = n
	}
	return p, nil
}

type list[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

func (a *App) listIncidents(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	q := r.URL.Query()
	items, next, err := a.st.ListIncidents(r.Context(), store.IncidentFilter{State: vocab.IncidentState(q.Get("state")), Rule: q.Get("rule"),
		Drill: q.Get("drill"), Page: p})
	a.writeList(w, items, next, err)
}

func (a *App) listActions(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	q := r.URL.Query()
	f := store.ActionFilter{State: vocab.State(q.Get("state")), Rule: q.Get("rule"), Drill: q.Get("drill"), Page: p}
	if s := q.Get("incident"); s != "" {
		if f.IncidentID, err = strconv.ParseInt(s, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, "incident must be an integer id")
			return
		}
	}
	items, next, err := a.st.ListActions(r.Context(), f)
	a.writeList(w, items, next, err)
}

func (a *App) listAudit(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f := store.AuditFilter{Page: p}
	if s := r.URL.Query().Get("incident"); s != "" {
		if f.IncidentID, err = strconv.ParseInt(s, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, "incident must be an integer id")
			return
		}
	}
	items, next, err := a.st.ListAudit(r.Context(), f)
	a.writeList(w, items, next, err)
}

func writeListOf[T any](a *App, w http.ResponseWriter, items []T, next string, err error) {
	if err != nil {
		a.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, list[T]{Items: items, NextCursor: next})
}

func (a *App) writeList(w http.ResponseWriter, items any, next string, err error) {
	switch v := items.(type) {
	case []store.Incident:
		writeListOf(a, w, v, next, err)
	case []store.Action:
		for i := range v {
			redactParams(&v[i])
		}
		writeListOf(a, w, v, next, err)
	case []store.AuditEntry:
		writeListOf(a, w, v, next, err)
	}
}

func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, errors.New("id must be a positive integer")
	}
	return id, nil
}

func (a *App) getIncident(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	inc, err := a.st.GetIncident(r.Context(), id)
	if err != nil {
		a.apiError(w, err)
		return
	}
	for i := range inc.Actions {
		redactParams(&inc.Actions[i])
	}
	writeJSON(w, http.StatusOK, inc)
}

func (a *App) getAction(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	act, err := a.st.GetAction(r.Context(), id)
	if err != nil {
		a.apiError(w, err)
		return
	}
	redactParams(act)
	writeJSON(w, http.StatusOK, act)
}

func (a *App) status(w http.ResponseWriter, r *http.Request) {
	set := a.eng.Rules()
	// A read that fails is a 503 naming it, never an empty answer: "no breakers" and "no backlog"
	// would be lies an operator acts on.
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	pending, err := a.bus.Pending(ctx)
	if err != nil {
		a.log.Warn("api status: bus read failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "status: read the bus backlog: "+err.Error())
		return
	}
	breakers, err := a.st.Breakers(ctx)
	if err != nil {
		a.log.Warn("api status: breakers read failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "status: read the circuit breakers: "+err.Error())
		return
	}
	if breakers == nil {
		breakers = []store.Breaker{}
	}
	ps, err := a.st.Pause(ctx)
	if err != nil {
		a.apiError(w, err)
		return
	}
	approvals, err := a.st.PendingApprovals(ctx)
	if err != nil {
		a.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, apiStatus{
		Paused:           a.conf().Safety.Paused || ps.Active(a.o.Now()),
		Pause:            ps,
		ApprovalsPending: approvals,
		DryRun:           a.dryRun(),
		Rules:            len(set.Rules),
		RuleHash:         set.Hash,
		Version:          a.o.Version,
		BusPending:       pending,
		Breakers:         breakers,
		Budgets:          a.budgetStatus(ctx),
		Leader:           a.leaderStatus(),
		LastReload:       a.reload.last(),
	})
}

func (a *App) apiError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not found")
	case strings.Contains(err.Error(), "invalid cursor"):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		a.log.Warn("api: store error", "err", err)
		writeError(w, http.StatusServiceUnavailable, "database unavailable")
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// sensitiveHeader matches header names whose values are credentials.
var sensitiveHeader = regexp.MustCompile(`(?i)(authorization|cookie|token|secret|password|api[-_]?key|signature)`)

// redactParams hides credential-like header values of an action's params in API answers (the
// stored params keep them: the executor needs them).
func redactParams(act *store.Action) {
	hs, ok := act.Params["headers"].(map[string]any)
	if !ok {
		return
	}
	red := make(map[string]any, len(hs))
	for k, v := range hs {
		if sensitiveHeader.MatchString(k) {
			v = "<secret>"
		}
		red[k] = v
	}
	act.Params = maps.Clone(act.Params)
	act.Params["headers"] = red
}

// decisionBody is the body of approve/deny and of a breaker reset (optional): who decides. With
// the shared admin token (api.token) the caller names the human ("api:<by>"; deprecated); a
// named token decides as itself, and a "by" naming anyone else is refused. Two-person approval
// counts distinct names.
type decisionBody struct {
	By string `json:"by"`
}

var approverName = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

func (a *App) decide(decision string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		var b decisionBody
		if err := decodeOptional(r, &b); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		by, named, err := actorOf(r, b.By)
		switch {
		case err != nil:
			writeError(w, http.StatusBadRequest, err.Error())
			return
		case named:
		case b.By == "":
			by = "api"
		case !approverName.MatchString(b.By):
			writeError(w, http.StatusBadRequest, "by must be 1 to 64 letters, digits or ._@-")
			return
		default:
			by = "api:" + b.By // the shared admin token: the caller's word (deprecated)
		}
		res, err := a.eng.Decide(r.Context(), id, by, decision, string(identity.ViaAPI))
		switch {
		case errors.Is(err, store.ErrAnonymousApprover):
			writeError(w, http.StatusBadRequest, err.Error()+` (body {"by": "name"})`)
			return
		case errors.Is(err, store.ErrNotAwaiting):
			writeJSON(w, http.StatusConflict, apiDecisionConflict{Error: err.Error(), Action: redacted(res.Action)})
			return
		case err != nil:
			a.apiError(w, err)
			return
		}
		a.eng.Kick()
		writeJSON(w, http.StatusOK, apiDecision{Replay: res.Replay, Action: redacted(res.Action)})
	}
}

// engineApprover is the Slack integration's Approver: the engine, built after it (the engine's
// handlers include Slack's page handler).
type engineApprover struct{ a *App }

func (x engineApprover) Decide(ctx context.Context, actionID int64, approver, decision, via string) (store.DecisionResult, error) {
	return x.a.eng.Decide(ctx, actionID, approver, decision, via)
}

type pauseBody struct {
	Duration string `json:"duration"`
	Reason   string `json:"reason"`
	By       string `json:"by"`
}

func (a *App) pause(w http.ResponseWriter, r *http.Request) {
	var b pauseBody
	if err := decodeOptional(r, &b); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if d := r.URL.Query().Get("duration"); d != "" {
		b.Duration = d
	}
	now := a.o.Now()
	var until *time.Time
	if b.Duration != "" {
		d, err := handlers.ParseDuration(b.Duration)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "duration must be a positive duration like 30m")
			return
		}
		u := now.Add(d)
		until = &u
	}
	a.setPause(w, r, true, b, until)
}

func (a *App) resume(w http.ResponseWriter, r *http.Request) {
	var b pauseBody
	if err := decodeOptional(r, &b); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a.setPause(w, r, false, b, nil)
}

func (a *App) setPause(w http.ResponseWriter, r *http.Request, paused bool, b pauseBody, until *time.Time) {
	by, named, err := actorOf(r, b.By)
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case named:
	case b.By != "":
		by = "api:" + b.By
	default:
		by = "api"
	}
	ps, err := a.st.SetPause(r.Context(), paused, by, string(identity.ViaAPI), b.Reason, a.o.Now(), until)
	if err != nil {
		a.apiError(w, err)
		return
	}
	a.log.Warn("kill switch changed", "paused", paused, "by", by, "reason", b.Reason, "until", until)
	a.eng.Kick()
	// "paused" is what is in force: safety.paused in the config pauses this replica whatever the row says.
	cfgPaused := a.conf().Safety.Paused
	writeJSON(w, http.StatusOK, apiPause{Paused: cfgPaused || ps.Active(a.o.Now()), Pause: ps, ConfigPaused: cfgPaused})
}

// decodeOptional decodes a small JSON body if there is one.
func decodeOptional(r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	return nil
}

func redacted(act *store.Action) *store.Action {
	if act != nil {
		redactParams(act)
	}
	return act
}

func (a *App) leaderStatus() apiLeader {
	token, leading := a.elector.Leading()
	return apiLeader{Replica: a.owner, Leading: leading, Token: token}
}

// budgetStatus is every budget, safety.budgets then the drills budget, with the most any scope
// used in its window ("unavailable" when that could not be read); never nil.
func (a *App) budgetStatus(ctx context.Context) []apiBudget {
	out := []apiBudget{}
	l := a.cur()
	for _, b := range append(slices.Clip(l.budgets), drillBudget(l.cfg)) {
		used, err := a.st.BudgetMostUsed(ctx, b.Name, b.Window, a.o.Now())
		st := apiBudget{Name: b.Name, Match: b.Match, Per: b.Per, Max: b.Max, Window: b.Window.String(), MostUsed: used}
		if err != nil {
			st.Error = "unavailable"
		}
		out = append(out, st)
	}
	return out
}

func (a *App) resetBreaker(w http.ResponseWriter, r *http.Request) {
	var b decisionBody
	if err := decodeOptional(r, &b); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	by, named, err := actorOf(r, b.By)
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case named:
	case b.By != "" && approverName.MatchString(b.By):
		by = "api:" + b.By
	default:
		by = "api"
	}
	k := store.BreakerKey{Handler: r.PathValue("handler"), Scope: r.PathValue("scope")}
	ok, err := a.st.ResetBreaker(r.Context(), k, by, string(identity.ViaAPI), a.o.Now())
	if err != nil {
		a.apiError(w, err)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "no breaker for handler "+k.Handler+" and scope "+k.Scope)
		return
	}
	a.log.Warn("circuit breaker reset by hand", "handler", k.Handler, "scope", k.Scope, "by", by)
	writeJSON(w, http.StatusOK, apiBreaker{Handler: k.Handler, Scope: k.Scope, State: store.BreakerClosed})
}
