package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// Failover is the postgres.failover handler (Patroni): a leader change when there is no healthy
// leader or the cluster is paused. It can lose data, so it always needs approval.
type Failover struct{ *base }

var (
	_ handlers.Handler         = (*Failover)(nil)
	_ handlers.StaticValidator = (*Failover)(nil)
)

const failoverExample = `rules:
  - name: failover-billing
    when: alert.source == "probe" && alert.name == "billing-db" && alert.status == "firing"
    for: 1m
    actions:
      - handler: postgres.failover
        params: {cluster: billing, candidate: billing-2}
        approval: required           # approval: none is refused at load
`

// Spec describes postgres.failover.
func (h *Failover) Spec() handlers.Spec {
	return handlers.Spec{
		Name: FailoverName,
		Doc: "Patroni failover for a cluster with no running leader, or paused: POST /failover to the candidate " +
			"(default: the running replica that received the most WAL). It can lose what the candidate did not " +
			"receive, so approval is always required; the candidate's last received LSN is in the action's detail.",
		Params:           patroniParams("the member to promote (default: the running replica with the highest received LSN)"),
		Class:            vocab.ClassDisruptive,
		DefaultApproval:  handlers.ApprovalRequired,
		ForbidNoApproval: true,
		DefaultTimeout:   5 * time.Minute,
		Target:           "postgres/<cluster>",
		Scope:            "postgres/<cluster>",
		Example:          failoverExample,
		Results:          patroniResults,
	}
}

// ValidateStatic checks the literal params of a rule.
func (h *Failover) ValidateStatic(raw handlers.Params) error {
	_, err := parsePatroni(h.base, raw, true)
	return err
}

// Build validates rendered params.
func (h *Failover) Build(p handlers.Params) (handlers.Action, error) {
	a, err := parsePatroni(h.base, p, false)
	if err != nil {
		return nil, err
	}
	return &FailoverAction{a}, nil
}

// FailoverAction is one built postgres.failover.
type FailoverAction struct{ *patroniAction }

// plan reads the cluster and returns the candidate, or why not.
func (a *FailoverAction) plan(ctx context.Context, j *journal) (*patroni, *clusterStatus, *member, error) {
	p := a.b.patroni(a.cfg)
	c, err := p.cluster(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	j.add("cluster", "%s", describeMembers(c))
	leader := c.leader()
	if leader != nil && leader.isRunning() && !c.Pause {
		if a.candidate == leader.Name {
			return p, c, leader, nil
		}
		return p, c, nil, refuse("leader %s is running and the cluster is not paused: use postgres.switchover", leader.Name)
	}
	var cand *member
	if a.candidate != "" {
		if cand = c.member(a.candidate); cand == nil {
			return p, c, nil, refuse("candidate %q is not a member of cluster %q", a.candidate, a.cluster)
		}
	} else {
		var best int64 = -1
		for i := range c.Members {
			m := &c.Members[i]
			if m.isLeader() || !m.isRunning() || m.noFailover() || m.status == nil || m.status.XLog.ReceivedLocation == nil {
				continue
			}
			if r := *m.status.XLog.ReceivedLocation; r > best {
				cand, best = m, r
			}
		}
		if cand == nil {
			return p, c, nil, refuse("no running replica reports its received LSN in cluster %q: name a candidate", a.cluster)
		}
	}
	if cand.isLeader() && cand.isRunning() {
		return p, c, cand, nil
	}
	if !cand.isRunning() {
		return p, c, cand, refuse("candidate %s is %s, not running", cand.Name, cand.State)
	}
	j.add("candidate", "%s: %s", cand.Name, evidence(c, cand))
	return p, c, cand, nil
}

// evidence is what an approver needs: the candidate's last received and replayed LSN against
// every other member's.
func evidence(c *clusterStatus, cand *member) string {
	var b strings.Builder
	if st := cand.status; st != nil && st.XLog.ReceivedLocation != nil {
		fmt.Fprintf(&b, "last received LSN %s", LSN(*st.XLog.ReceivedLocation))
		if st.XLog.ReplayedLocation != nil {
			fmt.Fprintf(&b, ", replayed %s", LSN(*st.XLog.ReplayedLocation))
		}
	} else {
		fmt.Fprintf(&b, "last received LSN unknown (GET /patroni: %v), Patroni's lag %s", cand.err, cand.Lag)
	}
	for _, m := range c.Members {
		if m.Name == cand.Name || m.status == nil {
			continue
		}
		switch x := m.status.XLog; {
		case x.Location != nil:
			fmt.Fprintf(&b, "; %s (%s) at %s", m.Name, m.Role, LSN(*x.Location))
		case x.ReceivedLocation != nil:
			fmt.Fprintf(&b, "; %s (%s) received %s", m.Name, m.Role, LSN(*x.ReceivedLocation))
		}
	}
	return b.String()
}

// Check reads the cluster: nil when a failover is needed and possible; the error says why not.
func (a *FailoverAction) Check(ctx context.Context, _ alert.Alert) error {
	j := a.b.journal(FailoverName, a.cluster)
	_, _, cand, err := a.plan(ctx, j)
	if err != nil {
		return err
	}
	if cand.isLeader() && cand.isRunning() {
		return fmt.Errorf("not needed: %s is already the running leader", cand.Name)
	}
	return nil
}

// Do fails the cluster over to the candidate and verifies it. Interrupted, it finishes a request
// in flight, sends none after, and does not verify; an error before the request says so
// (handlers.NoEffect).
func (a *FailoverAction) Do(ctx context.Context, _ handlers.Invocation, al alert.Alert) (handlers.Result, error) {
	return a.b.run(FailoverName, a.cluster, func(j *journal) error { return trackEffect(func(sent *bool) error { return a.do(ctx, j, al, sent) }) })
}

func (a *FailoverAction) do(ctx context.Context, j *journal, al alert.Alert, sent *bool) error {
	p, c, cand, err := a.plan(ctx, j)
	if done, err := a.alreadyDone(ctx, j, p, c, al); done {
		*sent = true // the leader change exists
		return err
	}
	if err != nil {
		return err
	}
	if cand.isLeader() && cand.isRunning() {
		j.add("done", "%s is already the running leader: verify only", cand.Name)
		return p.waitLeader(ctx, j, cand.Name, 0, a.verify)
	}
	oldTL := 0
	for _, m := range c.Members {
		oldTL = max(oldTL, m.Timeline)
	}
	start := a.b.now()
	if err := a.post(ctx, j, p, "POST /failover", cand.base()+"/failover", map[string]string{"candidate": cand.Name}, sent); err != nil {
		return err
	}
	j.add("failover", "POST %s/failover {candidate: %s} accepted after %s", cand.base(), cand.Name, a.b.now().Sub(start).Round(time.Millisecond))
	return a.verifyPosted(ctx, j, p, cand.Name, oldTL, al)
}

// Describe tells the approver the cluster's state and the candidate's last received LSN against
// every other member's: what a failover to it could lose.
func (a *FailoverAction) Describe(ctx context.Context) (string, error) {
	j := a.b.journal(FailoverName, a.cluster)
	_, _, _, err := a.plan(ctx, j)
	return describePlan(j, err), nil
}
