package slack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slack-go/slack"
	"golang.org/x/time/rate"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/notify"
	"github.com/responder-sre/responder/store"
)

// Defaults for Options.
const (
	DefaultPollInterval = 5 * time.Second
	// DefaultLookback is how old an incident may be and still get a first message (after an outage
	// of Slack or of responder).
	DefaultLookback = 24 * time.Hour
	// DefaultRate is the sustained rate of Slack API calls (chat.postMessage allows about one per
	// second per channel); DefaultBurst the burst.
	DefaultRate  = rate.Limit(1)
	DefaultBurst = 5
)

// BudgetStatus is one budget as /responder status shows it.
type BudgetStatus struct {
	Name     string
	Max      int
	MostUsed int
	Window   time.Duration
}

// Store is what the Slack integration reads from and records in responder's store; *store.Store
// implements it. Decisions and pauses go through the same methods as the API's.
type Store interface {
	// Incident messages (Run).
	SlackFloor(ctx context.Context, after int64, since time.Time) (int64, error)
	SlackCandidates(ctx context.Context, floor int64, since time.Time, limit int) ([]store.SlackIncident, error)
	SaveSlackMessage(ctx context.Context, m store.SlackMessage, at time.Time) error
	// Pages (PageHandler): one per idempotency key.
	GetSlackPage(ctx context.Context, key string) (*store.SlackPage, error)
	RecordSlackPage(ctx context.Context, p store.SlackPage) (bool, error)
	// Reads for messages and /responder list|status.
	ListIncidents(ctx context.Context, f store.IncidentFilter) ([]store.Incident, string, error)
	ListActions(ctx context.Context, f store.ActionFilter) ([]store.Action, string, error)
	Pause(ctx context.Context) (store.PauseState, error)
	PendingApprovals(ctx context.Context) (int, error)
	Breakers(ctx context.Context) ([]store.Breaker, error)
	// Decisions, pauses, the replay cache and the audit trail of inbound requests.
	ApproverDecision(ctx context.Context, actionID int64, approver string) (string, *store.Action, error)
	SetPause(ctx context.Context, paused bool, by, via, reason string, at time.Time, until *time.Time) (store.PauseState, error)
	SeenSlackRequest(ctx context.Context, signature, endpoint string, at, expires time.Time) (bool, error)
	Audit(ctx context.Context, es ...store.AuditInsert) error
}

// Options are what the Slack integration needs from the app.
type Options struct {
	Store Store
	// Kick wakes the engine after a decision or a pause change (the executor runs approved actions).
	Kick func()
	// Now is the clock (default time.Now): decision times, the signature window, resolution times.
	Now func() time.Time
	// Approver decides approvals under the approval policy: the app passes the engine (required).
	Approver Approver
	Logger   *slog.Logger
	// Registerer receives responder_slack_* metrics (nil: not registered).
	Registerer prometheus.Registerer
	// HTTPClient calls Slack's Web API and response_url (default: a client with a 10s timeout).
	HTTPClient *http.Client
	// PollInterval is how often Run looks for incident messages to post or update (default 5s).
	PollInterval time.Duration
	// Lookback bounds the age of incidents that still get a first message (default 24h).
	Lookback time.Duration
	// Budgets reports the budgets for /responder status (nil: status shows none).
	Budgets func(ctx context.Context) ([]BudgetStatus, error)
	// Paused reports a pause in force that the store does not hold (safety.paused in the config).
	ConfigPaused bool
	// RuleChannel returns a rule's own channel for its incident messages ("" = slack.channel).
	RuleChannel func(rule string) string
	// DrillChannel is where the incident messages of drills go (drills.page: `#drills` or a
	// channel ID), whatever their rule's channel; "" = where those of their rule go. A reload
	// changes it (SetDrillChannel).
	DrillChannel string
	// Rate and Burst limit Slack API calls (defaults DefaultRate, DefaultBurst).
	Rate  rate.Limit
	Burst int
}

// Approver records a decision on an action awaiting approval under the approval policy
// (approvals.ttl, the two-person rule): *engine.Engine and engine.Approvals implement it. Whether a
// Slack user may decide at all (slack.approvers) is checked here before.
type Approver interface {
	Decide(ctx context.Context, actionID int64, approver, decision, via string) (store.DecisionResult, error)
}

// Slack is the Slack integration. Its methods are safe for concurrent use.
type Slack struct {
	// cfg is the section as at New: the tokens, api_url and socket_mode are read from it (a
	// restart changes them); what a reload changes is read from live (SetConfig).
	cfg      config.SlackConfig
	live     atomic.Pointer[liveConfig]
	setMu    sync.Mutex // serialises SetConfig and SetDrillChannel
	st       Store
	api      *slack.Client
	apiBase  *url.URL // Slack's API or cfg.APIURL: response_url may point below it
	kick     func()
	now      func() time.Time
	approver Approver
	log      *slog.Logger
	poll     time.Duration
	lookback time.Duration
	budgets  func(context.Context) ([]BudgetStatus, error)
	ruleChan func(rule string) string
	client   *http.Client
	limiter  *rate.Limiter
	// auditLimiter bounds the audit rows unauthenticated requests can cause.
	auditLimiter *rate.Limiter
	wake         chan struct{}
	m            *metrics

	mu       sync.Mutex
	groups   map[string]groupEntry
	blocked  time.Time // no Slack API call before this (a 429's Retry-After)
	floor    int64     // incidents at or below it are too old for a first message
	inflight sync.WaitGroup
}

type groupEntry struct {
	members map[string]bool
	at      time.Time
}

var _ notify.Notifier = (*Slack)(nil)

// New returns the Slack integration for a configured slack section (cfg.Configured()).
func New(cfg config.SlackConfig, o Options) (*Slack, error) {
	if o.Store == nil {
		return nil, errors.New("slack: no store")
	}
	if o.Approver == nil {
		return nil, errors.New("slack: no approver")
	}
	if cfg.BotToken == "" {
		return nil, errors.New("slack: no bot token (slack.bot_token_file)")
	}
	if cfg.SocketMode && cfg.AppToken == "" {
		return nil, errors.New("slack: socket_mode needs an app-level token (slack.app_token_file)")
	}
	if strings.TrimSpace(cfg.Channel) == "" {
		return nil, errors.New("slack: no channel")
	}
	s := &Slack{
		cfg:          cfg,
		st:           o.Store,
		kick:         o.Kick,
		now:          o.Now,
		approver:     o.Approver,
		log:          o.Logger,
		poll:         cmp.Or(o.PollInterval, DefaultPollInterval),
		lookback:     cmp.Or(o.Lookback, DefaultLookback),
		budgets:      o.Budgets,
		ruleChan:     o.RuleChannel,
		client:       o.HTTPClient,
		limiter:      rate.NewLimiter(cmp.Or(o.Rate, DefaultRate), cmp.Or(o.Burst, DefaultBurst)),
		auditLimiter: rate.NewLimiter(1, 20),
		wake:         make(chan struct{}, 1),
		groups:       map[string]groupEntry{},
		m:            newMetrics(o.Registerer),
	}
	if s.kick == nil {
		s.kick = func() {}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.client == nil {
		s.client = &http.Client{Timeout: 10 * time.Second}
	}
	s.SetConfig(cfg, o.ConfigPaused)
	s.SetDrillChannel(o.DrillChannel)
	base := cmp.Or(cfg.APIURL, slack.APIURL)
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("slack: api_url: %w", err)
	}
	s.apiBase = u
	opts := []slack.Option{slack.OptionAPIURL(base), slack.OptionHTTPClient(s.client)}
	if cfg.AppToken != "" {
		opts = append(opts, slack.OptionAppLevelToken(cfg.AppToken.Value()))
	}
	s.api = slack.New(cfg.BotToken.Value(), opts...)
	return s, nil
}

// Kick asks Run for a prompt pass; it never blocks.
func (s *Slack) Kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Wait waits for the ephemeral follow-ups (response_url posts) in flight; for shutdown and tests.
func (s *Slack) Wait() { s.inflight.Wait() }

func (s *Slack) groupTTL() time.Duration {
	return cmp.Or(s.conf().cfg.GroupCacheTTL.D(), config.DefaultSlackGroupCacheTTL)
}

// isApprover reports whether user may decide, pause and resume: a configured user, or a member of
// a configured group (usergroups.users.list, cached for group_cache_ttl; a stale list is used when
// Slack cannot be reached).
func (s *Slack) isApprover(ctx context.Context, user string) (bool, error) {
	if user == "" {
		return false, nil
	}
	lc := s.conf()
	if lc.users[user] {
		return true, nil
	}
	var firstErr error
	for _, g := range lc.cfg.Approvers.Groups {
		members, err := s.groupMembers(ctx, g)
		if err != nil {
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		if members[user] {
			return true, nil
		}
	}
	return false, firstErr
}

func (s *Slack) groupMembers(ctx context.Context, group string) (map[string]bool, error) {
	now := s.now()
	s.mu.Lock()
	e, ok := s.groups[group]
	s.mu.Unlock()
	if ok && now.Sub(e.at) < s.groupTTL() {
		return e.members, nil
	}
	ids, err := s.fetchGroup(ctx, group)
	if err != nil {
		if ok {
			s.log.Warn("slack: could not refresh an approvers group; using the cached members", "group", group, "err", err)
			return e.members, nil
		}
		return nil, fmt.Errorf("read members of user group %s: %w", group, err)
	}
	e = groupEntry{members: make(map[string]bool, len(ids)), at: now}
	for _, id := range ids {
		e.members[id] = true
	}
	s.mu.Lock()
	s.groups[group] = e
	s.mu.Unlock()
	return e.members, nil
}

func (s *Slack) fetchGroup(ctx context.Context, group string) ([]string, error) {
	// Bounded: a request to Slack must be answered within 3 seconds.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var ids []string
	err := s.call(ctx, "usergroups.users.list", func(ctx context.Context) error {
		var err error
		ids, err = s.api.GetUserGroupMembersContext(ctx, group)
		return err
	})
	return ids, err
}

// errRateLimited is returned while a 429's Retry-After has not passed.
type errRateLimited struct{ until time.Time }

func (e *errRateLimited) Error() string {
	return "slack rate limit: no call before " + e.until.Format(time.RFC3339)
}

// call runs one Slack API call under the rate limiter and the 429 back-off, and counts it.
func (s *Slack) call(ctx context.Context, method string, fn func(context.Context) error) error {
	s.mu.Lock()
	blocked := s.blocked
	s.mu.Unlock()
	if s.now().Before(blocked) {
		s.m.api.WithLabelValues(method, "rate_limited").Inc()
		return &errRateLimited{until: blocked}
	}
	if err := s.limiter.Wait(ctx); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	err := fn(ctx)
	var rl *slack.RateLimitedError
	switch {
	case err == nil:
		s.m.api.WithLabelValues(method, "ok").Inc()
		return nil
	case errors.As(err, &rl):
		until := s.now().Add(max(rl.RetryAfter, time.Second))
		s.mu.Lock()
		if until.After(s.blocked) {
			s.blocked = until
		}
		s.mu.Unlock()
		s.m.api.WithLabelValues(method, "rate_limited").Inc()
		s.log.Warn("slack: rate limited", "method", method, "retry_after", rl.RetryAfter)
		return &errRateLimited{until: until}
	default:
		s.m.api.WithLabelValues(method, "error").Inc()
		return fmt.Errorf("%s: %w", method, err)
	}
}

type metrics struct {
	requests *prometheus.CounterVec
	refusals *prometheus.CounterVec
	api      *prometheus.CounterVec
	synced   prometheus.Counter
}

// Refusal reasons (responder_slack_refusals_total{reason}, and the audit reason).
const (
	ReasonBadSignature   = "bad_signature"
	ReasonStaleTimestamp = "stale_timestamp"
	ReasonMissingHeaders = "missing_headers"
	ReasonNotApprover    = "not_approver"
	// ReasonReplayed: the same signed request (body, timestamp, signature) was received before.
	ReasonReplayed = store.AuditReplayed
)

var refusalReasons = []string{ReasonBadSignature, ReasonStaleTimestamp, ReasonMissingHeaders, ReasonNotApprover, ReasonReplayed}

// Endpoints (the endpoint label of responder_slack_requests_total).
const (
	endpointCommands     = "commands"
	endpointInteractions = "interactions"
	endpointSocket       = "socket_mode"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "responder", Subsystem: "slack", Name: "requests_total",
			Help: "Requests from Slack (slash commands, button clicks) by endpoint and HTTP status code."}, []string{"endpoint", "code"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "responder", Subsystem: "slack", Name: "refusals_total",
			Help: "Requests from Slack refused, by reason."}, []string{"reason"}),
		api: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "responder", Subsystem: "slack", Name: "api_requests_total",
			Help: "Calls to Slack's Web API by method and result (ok, rate_limited, error)."}, []string{"method", "result"}),
		synced: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "responder", Subsystem: "slack", Name: "messages_synced_total",
			Help: "Incident messages posted or updated."}),
	}
	for _, r := range refusalReasons {
		m.refusals.WithLabelValues(r)
	}
	for _, meth := range []string{"chat.postMessage", "chat.update", "usergroups.users.list"} {
		for _, res := range []string{"ok", "rate_limited", "error"} {
			m.api.WithLabelValues(meth, res)
		}
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.refusals, m.api, m.synced)
	}
	return m
}

// responseURLAllowed reports whether a response_url from a verified payload may be called: it
// must be Slack's (https://hooks.slack.com/) or below api_url (a proxy, tests).
func (s *Slack) responseURLAllowed(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.User != nil {
		return false
	}
	if u.Scheme == "https" && u.Host == "hooks.slack.com" {
		return true
	}
	return u.Scheme == s.apiBase.Scheme && u.Host == s.apiBase.Host && strings.HasPrefix(u.Path, s.apiBase.Path)
}

// approverList names the approvers for a refusal.
func (s *Slack) approverList() string {
	var parts []string
	approvers := s.conf().cfg.Approvers
	for _, u := range approvers.Users {
		parts = append(parts, "<@"+u+">")
	}
	for _, g := range approvers.Groups {
		parts = append(parts, "<!subteam^"+g+">")
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "nobody (slack.approvers is empty)"
	}
	return strings.Join(parts, ", ")
}
