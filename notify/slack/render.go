package slack

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/slack-go/slack"

	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// Button action ids; the button's value is the responder action id.
const (
	ButtonApprove = "responder_approve"
	ButtonDeny    = "responder_deny"
)

// keyLabels are shown first, in this order, when present.
var keyLabels = []string{"severity", "namespace", "pod", "deployment", "statefulset", "service", "job", "instance", "cluster", "node", "team"}

const (
	maxLabels        = 10
	maxActionsShown  = 20
	maxHeader        = 150
	maxSectionText   = 2900
	phaseOrderUnseen = 9
)

var phaseOrder = map[vocab.Phase]int{vocab.PhaseActions: 0, vocab.PhaseEscalate: 1, vocab.PhaseOnResolved: 2, vocab.PhaseResolve: 3}

// stateEmoji marks each action state.
var stateEmoji = map[vocab.State]string{
	vocab.StatePlanned:          ":white_circle:",
	vocab.StateAwaitingApproval: ":raised_hand:",
	vocab.StateApproved:         ":large_blue_circle:",
	vocab.StateDenied:           ":no_entry_sign:",
	vocab.StateExpired:          ":hourglass:",
	vocab.StateRunning:          ":arrows_counterclockwise:",
	vocab.StateSucceeded:        ":white_check_mark:",
	vocab.StateFailed:           ":x:",
	vocab.StateUnknown:          ":grey_question:",
	vocab.StateSkipped:          ":fast_forward:",
	vocab.StateDryRun:           ":test_tube:",
	vocab.StateVerifying:        ":mag:",
}

// finished reports whether an action state is final.
func finished(state vocab.State) bool {
	return state.Final()
}

// rendered is an incident message.
type rendered struct {
	Text   string // notification fallback
	Blocks []slack.Block
}

// hash identifies what a message shows: equal hashes need no chat.update.
func (r rendered) hash() string {
	b, _ := json.Marshal(struct {
		T string
		B []slack.Block
	}{r.Text, r.Blocks})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

// sortActions orders actions as they run: by phase, then step.
func sortActions(acts []store.Action) {
	slices.SortFunc(acts, func(a, b store.Action) int {
		pa, ok := phaseOrder[a.Phase]
		if !ok {
			pa = phaseOrderUnseen
		}
		pb, ok := phaseOrder[b.Phase]
		if !ok {
			pb = phaseOrderUnseen
		}
		return cmp.Or(cmp.Compare(pa, pb), cmp.Compare(a.Step, b.Step), cmp.Compare(a.ID, b.ID))
	})
}

// renderIncident renders the incident message: title, state, severity, key labels, summary,
// links, the actions with their states and ids (Approve and Deny buttons on those awaiting
// approval) and, once resolved, time to detect and time to recover.
func renderIncident(inc store.SlackIncident, acts []store.Action) rendered {
	sortActions(acts)
	i := inc.Incident
	al := inc.Alert
	name := cmp.Or(i.AlertName, al.Name)
	icon := ":rotating_light:"
	switch i.State {
	case vocab.IncidentResolved:
		icon = ":white_check_mark:"
	case vocab.IncidentSuppressed:
		icon = ":mute:"
	}
	drill := drillOf(inc)
	title := i.Rule + ": " + name
	if drill != "" {
		title = "DRILL · " + title
	}
	var blocks []slack.Block
	blocks = append(blocks, slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, truncate(title, maxHeader), true, false)))
	if drill != "" {
		blocks = append(blocks, slack.NewContextBlock("drill", md(drillNotice(drill, al.DrillPageReal()))))
	}

	fields := []*slack.TextBlockObject{
		md(fmt.Sprintf("*State*\n%s %s", icon, i.State)),
		md("*Severity*\n" + esc(labelOr(i.Labels, "severity", "none"))),
		md("*Started*\n" + slackDate(i.StartsAt)),
		md(fmt.Sprintf("*Incident*\n#%d", i.ID)),
	}
	blocks = append(blocks, slack.NewSectionBlock(nil, fields, nil))

	if lbl := labelLine(i.Labels); lbl != "" {
		blocks = append(blocks, slack.NewContextBlock("labels", md(lbl)))
	}
	summary := cmp.Or(al.Annotations["summary"], al.Annotations["description"], al.Annotations["message"])
	if summary != "" {
		blocks = append(blocks, slack.NewSectionBlock(md(truncate(esc(summary), maxSectionText)), nil, nil))
	}
	if links := linkLine(al.GeneratorURL, al.Annotations); links != "" {
		blocks = append(blocks, slack.NewContextBlock("links", md(links)))
	}

	blocks = append(blocks, slack.NewDividerBlock())
	if len(acts) == 0 {
		blocks = append(blocks, slack.NewSectionBlock(md("_No actions planned._"), nil, nil))
	}
	for n, a := range acts {
		if n == maxActionsShown {
			blocks = append(blocks, slack.NewContextBlock("more", md(fmt.Sprintf("… and %d more actions: `/responder list`", len(acts)-n))))
			break
		}
		blocks = append(blocks, slack.NewSectionBlock(md(truncate(actionLine(a), maxSectionText)), nil, nil))
		if a.State == vocab.StateAwaitingApproval {
			if a.Evidence != "" { // what the handler saw, for the approver
				blocks = append(blocks, slack.NewContextBlock("evidence_"+strconv.FormatInt(a.ID, 10), md(truncate(esc(a.Evidence), maxSectionText))))
			}
			id := strconv.FormatInt(a.ID, 10)
			approve := slack.NewButtonBlockElement(ButtonApprove, id, slack.NewTextBlockObject(slack.PlainTextType, "Approve "+id, false, false))
			approve.Style = slack.StylePrimary
			deny := slack.NewButtonBlockElement(ButtonDeny, id, slack.NewTextBlockObject(slack.PlainTextType, "Deny "+id, false, false))
			deny.Style = slack.StyleDanger
			blocks = append(blocks, slack.NewActionBlock("responder_action_"+id, approve, deny))
		}
	}
	if i.State == vocab.IncidentResolved && i.ResolvedAt != nil {
		blocks = append(blocks, slack.NewDividerBlock(), slack.NewSectionBlock(md(resolutionText(i)), nil, nil))
	}
	text := fmt.Sprintf("%s[%s] %s: %s (incident #%d)", drillPrefix(drill), strings.ToUpper(string(i.State)), i.Rule, name, i.ID)
	return rendered{Text: text, Blocks: blocks}
}

// drillOf returns the run id of the drill that caused incident c, "" when no drill did: the
// store's drill (a run it started), never the label alone, so a responder_drill label copied onto
// a real alert does not send its message to the drills channel.
func drillOf(c store.SlackIncident) string {
	return c.Drill
}

// drillPrefix starts the text of a drill's messages ("" when run is "": not a drill).
func drillPrefix(run string) string {
	if run == "" {
		return ""
	}
	return "[DRILL " + run + "] "
}

// drillNotice is the context block of a drill's incident message.
func drillNotice(run string, pageReal bool) string {
	n := fmt.Sprintf(":construction: *DRILL* `%s`: a disaster-recovery drill caused this incident; it is not an outage.", esc(run))
	if pageReal {
		n += " Its pages go to the real on-call (the drill says `page: real`)."
	}
	return n
}

// actionLine is one action: state, id, handler, target, and why.
func actionLine(a store.Action) string {
	emoji := cmp.Or(stateEmoji[a.State], ":white_circle:")
	line := fmt.Sprintf("%s `%d` *%s* on `%s`: %s", emoji, a.ID, esc(a.Handler), esc(a.Target), a.State)
	if a.Phase != vocab.PhaseActions {
		line += " (" + string(a.Phase) + ")"
	}
	if a.Reason != "" && string(a.Reason) != string(a.State) {
		line += " · " + esc(string(a.Reason))
	}
	if a.ApprovedBy != "" {
		line += " · by " + approvers(a.ApprovedBy)
	}
	if a.State == vocab.StateVerifying && a.VerifyDeadline != nil { // the rule's verify is awaited
		line += " · until " + a.VerifyDeadline.UTC().Format("15:04:05") + " UTC"
	}
	if a.Error != "" && (a.State == vocab.StateFailed || a.State == vocab.StateUnknown || a.State == vocab.StateExpired) {
		line += "\n> " + esc(truncate(a.Error, 300))
	}
	return line
}

// approvers renders "slack:U1,api:bob" with Slack mentions for Slack users.
func approvers(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if u, ok := strings.CutPrefix(p, "slack:"); ok && reUserID(u) {
			parts[i] = "<@" + u + ">"
		} else {
			parts[i] = esc(p)
		}
	}
	return strings.Join(parts, ", ")
}

func reUserID(s string) bool {
	if len(s) < 3 || len(s) > 21 || (s[0] != 'U' && s[0] != 'W') {
		return false
	}
	for _, r := range s[1:] {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// resolutionText is the resolution notice: time to detect (alert start to incident) and time to
// recover (alert start to resolution), the runbook's RTO check.
func resolutionText(i store.Incident) string {
	ttd := max(i.CreatedAt.Sub(i.StartsAt), 0)
	ttr := max(i.ResolvedAt.Sub(i.StartsAt), 0)
	return fmt.Sprintf(":white_check_mark: *Resolved* %s · time to detect *%s* · time to recover *%s*",
		slackDate(*i.ResolvedAt), fmtDuration(ttd), fmtDuration(ttr))
}

func labelLine(labels map[string]string) string {
	var parts []string
	seen := map[string]bool{"alertname": true}
	for _, k := range keyLabels {
		if v, ok := labels[k]; ok && len(parts) < maxLabels {
			parts = append(parts, fmt.Sprintf("`%s=%s`", esc(k), esc(truncate(v, 80))))
			seen[k] = true
		}
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if !seen[k] && len(parts) < maxLabels {
			parts = append(parts, fmt.Sprintf("`%s=%s`", esc(k), esc(truncate(labels[k], 80))))
		}
	}
	return strings.Join(parts, "  ")
}

func linkLine(generatorURL string, ann map[string]string) string {
	var parts []string
	if l := link(generatorURL, "Source"); l != "" {
		parts = append(parts, l)
	}
	if l := link(ann["runbook_url"], "Runbook"); l != "" {
		parts = append(parts, l)
	}
	if l := link(ann["dashboard_url"], "Dashboard"); l != "" {
		parts = append(parts, l)
	}
	return strings.Join(parts, " · ")
}

// link renders an http(s) URL as a Slack link; anything else is dropped.
func link(raw, label string) string {
	u, err := url.Parse(raw)
	if raw == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	s := strings.NewReplacer("|", "%7C", "<", "%3C", ">", "%3E").Replace(u.String())
	return "<" + s + "|" + label + ">"
}

func md(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}

// esc escapes Slack's control characters in text from alerts and rules.
func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func labelOr(labels map[string]string, k, def string) string {
	if v := labels[k]; v != "" {
		return v
	}
	return def
}

// slackDate renders t in each reader's time zone, with a UTC fallback.
func slackDate(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time_secs}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04:05 UTC"))
}

func fmtDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d < time.Second {
		return "0s"
	}
	return model.Duration(d).String()
}
