package slack

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// PageName is the page handler's name in rule files.
const PageName = "page.slack"

// maxPageText bounds the page text.
const maxPageText = 3000

// Page is the page.slack handler: it posts a page mentioning a user group, with the incident
// summary, to the channel. It implements handlers.Handler and handlers.StaticValidator.
type Page struct {
	cfg config.SlackConfig
	s   *Slack // nil: Slack is not configured, Do fails with bad_param
}

var (
	_ handlers.Handler         = (*Page)(nil)
	_ handlers.StaticValidator = (*Page)(nil)
)

// Handlers is the package's handlers.Constructor: page.slack, posting through env's *Slack
// client when there is one (serve with a slack section), else from the config's defaults
// (NewPage).
func Handlers(env handlers.Env) ([]handlers.Handler, error) {
	if s, ok := handlers.ClientOf[*Slack](env); ok && s != nil {
		// The config's section, not the one s was built with: a reload builds the handlers
		// again before it swaps them in (slack.channel, slack.page_group).
		return []handlers.Handler{&Page{cfg: env.Config.Slack, s: s}}, nil
	}
	return []handlers.Handler{NewPage(env.Config.Slack)}, nil
}

// PageHandler returns the page.slack handler posting through s.
func (s *Slack) PageHandler() *Page { return &Page{cfg: s.conf().cfg, s: s} }

// NewPage returns page.slack for `rules check` and `rules test`, or for a responder without Slack:
// it validates and builds actions from cfg's defaults, and an action fails with bad_param when it
// runs (like page.webhook without a URL).
func NewPage(cfg config.SlackConfig) *Page { return &Page{cfg: cfg} }

const pageExample = `rules:
  - name: restart-crashlooping-pod
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    actions:
      - handler: k8s.restart_pod
        params: {namespace: "{{ alert.labels.namespace }}", pod: "{{ alert.labels.pod }}"}
    escalate:
      - handler: page.slack
        params:
          text: "restart of {{ alert.labels.pod }} did not help"
          group: S0614TZR7
`

// Spec describes page.slack.
func (p *Page) Spec() handlers.Spec {
	return handlers.Spec{
		Name: PageName,
		Doc: "Posts a page to Slack mentioning a user group (<!subteam^ID>), with the incident summary; " +
			"once per action (a retried action never posts twice). Rate limits and Slack outages are retried.",
		Params: []handlers.Param{
			{Name: "text", Type: handlers.String, Required: true, Doc: "what happened and what is asked of the humans"},
			{Name: "group", Type: handlers.String, Doc: "user group ID to mention (S...); default slack.page_group"},
			{Name: "channel", Type: handlers.String, Doc: "#channel or channel ID; default slack.channel"},
		},
		Class:             vocab.ClassNotify,
		DefaultApproval:   handlers.ApprovalNone,
		DefaultTimeout:    30 * time.Second,
		Target:            `"slack:<channel>", qualified by the incident`,
		TargetPerIncident: true,
		Scope:             "slack",
		Example:           pageExample,
	}
}

// ValidateStatic checks literal group and channel.
func (p *Page) ValidateStatic(raw handlers.Params) error {
	var errs []error
	if g, ok := raw["group"].(string); ok && !handlers.IsTemplate(g) && !config.IsSlackUserGroup(g) {
		errs = append(errs, fmt.Errorf("group %q is not a Slack user group ID (like S0614TZR7)", g))
	}
	if c, ok := raw["channel"].(string); ok && !handlers.IsTemplate(c) && !config.IsSlackChannel(c) {
		errs = append(errs, fmt.Errorf("channel %q is neither #name nor a channel ID", c))
	}
	if t, ok := raw["text"].(string); ok && strings.TrimSpace(t) == "" {
		errs = append(errs, errors.New("text may not be empty"))
	}
	return errors.Join(errs...)
}

// Build checks rendered params. Every error is bad_param.
func (p *Page) Build(params handlers.Params) (handlers.Action, error) {
	bad := func(format string, args ...any) error {
		return &handlers.Error{Reason: vocab.ReasonBadParam, Err: fmt.Errorf(format, args...)}
	}
	for k, v := range params {
		sp, ok := p.Spec().Param(k)
		if !ok {
			return nil, bad("handler %q has no param %q", PageName, k)
		}
		if err := handlers.CheckType(sp, v); err != nil {
			return nil, bad("%v", err)
		}
	}
	text, _ := params["text"].(string)
	if strings.TrimSpace(text) == "" {
		return nil, bad("text may not be empty")
	}
	a := &pageAction{s: p.s, text: truncate(text, maxPageText), group: p.cfg.PageGroup, channel: p.cfg.Channel}
	if g, ok := params["group"].(string); ok && g != "" {
		a.group = g
	}
	if c, ok := params["channel"].(string); ok && c != "" {
		a.channel = c
	}
	if a.group != "" && !config.IsSlackUserGroup(a.group) {
		return nil, bad("group %q is not a Slack user group ID (like S0614TZR7)", a.group)
	}
	if !config.IsSlackChannel(a.channel) {
		return nil, bad("channel %q is neither #name nor a channel ID", a.channel)
	}
	return a, nil
}

type pageAction struct {
	s       *Slack
	text    string
	group   string
	channel string
}

func (a *pageAction) Target() string                           { return "slack:" + a.channel }
func (a *pageAction) Scope() string                            { return "slack" }
func (a *pageAction) Class() vocab.Class                       { return vocab.ClassNotify }
func (a *pageAction) Check(context.Context, alert.Alert) error { return handlers.ErrNotCheckable }
func (a *pageAction) NotCheckable()                            {}

// message is the page's text and blocks. It says DRILL only for a drill responder started
// (inv.Drill), never for the alert's label alone: a copied label must not make a real page look
// like one the on-call may ignore.
func (a *pageAction) message(inv handlers.Invocation, al alert.Alert) (string, []slack.Block) {
	inc := inv.IncidentID
	mention := ""
	if a.group != "" {
		mention = "<!subteam^" + a.group + "> "
	}
	head := fmt.Sprintf("%s:rotating_light: %s", mention, esc(a.text))
	if run := inv.Drill; run != "" {
		head = fmt.Sprintf("%s:construction: *DRILL* `%s`: %s", mention, esc(run), esc(a.text))
	}
	var sum []string
	if inc != 0 {
		sum = append(sum, fmt.Sprintf("incident #%d", inc))
	}
	sum = append(sum, fmt.Sprintf("*%s* (%s)", esc(al.Name), al.Status))
	if sev := al.Labels["severity"]; sev != "" {
		sum = append(sum, "severity "+esc(sev))
	}
	if !al.StartsAt.IsZero() {
		sum = append(sum, "since "+slackDate(al.StartsAt))
	}
	blocks := []slack.Block{slack.NewSectionBlock(md(head), nil, nil), slack.NewContextBlock("summary", md(strings.Join(sum, " · ")))}
	if lbl := labelLine(al.Labels); lbl != "" {
		blocks = append(blocks, slack.NewContextBlock("labels", md(lbl)))
	}
	if links := linkLine(al.GeneratorURL, al.Annotations); links != "" {
		blocks = append(blocks, slack.NewContextBlock("links", md(links)))
	}
	return head, blocks
}

// Do posts the page once per idempotency key: a key already recorded is not posted again. A rate
// limit or an unreachable Slack is a server_error (the engine retries the page later); Slack
// refusing the call (channel_not_found, not_in_channel, invalid_auth) is a client_error.
func (a *pageAction) Do(ctx context.Context, inv handlers.Invocation, al alert.Alert) (handlers.Result, error) {
	s := a.s
	if s == nil {
		return handlers.Result{}, handlers.Fail(vocab.ReasonBadParam, "%s: slack is not configured (slack.bot_token_file, slack.channel)", PageName)
	}
	key := inv.IdempotencyKey
	if key != "" {
		prev, err := s.st.GetSlackPage(ctx, key)
		switch {
		case err == nil:
			return handlers.Result{Detail: fmt.Sprintf("already posted to %s at %s", prev.Channel, prev.TS)}, nil
		case !errors.Is(err, store.ErrNotFound):
			return handlers.Result{}, handlers.Fail(vocab.ReasonServerError, "%s: read the page record: %w", PageName, err)
		}
	}
	inc := inv.IncidentID
	text, blocks := a.message(inv, al)
	var channel, ts string
	err := s.call(ctx, "chat.postMessage", func(ctx context.Context) error {
		var err error
		channel, ts, err = s.api.PostMessageContext(ctx, a.channel, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...),
			slack.MsgOptionDisableLinkUnfurl())
		return err
	})
	if err != nil {
		var se slack.SlackErrorResponse
		if errors.As(err, &se) {
			return handlers.Result{}, handlers.Fail(vocab.ReasonClientError, "%s: Slack refused the page: %s", PageName, se.Err)
		}
		return handlers.Result{}, handlers.Fail(vocab.ReasonServerError, "%s: %w", PageName, err)
	}
	if key != "" {
		// The page went out: recording it is retried, and a failure to record is logged, not
		// returned (an error would make the engine post it again).
		var rerr error
		for range 3 {
			if _, rerr = s.st.RecordSlackPage(ctx, store.SlackPage{Key: key, IncidentID: inc, Channel: channel, TS: ts, At: s.now()}); rerr == nil {
				break
			}
		}
		if rerr != nil {
			s.log.Error("slack: page posted but not recorded; a retry of this action could post it again", "key", key, "err", rerr)
		}
	}
	return handlers.Result{Detail: fmt.Sprintf("posted to %s at %s", channel, ts)}, nil
}
