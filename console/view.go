package console

import (
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// The view models: what the templates show, computed here so that the templates only print.

// kv is one label, annotation or detail field.
type kv struct {
	K, V string
	Link string // V as a link (annotations: runbook_url and dashboard_url only, when http(s))
}

// linkAnnotations are the annotations shown as links (when http(s)).
var linkAnnotations = map[string]bool{"runbook_url": true, "dashboard_url": true}

// incidentData is the incident page.
type incidentData struct {
	Inc         *Incident
	Labels      []kv
	Annotations []kv
	Runbook     string // runbook_url as a link, shown at the top
	Dashboard   string // dashboard_url as a link
	Source      string // the alert's generatorURL as a link
	Timeline    []auditRow
	Actions     []actionView
}

func (c *console) incidentView(inc *Incident, v *view) *incidentData {
	d := &incidentData{Inc: inc, Source: safeLink(inc.Alert.GeneratorURL)}
	for _, k := range slices.Sorted(maps.Keys(inc.Labels)) {
		d.Labels = append(d.Labels, kv{K: k, V: inc.Labels[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(inc.Alert.Annotations)) {
		a := kv{K: k, V: inc.Alert.Annotations[k]}
		if linkAnnotations[k] {
			a.Link = safeLink(a.V)
		}
		d.Annotations = append(d.Annotations, a)
	}
	d.Runbook = safeLink(inc.Alert.Annotations["runbook_url"])
	d.Dashboard = safeLink(inc.Alert.Annotations["dashboard_url"])
	// Oldest first: a timeline reads down.
	byAction := map[int64][]store.AuditEntry{}
	for _, e := range slices.Backward(inc.Audit) {
		d.Timeline = append(d.Timeline, newAuditRow(e))
		if e.ActionID != nil {
			byAction[*e.ActionID] = append(byAction[*e.ActionID], e)
		}
	}
	acts := slices.Clone(inc.Actions)
	slices.SortFunc(acts, func(a, b store.Action) int {
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	for _, a := range acts {
		d.Actions = append(d.Actions, c.actionView(a, byAction[a.ID], v))
	}
	return d
}

// actionView is one action: its row, its params, what its guards and approvers said.
type actionView struct {
	store.Action
	Params    string // JSON, indented (secrets already redacted by the Store)
	Verdicts  []string
	Approvals []string
	Awaiting  bool
	CanDecide bool
	ExpiresAt *time.Time // when an action awaiting approval expires (approvals.ttl)
	Expired   bool
	Secrets   bool // some params were redacted
}

// actionView builds one action's view from its row and its audit rows (oldest first).
func (c *console) actionView(a store.Action, audit []store.AuditEntry, v *view) actionView {
	av := actionView{Action: a, Awaiting: a.State == vocab.StateAwaitingApproval}
	if p, err := jsonText(a.Params, "  "); err == nil {
		av.Params = p
		av.Secrets = strings.Contains(p, `"<secret>"`)
	}
	av.CanDecide = av.Awaiting && v.CanDecide
	if av.Awaiting && c.o.ApprovalTTL > 0 {
		exp := a.CreatedAt.Add(c.o.ApprovalTTL)
		av.ExpiresAt, av.Expired = &exp, !v.Now.Before(exp)
	}
	for _, e := range audit {
		switch e.Kind {
		case store.AuditAction:
			av.Verdicts = append(av.Verdicts, verdict(e))
		case store.AuditApproval:
			av.Approvals = append(av.Approvals, fmt.Sprintf("%s: %v via %v (%s), %s", e.Actor, e.Detail["decision"], e.Detail["via"], e.Reason, stamp(e.At)))
		}
	}
	if len(av.Verdicts) == 0 && a.Reason != "" {
		// No audit row read (the actions page): the row's own reason and error.
		av.Verdicts = append(av.Verdicts, joinNonEmpty(": ", string(a.Reason), a.Error))
	}
	return av
}

// verdict is one audit row of an action's guards and outcome: the reason, then what the dry run
// evaluated (its guards' notes), then the error.
func verdict(e store.AuditEntry) string {
	s := e.Reason
	if st, ok := e.Detail["state"].(string); ok && st != "" && st != e.Reason {
		s = st + " (" + e.Reason + ")"
	}
	ev, _ := e.Detail["verdict"].(string)
	er, _ := e.Detail["error"].(string)
	return joinNonEmpty(": ", s, joinNonEmpty("; ", ev, er))
}

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

// auditRow is one audit row with its detail flattened into sorted fields.
type auditRow struct {
	store.AuditEntry
	Fields []kv
}

func newAuditRow(e store.AuditEntry) auditRow {
	r := auditRow{AuditEntry: e}
	for _, k := range slices.Sorted(maps.Keys(e.Detail)) {
		r.Fields = append(r.Fields, kv{K: k, V: detailValue(e.Detail[k])})
	}
	return r
}

// detailValue prints a detail value: a string as is, anything else as JSON.
func detailValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	s, err := jsonText(v, "")
	if err != nil {
		return fmt.Sprint(v)
	}
	return s
}

// jsonText is v as JSON text, indented by indent, not escaped for HTML: it is shown as text, and
// html/template escapes it (a label "<b>" reads "<b>", not "\u003cb\u003e").
func jsonText(v any, indent string) (string, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// stamp prints a time in UTC, to the second.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }

// human prints a duration to the second below an hour, to the minute above.
func human(d time.Duration) string {
	d = d.Abs()
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// timeOf takes a time.Time or a *time.Time (nil: false).
func timeOf(v any) (time.Time, bool) {
	switch t := v.(type) {
	case time.Time:
		return t, !t.IsZero()
	case *time.Time:
		if t != nil {
			return *t, !t.IsZero()
		}
	}
	return time.Time{}, false
}

// actionCtx is what the "action" template sees: the page and one action.
type actionCtx struct {
	View   *view
	Action actionView
}

// funcs are the templates' functions.
var funcs = template.FuncMap{
	"withView": func(v *view, a actionView) actionCtx { return actionCtx{View: v, Action: a} },
	// ts prints a time (time.Time or *time.Time) in UTC; "" for none.
	"ts": func(v any) string {
		if t, ok := timeOf(v); ok {
			return stamp(t)
		}
		return ""
	},
	// iso is a time for <time datetime>.
	"iso": func(v any) string {
		if t, ok := timeOf(v); ok {
			return t.UTC().Format(time.RFC3339)
		}
		return ""
	},
	// ago prints how long before now t was ("in 5m" when after).
	"ago": func(now time.Time, v any) string {
		t, ok := timeOf(v)
		switch {
		case !ok:
			return ""
		case t.After(now):
			return "in " + human(t.Sub(now))
		}
		return human(now.Sub(t)) + " ago"
	},
	// left prints the time from now to t ("0s" when past).
	"left": func(now time.Time, v any) string {
		t, ok := timeOf(v)
		if !ok || !t.After(now) {
			return "0s"
		}
		return human(t.Sub(now))
	},
	"human": human,
	// stateClass is the CSS class of a state (an incident's, an action's, a breaker's).
	"stateClass": func(s any) string { return "st-" + strings.ReplaceAll(fmt.Sprint(s), "_", "-") },
}
