package postgres

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/internal/clock"
	"github.com/responder-sre/responder/vocab"
)

// Handler names as written in rule files.
const (
	SwitchoverName = "postgres.switchover"
	FailoverName   = "postgres.failover"
	PromoteName    = "postgres.promote"
)

// Defaults for Options and params.
const (
	DefaultPollInterval   = time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultVerifyTimeout  = 2 * time.Minute
	DefaultCatchupTimeout = time.Minute
	DefaultPromoteWait    = time.Minute
)

// Steps between which Options.StepHook is called (tests simulate a crash there).
const (
	StepFenced   = "fenced"   // postgres.promote: the old primary is fenced, the standby not yet promoted
	StepPromoted = "promoted" // postgres.promote: pg_promote returned, not yet verified
	StepPosted   = "posted"   // switchover/failover: Patroni accepted the request, not yet verified
)

// Options configure the postgres.* handlers.
type Options struct {
	// Logger receives one line per step (default: discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now); Sleep waits d or until ctx is done (default: a timer).
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// HTTPClient calls the Patroni REST API and the fence URL (default: a client without
	// redirects; each request is bounded by the action's context).
	HTTPClient *http.Client
	// PollInterval is the verify and catch-up polling period (default 1s).
	PollInterval time.Duration
	// ConnectTimeout bounds one connection attempt to a server (default 5s).
	ConnectTimeout time.Duration
	// StepHook, when set, is called after each step named by the Step* constants; an error stops
	// Do there, like a crash. For tests.
	StepHook func(ctx context.Context, step string) error
	// Secrets resolves {{ secret("NAME") }} in fence headers when the fence URL is called.
	Secrets handlers.Secrets
}

type base struct {
	clusters map[string]config.PostgresCluster
	log      *slog.Logger
	now      func() time.Time
	sleep    func(ctx context.Context, d time.Duration) error
	http     *http.Client
	poll     time.Duration
	connect  time.Duration
	hook     func(ctx context.Context, step string) error
	secrets  handlers.Secrets
}

// Handlers is the package's handlers.Constructor: the three handlers for handlers.postgres.
func Handlers(env handlers.Env) ([]handlers.Handler, error) {
	return New(env.Config.Handlers.Postgres, Options{Logger: env.Logger, Secrets: env.Secrets})
}

// New returns the three handlers (switchover, failover, promote) for the configured clusters. An
// empty config builds handlers whose every rule fails at load (no such cluster).
func New(cfg config.PostgresHandlerConfig, o Options) ([]handlers.Handler, error) {
	b := &base{
		clusters: maps.Clone(cfg.Clusters),
		log:      o.Logger,
		now:      o.Now,
		sleep:    o.Sleep,
		http:     o.HTTPClient,
		poll:     cmp.Or(o.PollInterval, DefaultPollInterval),
		connect:  cmp.Or(o.ConnectTimeout, DefaultConnectTimeout),
		hook:     o.StepHook,
		secrets:  o.Secrets,
	}
	if b.clusters == nil {
		b.clusters = map[string]config.PostgresCluster{}
	}
	for name, c := range b.clusters {
		if c.IsPatroni() == (c.Primary != nil) {
			return nil, fmt.Errorf("postgres handlers: cluster %q: want either patroni or primary (is the config validated?)", name)
		}
		if !c.IsPatroni() && (c.Detect.Failures < 1 || len(c.Standbys) == 0) {
			return nil, fmt.Errorf("postgres handlers: cluster %q: detect.failures and standbys are required (is the config validated?)", name)
		}
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.sleep == nil {
		b.sleep = clock.Sleep
	}
	if b.http == nil {
		b.http = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return []handlers.Handler{&Switchover{b}, &Failover{b}, &Promote{b}}, nil
}

func (b *base) step(ctx context.Context, name string) error {
	if b.hook == nil {
		return nil
	}
	return b.hook(ctx, name)
}

// clusterNames lists the configured clusters of one kind, for error messages.
func (b *base) clusterNames(patroni bool) string {
	var names []string
	for n, c := range b.clusters {
		if c.IsPatroni() == patroni {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "none configured"
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// cluster returns the configured cluster called name, of the wanted kind.
func (b *base) cluster(name string, patroni bool) (config.PostgresCluster, error) {
	c, ok := b.clusters[name]
	kind := "a streaming-replication"
	if patroni {
		kind = "a Patroni"
	}
	switch {
	case !ok:
		return c, fmt.Errorf("param \"cluster\": %q is not %s cluster in handlers.postgres.clusters (%s)", name, kind, b.clusterNames(patroni))
	case c.IsPatroni() && !patroni:
		return c, fmt.Errorf("param \"cluster\": %q is managed by Patroni: promoting a member behind Patroni's back splits the cluster; use postgres.switchover or postgres.failover", name)
	case !c.IsPatroni() && patroni:
		return c, fmt.Errorf("param \"cluster\": %q is plain streaming replication, not Patroni: use postgres.promote", name)
	}
	return c, nil
}

func targetOf(cluster string) string { return "postgres/" + cluster }

// journal records the steps of one Do with their timings: it becomes the Result detail.
type journal struct {
	b     *base
	start time.Time
	lines []string
	attrs []any
	// fields are the result fields (handlers.Spec.Results) the steps found.
	fields map[string]any
}

// set records a result field.
func (j *journal) set(name string, v any) {
	if j.fields == nil {
		j.fields = map[string]any{}
	}
	j.fields[name] = v
}

func (b *base) journal(handler, cluster string) *journal {
	return &journal{b: b, start: b.now(), attrs: []any{"handler", handler, "cluster", cluster}}
}

// add records one step: "+1.234s fence: ...".
func (j *journal) add(step, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	el := j.b.now().Sub(j.start).Round(time.Millisecond)
	j.lines = append(j.lines, fmt.Sprintf("+%s %s: %s", el, step, msg))
	j.b.log.Info("postgres step", append(slices.Clone(j.attrs), "step", step, "elapsed", el, "detail", msg)...)
}

func (j *journal) result() handlers.Result {
	return handlers.Result{Detail: strings.Join(j.lines, "\n"), Fields: j.fields}
}

// recovered records the measured time to recover against the rto.
func (j *journal) recovered(a alert.Alert, rto time.Duration) {
	if a.StartsAt.IsZero() {
		j.add("rto", "alert has no start time; time to recover not measured (rto %s)", rto)
		return
	}
	ttr := j.b.now().Sub(a.StartsAt).Round(time.Second)
	verdict := "within"
	if ttr > rto {
		verdict = "EXCEEDED"
	}
	j.add("rto", "time to recover %s (alert started %s, recovered %s): %s rto %s", ttr,
		a.StartsAt.UTC().Format(time.RFC3339), j.b.now().UTC().Format(time.RFC3339), verdict, rto)
}

// run journals one Do: the steps do records, then "failed" with its error. The journal is the
// action's result.
func (b *base) run(handler, cluster string, do func(j *journal) error) (handlers.Result, error) {
	j := b.journal(handler, cluster)
	err := do(j)
	if err != nil {
		j.add("failed", "%v", err)
	}
	return j.result(), err
}

// trackEffect is handlers.TrackEffect for a step function that only returns an error.
func trackEffect(do func(sent *bool) error) error {
	_, err := handlers.TrackEffect(func(sent *bool) (handlers.Result, error) { return handlers.Result{}, do(sent) })
	return err
}

// newReader reads params; an empty string is an error (no postgres param means anything empty).
func newReader(p handlers.Params, static bool) *handlers.ParamReader {
	r := handlers.NewParamReader(p, static)
	r.NonEmpty = true
	return r
}

// refuse is a precondition responder will not act against: client_error, spelled out.
func refuse(format string, args ...any) error {
	return handlers.Fail(vocab.ReasonClientError, "refused: "+format, args...)
}

// halfDone is a state between the start and the end of a failover (a crash between steps).
func halfDone(format string, args ...any) error {
	return handlers.Fail(vocab.ReasonClientError, "half-done: "+format+"; needs a human", args...)
}

// describePlan runs a handler's read-only planning step and returns what it saw (and why it
// would refuse, if it would), for the approver (handlers.Describer).
func describePlan(j *journal, err error) string {
	text := strings.Join(j.lines, "\n")
	if err != nil {
		text += "\nwould refuse: " + err.Error()
	}
	return text
}
