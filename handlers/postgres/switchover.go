package postgres

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// Switchover is the postgres.switchover handler (Patroni): a planned leader change to a replica
// that is caught up.
type Switchover struct{ *base }

var (
	_ handlers.Handler         = (*Switchover)(nil)
	_ handlers.StaticValidator = (*Switchover)(nil)
)

const switchoverExample = `rules:
  - name: switchover-unwritable-primary
    when: alert.source == "probe" && alert.name == "billing-write" && alert.status == "firing"
    for: 2m
    actions:
      - handler: postgres.switchover
        params: {cluster: billing}
`

// Spec describes postgres.switchover.
func (h *Switchover) Spec() handlers.Spec {
	return handlers.Spec{
		Name: SwitchoverName,
		Doc: "Patroni switchover: requires a running leader and a running replica whose received lag is within " +
			"max_lag; POST /switchover; verifies that exactly one member answers 200 on /primary, the candidate, " +
			"on a new timeline.",
		Params:          patroniParams("the replica to promote (default: the running replica with the least lag)"),
		Class:           vocab.ClassDisruptive,
		DefaultApproval: handlers.ApprovalRequired,
		DefaultTimeout:  5 * time.Minute,
		Target:          "postgres/<cluster>",
		Scope:           "postgres/<cluster>",
		Example:         switchoverExample,
		Results:         patroniResults,
	}
}

// patroniResults are the result fields of postgres.switchover and postgres.failover, filled once
// the new leader is verified.
var patroniResults = []handlers.ResultField{
	{Name: "new_primary", Type: handlers.String, Doc: "the new leader's address, host:port, as Patroni's /cluster reports it"},
	{Name: "new_primary_name", Type: handlers.String, Doc: "the new leader's Patroni member name"},
	{Name: "timeline", Type: handlers.Int, Doc: "the timeline the new leader writes on"},
}

func patroniParams(candidateDoc string) []handlers.Param {
	return []handlers.Param{
		{Name: "cluster", Type: handlers.String, Required: true, Target: true, Doc: "a Patroni cluster in handlers.postgres.clusters"},
		{Name: "candidate", Type: handlers.String, Doc: candidateDoc},
		{Name: "verify_timeout", Type: handlers.Duration, Doc: "how long to wait for the candidate to be the only primary (default 2m)"},
	}
}

// ValidateStatic checks the literal params of a rule.
func (h *Switchover) ValidateStatic(raw handlers.Params) error {
	_, err := parsePatroni(h.base, raw, true)
	return err
}

// Build validates rendered params.
func (h *Switchover) Build(p handlers.Params) (handlers.Action, error) {
	a, err := parsePatroni(h.base, p, false)
	if err != nil {
		return nil, err
	}
	return &SwitchoverAction{a}, nil
}

// patroniAction is what switchover and failover share.
type patroniAction struct {
	b         *base
	cluster   string
	cfg       config.PostgresCluster
	candidate string // "" = choose
	verify    time.Duration
}

func parsePatroni(b *base, p handlers.Params, static bool) (*patroniAction, error) {
	r := newReader(p, static)
	a := &patroniAction{b: b}
	if name, ok := r.String("cluster"); ok {
		a.cluster = name
		c, err := b.cluster(name, true)
		if err != nil {
			r.Add(err)
		}
		a.cfg = c
	} else if !static {
		r.Failf("param \"cluster\" is required")
	}
	a.candidate, _ = r.String("candidate")
	a.verify = r.Duration("verify_timeout", DefaultVerifyTimeout)
	if err := r.Err(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *patroniAction) Target() string { return targetOf(a.cluster) }
func (a *patroniAction) Scope() string  { return targetOf(a.cluster) }

// alreadyDone reports a leader change recorded in /history after the alert started (this action,
// or someone, already did it), and then only verifies the leader: err is the verification's. c is
// the cluster as read by plan, nil when it could not be read.
func (a *patroniAction) alreadyDone(ctx context.Context, j *journal, p *patroni, c *clusterStatus, al alert.Alert) (done bool, err error) {
	if c == nil {
		return false, nil
	}
	l := c.leader()
	if l == nil || al.StartsAt.IsZero() || !l.isRunning() {
		return false, nil
	}
	at, leader, tl, err := p.lastChange(ctx, l.base())
	if err != nil || at.IsZero() || !at.After(al.StartsAt) || leader != l.Name {
		return false, nil
	}
	if a.candidate != "" && a.candidate != l.Name {
		return false, nil
	}
	j.add("done", "%s became leader on timeline %d at %s, after the alert started (%s): verify only",
		l.Name, tl, at.UTC().Format(time.RFC3339), al.StartsAt.UTC().Format(time.RFC3339))
	return true, p.waitLeader(ctx, j, l.Name, 0, a.verify)
}

// verifyPosted follows an accepted POST: the StepPosted hook, then waiting up to verify_timeout
// for cand to be the only member answering on /primary, on a timeline above oldTL. Interrupted
// (handlers.Interrupted), it does not verify.
func (a *patroniAction) verifyPosted(ctx context.Context, j *journal, p *patroni, cand string, oldTL int, al alert.Alert) error {
	if err := a.b.step(ctx, StepPosted); err != nil {
		return err
	}
	if err := handlers.Stop(ctx, "the verification"); err != nil {
		j.add("stopped", "%v", err)
		return fmt.Errorf("leader change to %s requested, not verified: %w", cand, err)
	}
	if err := p.waitLeader(ctx, j, cand, oldTL, a.verify); err != nil {
		return err
	}
	j.recovered(al, a.cfg.RTO.D())
	return nil
}

// post sends the leader change (a switchover or failover request) to its end even when
// interrupted meanwhile, bounded by the action's deadline; interrupted before, it sends nothing.
func (a *patroniAction) post(ctx context.Context, j *journal, p *patroni, what, u string, body any, sent *bool) error {
	if err := handlers.Stop(ctx, what); err != nil {
		j.add("stopped", "%v", err)
		return err
	}
	*sent = true
	sctx, cancel := handlers.StepContext(ctx)
	defer cancel()
	if err := p.do(sctx, http.MethodPost, u, body, nil); err != nil {
		return postError(what, err)
	}
	return nil
}

// pickCandidate returns the named candidate, or the running replica with the least lag.
func (a *patroniAction) pickCandidate(c *clusterStatus, leader *member) (*member, error) {
	if a.candidate != "" {
		m := c.member(a.candidate)
		if m == nil {
			return nil, refuse("candidate %q is not a member of cluster %q", a.candidate, a.cluster)
		}
		return m, nil
	}
	var best *member
	var bestLag int64
	for i := range c.Members {
		m := &c.Members[i]
		if m.isLeader() || !m.isRunning() || m.noFailover() {
			continue
		}
		lag, _, ok := receivedLag(leader, m)
		if !ok {
			continue
		}
		if best == nil || lag < bestLag {
			best, bestLag = m, lag
		}
	}
	if best == nil {
		return nil, refuse("no running replica with a known lag in cluster %q", a.cluster)
	}
	return best, nil
}

// SwitchoverAction is one built postgres.switchover.
type SwitchoverAction struct{ *patroniAction }

// plan reads the cluster and returns the leader and the candidate, or why not.
func (a *SwitchoverAction) plan(ctx context.Context, j *journal) (*patroni, *clusterStatus, *member, *member, error) {
	p := a.b.patroni(a.cfg)
	c, err := p.cluster(ctx)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	j.add("cluster", "%s", describeMembers(c))
	leader := c.leader()
	switch {
	case c.Pause:
		return p, c, nil, nil, refuse("cluster %q is paused (Patroni maintenance mode): use postgres.failover", a.cluster)
	case leader == nil:
		return p, c, nil, nil, refuse("cluster %q has no leader: use postgres.failover", a.cluster)
	case !leader.isRunning():
		return p, c, leader, nil, refuse("leader %s is %s, not running: use postgres.failover", leader.Name, leader.State)
	}
	cand, err := a.pickCandidate(c, leader)
	if err != nil {
		return p, c, leader, nil, err
	}
	lag, how, ok := receivedLag(leader, cand)
	switch {
	case cand.Name == leader.Name:
		return p, c, leader, cand, nil
	case !cand.isRunning():
		return p, c, leader, cand, refuse("candidate %s is %s, not running", cand.Name, cand.State)
	case cand.noFailover():
		return p, c, leader, cand, refuse("candidate %s is tagged nofailover", cand.Name)
	case !ok:
		return p, c, leader, cand, refuse("candidate %s: lag unknown (%s)", cand.Name, how)
	case lag > int64(a.cfg.MaxLag):
		return p, c, leader, cand, refuse("candidate %s lags %d bytes behind leader %s, beyond max_lag %s (%s)", cand.Name, lag, leader.Name, a.cfg.MaxLag, how)
	}
	j.add("candidate", "%s: received lag %d bytes within max_lag %s (%s)", cand.Name, lag, a.cfg.MaxLag, how)
	return p, c, leader, cand, nil
}

// Check reads the cluster: nil when a switchover would be allowed now.
func (a *SwitchoverAction) Check(ctx context.Context, al alert.Alert) error {
	j := a.b.journal(SwitchoverName, a.cluster)
	_, _, leader, cand, err := a.plan(ctx, j)
	if err != nil {
		return err
	}
	if cand.Name == leader.Name {
		return fmt.Errorf("not needed: %s is already the leader", leader.Name)
	}
	return nil
}

// Do switches the leader over to the candidate and verifies it. Interrupted, it finishes a
// request in flight, sends none after, and does not verify; an error before the request says so
// (handlers.NoEffect).
func (a *SwitchoverAction) Do(ctx context.Context, _ handlers.Invocation, al alert.Alert) (handlers.Result, error) {
	return a.b.run(SwitchoverName, a.cluster, func(j *journal) error { return trackEffect(func(sent *bool) error { return a.do(ctx, j, al, sent) }) })
}

func (a *SwitchoverAction) do(ctx context.Context, j *journal, al alert.Alert, sent *bool) error {
	p, c, leader, cand, err := a.plan(ctx, j)
	if done, err := a.alreadyDone(ctx, j, p, c, al); done {
		*sent = true // the leader change exists
		return err
	}
	if err != nil {
		return err
	}
	if cand.Name == leader.Name {
		j.add("done", "%s is already the leader: verify only", leader.Name)
		return p.waitLeader(ctx, j, leader.Name, 0, a.verify)
	}
	start := a.b.now()
	body := map[string]string{"leader": leader.Name, "candidate": cand.Name}
	if err := a.post(ctx, j, p, "POST /switchover", leader.base()+"/switchover", body, sent); err != nil {
		return err
	}
	j.add("switchover", "POST %s/switchover {leader: %s, candidate: %s} accepted after %s", leader.base(), leader.Name, cand.Name,
		a.b.now().Sub(start).Round(time.Millisecond))
	return a.verifyPosted(ctx, j, p, cand.Name, leader.Timeline, al)
}

// Describe tells the approver the cluster's state, the leader and the candidate with its lag.
func (a *SwitchoverAction) Describe(ctx context.Context) (string, error) {
	j := a.b.journal(SwitchoverName, a.cluster)
	_, _, _, _, err := a.plan(ctx, j)
	return describePlan(j, err), nil
}
