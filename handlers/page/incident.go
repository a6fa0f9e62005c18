package page

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// Incidents reads what page.teams and page.email show of an incident besides its alert: the rule
// and the incident's other actions with their states. *store.Store implements it; serve passes
// the store in handlers.Env.Clients. Without one (rules check, rules test) the message names the
// incident only.
type Incidents interface {
	ListActions(ctx context.Context, f store.ActionFilter) ([]store.Action, string, error)
}

var _ Incidents = (*store.Store)(nil)

// Statuses of the incident a notification tells about: a transition of the incident.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// Bounds of what a notification shows of an incident.
const (
	maxActionsShown = 10
	maxLabelsShown  = 10
	maxFactValue    = 200
	maxTitle        = 250
	maxText         = 4000
	maxLinks        = 6
	// incidentReadTimeout bounds the read of the incident's actions: a slow store delays a page
	// by at most this, and the page goes out without them.
	incidentReadTimeout = 3 * time.Second
)

// keyLabels are shown first, in this order, when present (as in the Slack incident message).
var keyLabels = []string{"severity", "namespace", "pod", "deployment", "statefulset", "service", "job", "instance", "cluster", "node", "team"}

var phaseOrder = map[vocab.Phase]int{vocab.PhaseActions: 0, vocab.PhaseEscalate: 1, vocab.PhaseOnResolved: 2, vocab.PhaseResolve: 3}

// phaseRank orders phases as they run; an unknown phase last.
func phaseRank(p vocab.Phase) int {
	if r, ok := phaseOrder[p]; ok {
		return r
	}
	return len(phaseOrder)
}

// incidentInfo is what a notification says about its incident beyond the alert.
type incidentInfo struct {
	ID      int64
	Rule    string        // "" when unknown
	Actions []actionState // the incident's other actions, in running order, at most maxActionsShown
	More    int           // actions not shown
}

// actionState is one action of the incident as a notification shows it.
type actionState struct {
	ID      int64
	Phase   vocab.Phase
	Handler string
	Target  string
	State   vocab.State
	Reason  vocab.Reason
}

// line is the action's state and, when it says more, its reason: "failed (pdb_blocked)".
func (a actionState) line() string {
	s := string(a.State)
	if a.Reason != "" && string(a.Reason) != s {
		s += " (" + string(a.Reason) + ")"
	}
	return s
}

// name is the action's id, handler and phase when not the rule's actions: "#12 k8s.restart_pod".
func (a actionState) name() string {
	s := "#" + strconv.FormatInt(a.ID, 10) + " " + a.Handler
	if a.Phase != vocab.PhaseActions && a.Phase != "" {
		s += " (" + string(a.Phase) + ")"
	}
	return s
}

// readIncident reads the incident of inv from src (nil: none), bounded by incidentReadTimeout. A
// failed read is logged and the notification goes out without the actions.
func readIncident(ctx context.Context, src Incidents, inv handlers.Invocation, log *slog.Logger) incidentInfo {
	info := incidentInfo{ID: inv.IncidentID}
	if src == nil || inv.IncidentID == 0 {
		return info
	}
	rctx, cancel := context.WithTimeout(ctx, incidentReadTimeout)
	defer cancel()
	acts, _, err := src.ListActions(rctx, store.ActionFilter{IncidentID: inv.IncidentID, Page: store.Page{Limit: store.MaxLimit}})
	if err != nil {
		log.WarnContext(ctx, "could not read the incident's actions; the notification goes out without them",
			"incident_id", inv.IncidentID, "err", err)
		return info
	}
	slices.SortFunc(acts, func(a, b store.Action) int {
		return cmp.Or(cmp.Compare(phaseRank(a.Phase), phaseRank(b.Phase)), cmp.Compare(a.Step, b.Step), cmp.Compare(a.ID, b.ID))
	})
	for _, a := range acts {
		if a.ID == inv.ActionID {
			info.Rule = a.Rule
			continue // the notification itself
		}
		info.Rule = cmp.Or(info.Rule, a.Rule)
		if len(info.Actions) == maxActionsShown {
			info.More++
			continue
		}
		info.Actions = append(info.Actions, actionState{ID: a.ID, Phase: a.Phase, Handler: a.Handler, Target: a.Target, State: a.State, Reason: a.Reason})
	}
	return info
}

// label is one label as a notification shows it.
type label struct{ Name, Value string }

// shownLabels are the alert's labels worth showing: the key labels first, then the rest sorted,
// at most maxLabelsShown, without alertname (the title has it), values cut to maxFactValue.
func shownLabels(labels map[string]string) []label {
	var out []label
	seen := map[string]bool{alert.NameLabel: true}
	add := func(k string) {
		if v, ok := labels[k]; ok && !seen[k] && len(out) < maxLabelsShown {
			out = append(out, label{k, truncate(v, maxFactValue)})
		}
		seen[k] = true
	}
	for _, k := range keyLabels {
		add(k)
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		add(k)
	}
	return out
}

// namedLink is a named http(s) link.
type namedLink struct{ Title, URL string }

// shownLinks are the alert's links (its source, the runbook_url and dashboard_url annotations)
// then the rule's, each only when it is an absolute http(s) URL, at most maxLinks, none twice.
func shownLinks(a alert.Alert, extra []string) []namedLink {
	var out []namedLink
	seen := map[string]bool{}
	add := func(title, raw string) {
		u, err := url.Parse(strings.TrimSpace(raw))
		if raw == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(out) == maxLinks {
			return
		}
		s := u.String()
		if seen[s] {
			return
		}
		seen[s] = true
		out = append(out, namedLink{title, s})
	}
	add("Runbook", a.Annotations["runbook_url"])
	add("Dashboard", a.Annotations["dashboard_url"])
	add("Source", a.GeneratorURL)
	for _, l := range extra {
		if u, err := url.Parse(l); err == nil {
			add(u.Hostname(), l)
		}
	}
	return out
}

// alertSummary is what the alert says of itself: its summary, description or message annotation.
func alertSummary(a alert.Alert) string {
	return cmp.Or(a.Annotations["summary"], a.Annotations["description"], a.Annotations["message"])
}

// alertName is the alert's name, or what stands for it.
func alertName(a alert.Alert, info incidentInfo) string {
	switch {
	case a.Name != "":
		return a.Name
	case info.Rule != "":
		return info.Rule
	case info.ID != 0:
		return fmt.Sprintf("incident #%d", info.ID)
	}
	return "alert"
}

// oneLine turns text into one line: runs of white space and control characters (line breaks
// included) become one space.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
}

func parseStatus(s string) (string, error) {
	switch s {
	case StatusFiring, StatusResolved:
		return s, nil
	}
	return "", fmt.Errorf("status %q is neither firing nor resolved", s)
}

// resolvedParams turns the params of a firing notification that was sent into those of its
// resolved one; none for a resolved notification.
func resolvedParams(sent handlers.Params) (handlers.Params, bool) {
	if s, _ := sent["status"].(string); s == StatusResolved {
		return nil, false
	}
	p := maps.Clone(sent)
	p["status"] = StatusResolved
	return p, true
}

// maxSentKeys bounds the idempotency keys a handler remembers.
const maxSentKeys = 4096

// sentKeys remembers the idempotency keys of the notifications a handler delivered (the server
// took them: 2xx, 250), with what Do answered, so that running the same action again in this
// process answers that instead of posting a second time. The oldest are forgotten past
// maxSentKeys.
type sentKeys struct {
	mu    sync.Mutex
	seen  map[string]string
	order []string
}

func (s *sentKeys) get(key string) (string, bool) {
	if key == "" {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.seen[key]
	return d, ok
}

func (s *sentKeys) add(key, detail string) {
	if key == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]string{}
	}
	if _, ok := s.seen[key]; ok {
		return
	}
	if len(s.order) == maxSentKeys {
		delete(s.seen, s.order[0])
		s.order = s.order[1:]
	}
	s.seen[key] = detail
	s.order = append(s.order, key)
}
