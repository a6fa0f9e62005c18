package engine

import (
	"bytes"
	"context"
	"maps"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// Drills (issue 17): the actions of an incident whose alert carries alert.DrillLabel go down the
// same pipeline as any other, with two differences.
//   - Budgets: a drill's disruptive action spends Options.DrillBudget, never safety.budgets
//     (budgetsOf): a drill cannot starve production remediation, and production cannot hide a
//     drill's own runaway.
//   - Pages (drillPage): a notify action of a drill does not reach the real on-call unless the
//     drill says page: real (alert.DrillPageLabel). page.slack goes to Options.DrillPage (its
//     channel param replaced, recorded with the action's params); any other notify action, and
//     page.slack without a DrillPage, is recorded dry_run with reason drill and not sent.
//
// Every other guard (the kill switch, cooldowns, breakers, the storm guard, staleness, approval,
// dry run) applies to drills unchanged.

// slackPage is the handler drill pages are redirected through (notify/slack.PageName; the engine
// does not import the Slack client for one name: a test checks they agree).
const slackPage = "page.slack"

// The drills budget's fixed fields (Options.DrillBudget) and its default bound.
const (
	drillBudgetName   = "drills"
	drillBudgetMax    = 10
	drillBudgetWindow = time.Hour
)

// drillOf is what the guards know of a claimed action's drill, from its incident's alert.
type drillOf struct {
	run      string // the drill run id (the label's value); "" when the action is not a drill's
	pageReal bool   // the drill pages the real on-call (page: real)
}

var drillPageLabel = []byte(`"` + alert.DrillPageLabel + `"`)

// claimedDrill is the drill of a claimed action. Its run is the claim's Drill: the run id its
// incident's label names, only when the store started that run (store.actionDrill), so a
// responder_drill label copied onto a real alert (by a relabelling, or by whoever holds the
// webhook token) does not send its pages to drills.page or spend the drills budget. Only a
// drill's alert that names the page label is decoded, for page: real; one that does not decode
// pages as a drill's does.
func claimedDrill(c store.Claimed) drillOf {
	if c.Drill == "" {
		return drillOf{}
	}
	d := drillOf{run: c.Drill}
	if bytes.Contains(c.RawAlert, drillPageLabel) {
		if a, err := c.DecodeAlert(); err == nil {
			d.pageReal = a.DrillPageReal()
		}
	}
	return d
}

// claimedDrills are the drills of the claimed actions, by action id (nil when none is a drill's).
func claimedDrills(claimed []store.Claimed) map[int64]drillOf {
	var drills map[int64]drillOf
	for _, c := range claimed {
		if d := claimedDrill(c); d.run != "" {
			if drills == nil {
				drills = map[int64]drillOf{}
			}
			drills[c.ID] = d
		}
	}
	return drills
}

// budgetsOf are the budgets an action of drill d counts against: the drills budget alone for a
// drill, safety.budgets otherwise.
func (o *Options) budgetsOf(d drillOf) []Budget {
	if d.run != "" {
		return []Budget{o.DrillBudget}
	}
	return o.Budgets
}

// DrillBudgetOf is the drills budget as the engine counts it (name drills, every handler, one
// global scope) with at most limit actions per window; a zero limit or window takes the default, 10
// per 1h.
func DrillBudgetOf(limit int, window time.Duration) Budget {
	return drillBudgetDefaults(Budget{Max: limit, Window: window})
}

// drillBudgetDefaults gives the drills budget its fixed name, match and scope, and the default
// bound (10 per 1h) to a field left zero.
func drillBudgetDefaults(b Budget) Budget {
	b.Name, b.Match, b.Per = drillBudgetName, "*", "global"
	if b.Max <= 0 {
		b.Max = drillBudgetMax
	}
	if b.Window <= 0 {
		b.Window = drillBudgetWindow
	}
	return b
}

// drillPage: a notify action of a drill's incident that would page the real on-call does not,
// unless the drill says page: real. page.slack posts to drills.page instead (redirect); any other
// notify action is recorded dry_run, reason drill, with where it would have gone, and not sent.
//
// It comes right after build: it needs the built action to rebuild page.slack for drills.page,
// and every guard before it (the kill switch, the storm guard, the breaker) passes notify actions
// anyway, but for the cooldown, which holds a drill's page as any other. Before staleness and the
// dry-run cut: a page that is not sent needs no Check of its condition, and in a dry run (or
// shadow) it says drill, which is the reason it would not be sent when enforced either.
func drillPage(_ context.Context, in *guardInput) verdict {
	c := in.c
	if in.drill.run == "" || in.drill.pageReal || c.Class != vocab.ClassNotify {
		return passed
	}
	if c.Handler == slackPage && in.o.DrillPage != "" {
		return in.redirect(in.o.DrillPage)
	}
	return verdict{kind: refuse, state: vocab.StateDryRun, reason: vocab.ReasonDrill,
		result: "drill: " + c.Handler + " to " + c.Target + " not sent (drills.page)"}
}

// redirect rebuilds the action with its channel param set to channel. The params it runs with
// (in.rendered) are recorded on the action when it starts, so the API shows where the page went;
// its target stays the one its rule planned (its cooldown and slot keys are the rule's).
func (in *guardInput) redirect(channel string) verdict {
	params := maps.Clone(in.rendered)
	if params == nil {
		p, err := in.c.DecodeParams()
		if err != nil {
			return verdict{kind: refuse, state: vocab.StateFailed, reason: vocab.ReasonInternalError, err: err.Error()}
		}
		params = p
	}
	if params == nil {
		params = map[string]any{}
	}
	params["channel"] = channel
	h, ok := in.o.Handlers.Get(in.c.Handler)
	if !ok {
		return verdict{kind: refuse, state: vocab.StateFailed, reason: vocab.ReasonBadParam, err: "handler " + in.c.Handler + " is not registered"}
	}
	act, err := h.Build(handlers.Params(maps.Clone(params)))
	if err != nil {
		return verdict{kind: refuse, state: vocab.StateFailed, reason: vocab.ReasonBadParam, err: "drills.page " + channel + ": " + err.Error()}
	}
	in.act, in.rendered, in.drillTo = act, params, channel
	return passed
}
