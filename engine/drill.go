package engine

import (
	"bytes"
	"context"
	"log/slog"
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

var drillLabel = []byte(`"` + alert.DrillLabel + `"`)

// claimedDrill reads the drill of a claimed action from its incident's stored alert, once per
// action and pass (readGuards). An alert that does not name the label is not decoded at all: the
// production path pays a byte search. An alert that does not decode is taken for no drill: the
// handler call fails it anyway (doAction), and no guard lets it through for being a drill.
func claimedDrill(c store.Claimed) drillOf {
	if !bytes.Contains(c.RawAlert, drillLabel) {
		return drillOf{}
	}
	a, err := c.DecodeAlert()
	if err != nil {
		return drillOf{}
	}
	return drillOf{run: a.Drill(), pageReal: a.DrillPageReal()}
}

// claimedDrills are the drills of the claimed actions, by action id (nil when none is a drill's).
// A label naming a run the store did not start is not a drill: a responder_drill label copied
// onto a real alert (by a relabelling, or by whoever holds the webhook token) must not send its
// pages to drills.page or spend the drills budget. When the runs cannot be read, no action is a
// drill's: a drill's page reaching the on-call is the safe mistake.
func claimedDrills(ctx context.Context, st guardStore, claimed []store.Claimed, log *slog.Logger) map[int64]drillOf {
	var drills map[int64]drillOf
	var runs []string
	for _, c := range claimed {
		if d := claimedDrill(c); d.run != "" {
			if drills == nil {
				drills = map[int64]drillOf{}
			}
			drills[c.ID] = d
			runs = append(runs, d.run)
		}
	}
	if drills == nil {
		return nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	known, err := st.knownDrillRuns(ctx, runs)
	if err != nil {
		log.Warn("could not read the drill runs; drill actions are taken for production ones", "err", err)
	}
	for id, d := range drills {
		if !known[d.run] {
			if err == nil {
				log.Warn("alert names an unknown drill run: not taken for a drill", "action_id", id, "drill", d.run)
			}
			delete(drills, id)
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
