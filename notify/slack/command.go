package slack

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/identity"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// Verbs of /responder.
const (
	VerbApprove = "approve"
	VerbDeny    = "deny"
	VerbList    = "list"
	VerbStatus  = "status"
	VerbPause   = "pause"
	VerbResume  = "resume"
	VerbHelp    = "help"
)

// Limits of what a command may carry.
const (
	maxCommandText = 2000
	maxReason      = 500
	// MaxPause bounds `pause DURATION`; an open-ended pause is `pause` alone.
	MaxPause = 30 * 24 * time.Hour
)

// Command is a parsed /responder command.
type Command struct {
	Verb     string
	ActionID int64         // approve, deny
	Duration time.Duration // pause; 0 = until resumed
	Reason   string        // deny, pause
}

// Usage is the help text of /responder.
const Usage = "*/responder* commands:\n" +
	"• `approve ID`: approve action ID (approvers only)\n" +
	"• `deny ID [reason]`: deny action ID (approvers only)\n" +
	"• `list`: open incidents and actions awaiting approval\n" +
	"• `status`: kill switch, pending approvals, open breakers, budgets\n" +
	"• `pause [DURATION] [reason]`: turn the kill switch on, e.g. `pause 30m deploy` (approvers only)\n" +
	"• `resume`: turn it off (approvers only)\n" +
	"• `help`: this text"

// ParseCommand parses the text of /responder (what follows the command name). An empty text is
// help. Errors are meant for the user who typed it.
func ParseCommand(text string) (Command, error) {
	if len(text) > maxCommandText {
		return Command{}, fmt.Errorf("the command is longer than %d bytes", maxCommandText)
	}
	if !utf8.ValidString(text) {
		return Command{}, errors.New("the command is not valid UTF-8")
	}
	fields := strings.Fields(text)
	if len(fields) == 0 {
		return Command{Verb: VerbHelp}, nil
	}
	c := Command{Verb: strings.ToLower(fields[0])}
	args := fields[1:]
	rest := func(from int) string {
		if len(args) <= from {
			return ""
		}
		return truncate(strings.Join(args[from:], " "), maxReason)
	}
	switch c.Verb {
	case VerbApprove, VerbDeny:
		if len(args) == 0 {
			return Command{}, fmt.Errorf("usage: `%s ID`", c.Verb)
		}
		id, err := parseID(args[0])
		if err != nil {
			return Command{}, err
		}
		c.ActionID = id
		if c.Verb == VerbApprove && len(args) > 1 {
			return Command{}, errors.New("usage: `approve ID` (one action at a time)")
		}
		c.Reason = rest(1)
	case VerbPause:
		if len(args) > 0 {
			if d, err := handlers.ParseDuration(args[0]); err == nil {
				if d <= 0 || d > MaxPause {
					return Command{}, fmt.Errorf("the pause duration must be between 1s and %s", "30d")
				}
				c.Duration = d
				c.Reason = rest(1)
				break
			}
		}
		c.Reason = rest(0)
	case VerbResume, VerbList, VerbStatus, VerbHelp:
		if len(args) > 0 {
			return Command{}, fmt.Errorf("usage: `%s` takes no arguments", c.Verb)
		}
	default:
		return Command{}, fmt.Errorf("unknown command %q", truncate(fields[0], 40))
	}
	return c, nil
}

// parseID parses an action id as a human types it: "42" or "#42".
func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(strings.TrimPrefix(s, "#"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%q is not an action id (a positive number, as in `approve 42`)", truncate(s, 40))
	}
	return id, nil
}

// truncate cuts s to at most n runes, the last one an ellipsis when cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// opTimeout bounds the store work of one request: Slack wants an answer within 3 seconds.
const opTimeout = 2500 * time.Millisecond

// runCommand executes a slash command for user and returns the ephemeral answer.
func (s *Slack) runCommand(ctx context.Context, user, text string) string {
	c, err := ParseCommand(text)
	if err != nil {
		return ":warning: " + err.Error() + "\n\n" + Usage
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	switch c.Verb {
	case VerbApprove:
		return s.decide(ctx, user, c.ActionID, store.DecisionApprove, "", "command")
	case VerbDeny:
		return s.decide(ctx, user, c.ActionID, store.DecisionDeny, c.Reason, "command")
	case VerbPause, VerbResume:
		return s.setPause(ctx, user, c)
	case VerbList:
		return s.list(ctx)
	case VerbStatus:
		return s.status(ctx)
	}
	return Usage
}

// refuse audits a non-approver's attempt and returns the refusal.
func (s *Slack) refuse(ctx context.Context, user, what string, actionID int64, checkErr error) string {
	s.m.refusals.WithLabelValues(ReasonNotApprover).Inc()
	detail := map[string]any{"command": what, "via": "slack"}
	if checkErr != nil {
		detail["error"] = checkErr.Error()
	}
	if err := s.st.Audit(ctx, store.AuditInsert{At: s.now(), ActionID: actionID, Kind: store.AuditSlack, Actor: approver(user),
		Reason: ReasonNotApprover, Detail: detail}); err != nil {
		s.log.Warn("slack: could not audit a refusal", "user", user, "err", err)
	}
	s.log.Warn("slack: refused a non-approver", "user", user, "command", what, "action_id", actionID)
	if checkErr != nil {
		return ":no_entry: I could not check that you are an approver (Slack did not answer); try again in a moment."
	}
	return ":no_entry: Only approvers may " + what + ": " + s.approverList() + ". This attempt was recorded."
}

// approver is how a Slack user is recorded as an approver.
func approver(user string) string { return "slack:" + user }

// decide records user's decision through the same path as the API (the engine's Decide:
// two-person rule, approvals TTL, replays) and wakes the engine.
func (s *Slack) decide(ctx context.Context, user string, id int64, decision, reason, via string) string {
	ok, err := s.isApprover(ctx, user)
	if !ok {
		return s.refuse(ctx, user, decision, id, err)
	}
	res, err := s.approver.Decide(ctx, id, approver(user), decision, "slack")
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Sprintf(":grey_question: There is no action %d.", id)
	case errors.Is(err, store.ErrNotAwaiting):
		state := ""
		if res.Action != nil {
			state = " (it is " + string(res.Action.State) + ")"
		}
		return fmt.Sprintf(":information_source: Action %d is not awaiting approval%s: %v.", id, state, err)
	case err != nil:
		s.log.Warn("slack: decision failed", "action_id", id, "user", user, "err", err)
		return ":warning: The decision could not be recorded (database unavailable); try again."
	}
	s.log.Info("slack: decision", "action_id", id, "user", user, "decision", decision, "replay", res.Replay, "via", via)
	if decision == store.DecisionDeny && reason != "" && !res.Replay {
		if err := s.st.Audit(ctx, store.AuditInsert{At: s.now(), IncidentID: res.Action.IncidentID, ActionID: id, Kind: store.AuditApproval,
			Actor: approver(user), Reason: string(vocab.ReasonDenyReason), RuleHash: res.Action.RuleHash, Detail: map[string]any{"reason": reason, "via": "slack"}}); err != nil {
			s.log.Warn("slack: could not record the reason of a denial", "action_id", id, "err", err)
		}
	}
	s.kick()
	s.Kick()
	a := res.Action
	what := fmt.Sprintf("action %d (%s on %s)", id, a.Handler, a.Target)
	switch {
	case res.Replay:
		return alreadyDecided(decision, what, a.State)
	case a.State == vocab.StateApproved:
		return fmt.Sprintf(":white_check_mark: You approved %s: it runs now.", what)
	case a.State == vocab.StateDenied:
		return fmt.Sprintf(":x: You denied %s: it will not run.", what)
	default:
		return fmt.Sprintf(":hourglass: Your approval of %s is recorded; it needs another approver (two-person rule).", what)
	}
}

func pastTense(decision string) string {
	if decision == store.DecisionDeny {
		return "denied"
	}
	return "approved"
}

func (s *Slack) setPause(ctx context.Context, user string, c Command) string {
	what := c.Verb
	ok, err := s.isApprover(ctx, user)
	if !ok {
		return s.refuse(ctx, user, what, 0, err)
	}
	now := s.now()
	var until *time.Time
	if c.Duration > 0 {
		u := now.Add(c.Duration)
		until = &u
	}
	reason := c.Reason
	if reason == "" {
		reason = "via Slack"
	}
	if _, err := s.st.SetPause(ctx, c.Verb == VerbPause, approver(user), string(identity.ViaSlack), reason, now, until); err != nil {
		s.log.Warn("slack: could not change the kill switch", "user", user, "err", err)
		return ":warning: The kill switch could not be changed (database unavailable); try again."
	}
	s.log.Warn("kill switch changed", "paused", c.Verb == VerbPause, "by", approver(user), "reason", reason, "until", until)
	s.kick()
	switch {
	case c.Verb == VerbResume && s.conf().cfgPause:
		return ":arrow_forward: Resumed, but safety.paused is set in the configuration: this replica stays paused."
	case c.Verb == VerbResume:
		return ":arrow_forward: Resumed: disruptive actions run again (actions skipped while paused are not replayed)."
	case until != nil:
		return fmt.Sprintf(":double_vertical_bar: Paused until %s: disruptive actions are skipped; notifications still go out.", slackDate(*until))
	default:
		return ":double_vertical_bar: Paused until `/responder resume`: disruptive actions are skipped; notifications still go out."
	}
}

const listLimit = 15

func (s *Slack) list(ctx context.Context) string {
	var b strings.Builder
	incs, _, err := s.st.ListIncidents(ctx, store.IncidentFilter{State: vocab.IncidentFiring, Page: store.Page{Limit: listLimit}})
	if err != nil {
		return ":warning: The database is unavailable; try again."
	}
	acts, _, err := s.st.ListActions(ctx, store.ActionFilter{State: vocab.StateAwaitingApproval, Page: store.Page{Limit: listLimit}})
	if err != nil {
		return ":warning: The database is unavailable; try again."
	}
	if len(incs) == 0 {
		b.WriteString("*Open incidents:* none\n")
	} else {
		fmt.Fprintf(&b, "*Open incidents* (newest first%s):\n", more(len(incs)))
		for _, i := range incs {
			fmt.Fprintf(&b, "• %s#%d %s: %s, %s since %s\n", esc(drillPrefix(i.Drill)), i.ID, esc(i.Rule), esc(i.AlertName),
				labelOr(i.Labels, "severity", "no severity"), slackDate(i.StartsAt))
		}
	}
	if len(acts) == 0 {
		b.WriteString("*Awaiting approval:* none")
	} else {
		fmt.Fprintf(&b, "*Awaiting approval* (newest first%s):\n", more(len(acts)))
		for _, a := range acts {
			fmt.Fprintf(&b, "• `%d` %s on %s (incident #%d, rule %s): `/responder approve %d`\n", a.ID, esc(a.Handler), esc(a.Target), a.IncidentID, esc(a.Rule), a.ID)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

func more(n int) string {
	if n >= listLimit {
		return fmt.Sprintf(", first %d", listLimit)
	}
	return ""
}

func (s *Slack) status(ctx context.Context) string {
	var b strings.Builder
	ps, err := s.st.Pause(ctx)
	if err != nil {
		return ":warning: The database is unavailable; try again."
	}
	now := s.now()
	switch {
	case s.conf().cfgPause:
		b.WriteString(":double_vertical_bar: *Paused* by safety.paused in the configuration\n")
	case ps.Active(now) && ps.Until != nil:
		fmt.Fprintf(&b, ":double_vertical_bar: *Paused* by %s until %s (%s)\n", esc(ps.By), slackDate(*ps.Until), esc(ps.Reason))
	case ps.Active(now):
		fmt.Fprintf(&b, ":double_vertical_bar: *Paused* by %s since %s (%s)\n", esc(ps.By), slackDate(ps.At), esc(ps.Reason))
	default:
		b.WriteString(":arrow_forward: *Running* (not paused)\n")
	}
	if n, err := s.st.PendingApprovals(ctx); err == nil {
		fmt.Fprintf(&b, "*Awaiting approval:* %d\n", n)
	}
	if bs, err := s.st.Breakers(ctx); err == nil {
		var open []string
		for _, br := range bs {
			if br.State != store.BreakerClosed {
				open = append(open, fmt.Sprintf("%s/%s (%s)", esc(br.Handler), esc(br.Scope), br.State))
			}
		}
		if len(open) == 0 {
			b.WriteString("*Breakers:* all closed\n")
		} else {
			b.WriteString("*Breakers not closed:* " + strings.Join(open, ", ") + "\n")
		}
	}
	if s.budgets != nil {
		if bs, err := s.budgets(ctx); err == nil && len(bs) > 0 {
			b.WriteString("*Budgets* (left in the busiest scope):\n")
			for _, bu := range bs {
				fmt.Fprintf(&b, "• %s: %d of %d per %s\n", esc(bu.Name), max(bu.Max-bu.MostUsed, 0), bu.Max, fmtDuration(bu.Window))
			}
		}
	}
	return strings.TrimRight(b.String(), "\n")
}
