package postgres

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/delivery"
	"github.com/responder-sre/responder/vocab"
)

// Promote is the postgres.promote handler: it promotes a standby of a plain streaming-replication
// cluster once responder itself sees the primary down, fencing the old primary when it can.
type Promote struct{ *base }

var (
	_ handlers.Handler         = (*Promote)(nil)
	_ handlers.StaticValidator = (*Promote)(nil)
)

const promoteExample = `rules:
  - name: promote-legacy-standby
    when: alert.source == "probe" && alert.name == "legacy-db" && alert.status == "firing"
    for: 1m
    actions:
      - handler: postgres.promote
        params: {cluster: legacy, candidate: standby-1}
`

// Spec describes postgres.promote.
func (h *Promote) Spec() handlers.Spec {
	return handlers.Spec{
		Name: PromoteName,
		Doc: "Promotes a standby of a plain streaming-replication cluster: confirms the primary is down from " +
			"responder's side (detect), waits for the standby to replay what it received, fences the old primary " +
			"when reachable, runs pg_promote and verifies a write. Refuses Patroni clusters and a second primary.",
		Params: []handlers.Param{
			{Name: "cluster", Type: handlers.String, Required: true, Target: true, Doc: "a streaming cluster in handlers.postgres.clusters"},
			{Name: "candidate", Type: handlers.String, Doc: "the standby to promote (default: the first configured)"},
			{Name: "require_primary_down", Type: handlers.Bool, Doc: "default true: refuse unless detect sees the primary down; false promotes a reachable primary's standby after fencing it (planned)"},
			{Name: "catchup_timeout", Type: handlers.Duration, Doc: "how long to wait for the standby to replay what it received (default 1m)"},
			{Name: "promote_timeout", Type: handlers.Duration, Doc: "pg_promote's wait (default 1m)"},
		},
		Class:           vocab.ClassDisruptive,
		DefaultApproval: handlers.ApprovalRequired,
		DefaultTimeout:  10 * time.Minute,
		Target:          "postgres/<cluster>",
		Scope:           "postgres/<cluster>",
		Example:         promoteExample,
		Results:         promoteResults,
	}
}

// promoteResults are the result fields of postgres.promote, filled once the new primary is
// verified (also when it was promoted already and only verified).
var promoteResults = []handlers.ResultField{
	{Name: "new_primary", Type: handlers.String, Doc: "the promoted server's address, host:port (from its configured DSN): what clients connect to now"},
	{Name: "new_primary_name", Type: handlers.String, Doc: "the promoted standby's name in handlers.postgres.clusters"},
	{Name: "old_primary", Type: handlers.String, Doc: "the former primary's address, host:port"},
	{Name: "timeline", Type: handlers.Int, Doc: "the timeline the new primary writes on"},
	{Name: "lsn", Type: handlers.String, Doc: "the new primary's WAL position when it was verified, such as 0/3000148"},
}

// ValidateStatic checks the literal params of a rule.
func (h *Promote) ValidateStatic(raw handlers.Params) error {
	_, err := h.parse(raw, true)
	return err
}

// Build validates rendered params.
func (h *Promote) Build(p handlers.Params) (handlers.Action, error) {
	return h.parse(p, false)
}

func (h *Promote) parse(p handlers.Params, static bool) (*PromoteAction, error) {
	r := newReader(p, static)
	a := &PromoteAction{h: h}
	name, known := r.String("cluster")
	cand, candKnown := r.String("candidate")
	a.requireDown = r.Bool("require_primary_down", true)
	a.catchup = r.Duration("catchup_timeout", DefaultCatchupTimeout)
	a.promoteWait = r.Duration("promote_timeout", DefaultPromoteWait)
	if known {
		a.cluster = name
		c, err := h.cluster(name, false)
		if err != nil {
			r.Add(err)
		} else {
			a.cfg = c
			if pn, err := newNode(*c.Primary); err != nil {
				r.Add(err)
			} else {
				a.primary = pn
			}
			var sb *config.PostgresNode
			switch {
			case candKnown:
				for i := range c.Standbys {
					if c.Standbys[i].Name == cand {
						sb = &c.Standbys[i]
					}
				}
				if sb == nil {
					names := make([]string, len(c.Standbys))
					for i, s := range c.Standbys {
						names[i] = s.Name
					}
					r.Failf("param \"candidate\": %q is not a standby of cluster %q (%s)", cand, name, strings.Join(names, ", "))
				}
			case !static || p["candidate"] == nil:
				sb = &c.Standbys[0]
			}
			if sb != nil {
				if n, err := newNode(*sb); err != nil {
					r.Add(err)
				} else {
					a.candidate = n
				}
			}
		}
	} else if !static {
		r.Failf("param \"cluster\" is required")
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	return a, nil
}

// PromoteAction is one built postgres.promote.
type PromoteAction struct {
	h           *Promote
	cluster     string
	cfg         config.PostgresCluster
	primary     node
	candidate   node
	requireDown bool
	catchup     time.Duration
	promoteWait time.Duration
}

// Target is "postgres/<cluster>".
func (a *PromoteAction) Target() string { return targetOf(a.cluster) }

// Scope is "postgres/<cluster>".
func (a *PromoteAction) Scope() string { return targetOf(a.cluster) }

// Check re-reads both servers: nil when a promotion is still needed.
func (a *PromoteAction) Check(ctx context.Context, _ alert.Alert) error {
	pri, cand := a.h.probe(ctx, a.primary), a.h.probe(ctx, a.candidate)
	switch {
	case !cand.reachable:
		return fmt.Errorf("candidate %s is unreachable: %w", a.candidate, cand.err)
	case !cand.inRecovery:
		return fmt.Errorf("not needed: candidate %s is already a primary", a.candidate)
	case a.requireDown && pri.reachable:
		return fmt.Errorf("not needed: primary %s answers (%s)", a.primary, pri)
	}
	return nil
}

// Do promotes the candidate (see the package doc for the steps and their refusals). Interrupted
// (handlers.Interrupted), it finishes the step in progress when that step changes something (the
// fence, pg_promote), abandons a wait (detect, catch-up, verify) at once, and takes no further
// step; an error before the fence began says so (handlers.NoEffect).
func (a *PromoteAction) Do(ctx context.Context, inv handlers.Invocation, al alert.Alert) (handlers.Result, error) {
	return a.h.run(PromoteName, a.cluster, func(j *journal) error {
		return trackEffect(func(sent *bool) error { return a.do(ctx, inv, j, al, sent) })
	})
}

func (a *PromoteAction) do(ctx context.Context, inv handlers.Invocation, j *journal, al alert.Alert, sent *bool) error {
	h := a.h
	pri, cand := h.probe(ctx, a.primary), h.probe(ctx, a.candidate)
	j.add("state", "primary %s: %s; candidate %s: %s", a.primary, describe(pri), a.candidate, describe(cand))
	if done, err := a.settled(ctx, j, pri, cand, sent); done {
		return err
	}
	if a.requireDown {
		if err := a.detect(ctx, j, pri); err != nil {
			return err
		}
	} else {
		j.add("detect", "skipped: require_primary_down is false")
	}
	if err := a.stop(ctx, j, "the catch-up"); err != nil {
		return err
	}
	if _, err := a.catchUp(ctx, j, 0); err != nil {
		return err
	}
	if err := a.stop(ctx, j, "the fence"); err != nil {
		return err
	}
	*sent = true
	fencedAt, err := a.fenceStep(ctx, j, inv.IdempotencyKey)
	if err != nil {
		return err
	}
	if err := h.step(ctx, StepFenced); err != nil {
		return err
	}
	if err := a.stop(ctx, j, "the promotion"); err != nil {
		return fmt.Errorf("old primary fenced at %q, candidate not promoted: %w", fencedAt, err)
	}
	if err := a.promoteStep(ctx, j, fencedAt); err != nil {
		return err
	}
	if err := h.step(ctx, StepPromoted); err != nil {
		return err
	}
	if err := a.stop(ctx, j, "the verification"); err != nil {
		return fmt.Errorf("candidate promoted, not verified: %w", err)
	}
	if err := a.verify(ctx, j); err != nil {
		return err
	}
	j.recovered(al, a.cfg.RTO.D())
	return nil
}

// settled answers for the states in which Do takes no step: a candidate that cannot be promoted,
// a cluster not in the configured shape, or a promotion already done (then it verifies only).
// done is false when Do goes on with the steps.
func (a *PromoteAction) settled(ctx context.Context, j *journal, pri, cand state, sent *bool) (done bool, err error) {
	switch {
	case !cand.reachable:
		return true, handlers.Fail(vocab.ReasonServerError, "candidate %s is unreachable: %v", a.candidate, cand.err)
	case !cand.inRecovery:
		// Promoted already (this action before a crash, or someone else): verify only.
		*sent = true // the promotion exists
		if pri.reachable && !pri.inRecovery && !pri.readOnly {
			return true, refuse("two primaries: candidate %s is promoted and the old primary %s accepts writes (%s); "+
				"responder will not act further: fence or demote one of them by hand", a.candidate, a.primary, pri)
		}
		if err := a.verify(ctx, j); err != nil {
			return true, err
		}
		j.add("done", "already promoted: verified only, nothing re-run")
		return true, nil
	case pri.reachable && pri.inRecovery:
		return true, refuse("the configured primary %s is itself a standby (%s): the cluster is not in the configured shape", a.primary, pri)
	case pri.reachable && (pri.fenced != "" || pri.readOnly):
		what := "read-only (default_transaction_read_only = on), not marked by responder"
		if pri.fenced != "" {
			what = "fenced at " + pri.fenced
		}
		return true, halfDone("old primary %s is %s, candidate %s is not promoted (%s)", a.primary, what, a.candidate, cand)
	case cand.paused:
		return true, refuse("replay is paused on candidate %s (%s): resume it (pg_wal_replay_resume) or promote by hand", a.candidate, cand)
	}
	return false, nil
}

// stop returns nil unless ctx was interrupted; then it journals that no further step is taken and
// returns why.
func (a *PromoteAction) stop(ctx context.Context, j *journal, next string) error {
	err := handlers.Stop(ctx, next)
	if err != nil {
		j.add("stopped", "%v", err)
	}
	return err
}

// fenceStep runs the fence to its end even when interrupted meanwhile (a half-applied fence is
// worse than either state), bounded by the action's deadline.
func (a *PromoteAction) fenceStep(ctx context.Context, j *journal, key string) (string, error) {
	sctx, cancel := handlers.StepContext(ctx)
	defer cancel()
	return a.fence(sctx, j, key)
}

// promoteStep runs pg_promote on the candidate to its end even when interrupted meanwhile,
// bounded by the action's deadline.
func (a *PromoteAction) promoteStep(ctx context.Context, j *journal, fencedAt string) error {
	h := a.h
	sctx, cancel := handlers.StepContext(ctx)
	defer cancel()
	c, err := a.candidate.connect(sctx, h.connect)
	if err != nil {
		return handlers.Fail(vocab.ReasonServerError, "%v", err)
	}
	defer closeConn(sctx, c)
	start := h.now()
	if err := promote(sctx, c, a.promoteWait); err != nil {
		if fencedAt != "" {
			return fmt.Errorf("old primary fenced at %s, promotion failed: %w", fencedAt, err)
		}
		return err
	}
	j.add("promote", "pg_promote(wait => true) on %s returned after %s", a.candidate, h.now().Sub(start).Round(time.Millisecond))
	return nil
}

func describe(s state) string {
	if !s.reachable {
		return "unreachable (" + s.err.Error() + ")"
	}
	return s.String()
}

// detect confirms the primary is down: Failures consecutive failed attempts (the first read
// counts) spread over at least MinPeriod. Any answer refuses: the primary is not down.
func (a *PromoteAction) detect(ctx context.Context, j *journal, first state) error {
	h, d := a.h, a.cfg.Detect
	if first.reachable {
		return refuse("primary %s answers (%s): not down from responder's side; set require_primary_down: false for a planned promotion", a.primary, first)
	}
	start := h.now()
	interval := time.Duration(0)
	if d.Failures > 1 {
		interval = d.MinPeriod.D() / time.Duration(d.Failures-1)
	}
	j.add("detect", "attempt 1/%d failed: %v", d.Failures, first.err)
	for n := 2; n <= d.Failures || h.now().Sub(start) < d.MinPeriod.D(); n++ {
		wait := interval
		if n > d.Failures { // the attempts are done but the period is not
			wait = d.MinPeriod.D() - h.now().Sub(start)
		}
		if err := h.sleep(ctx, wait); err != nil {
			return err
		}
		s := h.probe(ctx, a.primary)
		if s.reachable {
			j.add("detect", "attempt %d answered (%s)", n, s)
			return refuse("primary %s answered on attempt %d after %d failures over %s: a blip, not down",
				a.primary, n, n-1, h.now().Sub(start).Round(time.Millisecond))
		}
		j.add("detect", "attempt %d/%d failed: %v", n, d.Failures, s.err)
	}
	j.add("detect", "primary down: %d consecutive failures over %s (detect: %d over %s)",
		d.Failures, h.now().Sub(start).Round(time.Millisecond), d.Failures, d.MinPeriod)
	return nil
}

// catchUp waits until the candidate has replayed all it received, and (target > 0) received and
// replayed up to target.
func (a *PromoteAction) catchUp(ctx context.Context, j *journal, target LSN) (state, error) {
	h := a.h
	start := h.now()
	deadline := start.Add(a.catchup)
	for {
		s := h.probe(ctx, a.candidate)
		if err := handlers.Stop(ctx, "the end of the catch-up"); err != nil {
			return s, err
		}
		if !s.reachable {
			return s, handlers.Fail(vocab.ReasonServerError, "candidate %s became unreachable: %v", a.candidate, s.err)
		}
		if !s.inRecovery {
			return s, halfDone("candidate %s left recovery before responder promoted it (%s)", a.candidate, s)
		}
		recv := s.received
		if !s.hasRecv || recv < s.replayed {
			recv = s.replayed
		}
		if s.replayed >= recv && (target == 0 || s.replayed >= target) {
			if target == 0 {
				j.add("catchup", "candidate replayed all it received: received %s, replayed %s (waited %s)",
					s.received, s.replayed, h.now().Sub(start).Round(time.Millisecond))
			} else {
				j.add("catchup", "candidate received and replayed the fenced primary's WAL up to %s: replayed %s (waited %s)",
					target, s.replayed, h.now().Sub(start).Round(time.Millisecond))
			}
			return s, nil
		}
		if !h.now().Before(deadline) {
			msg := fmt.Sprintf("candidate %s replayed %s of received %s", a.candidate, s.replayed, s.received)
			if target > 0 {
				msg += fmt.Sprintf(" (the fenced primary is at %s)", target)
			}
			return s, handlers.Fail(vocab.ReasonTimeout, "%s after catchup_timeout %s", msg, a.catchup)
		}
		if err := h.sleep(ctx, min(h.poll, deadline.Sub(h.now()))); err != nil {
			return s, err
		}
	}
}

// fence makes the old primary unable to take writes: the SQL fence when it is reachable, and the
// configured fence URL, marked with the idempotency key. It returns the fence marker ("" when
// nothing was fenced).
func (a *PromoteAction) fence(ctx context.Context, j *journal, key string) (string, error) {
	h := a.h
	if key == "" {
		key = "responder"
	}
	marker := h.now().UTC().Format(time.RFC3339) + " by " + key
	fenced := ""
	if c, err := a.primary.connect(ctx, h.connect); err != nil {
		j.add("fence", "old primary %s unreachable, SQL fence skipped: %v", a.primary, err)
	} else {
		defer closeConn(ctx, c)
		n, err := fenceSQL(ctx, c, marker)
		if err != nil {
			return "", handlers.Fail(vocab.ReasonServerError, "fence %s: %v; nothing promoted", a.primary, err)
		}
		fenced = marker
		flushed, err := flushWAL(ctx, c)
		if err != nil {
			return "", halfDone("fenced %s at %s, then could not read its WAL position: %v", a.primary, marker, err)
		}
		j.add("fence", "old primary %s: default_transaction_read_only = on, responder.fenced = %q, reloaded, %d sessions terminated; WAL flushed at %s",
			a.primary, marker, n, flushed)
		if _, err := a.catchUp(ctx, j, flushed); err != nil {
			return fenced, halfDone("fenced %s at %s, not promoted: %v", a.primary, marker, err)
		}
	}
	if f := a.cfg.Fence; f.URL != "" {
		if err := a.fenceHTTP(ctx, f, key); err != nil {
			if fenced != "" {
				return fenced, halfDone("SQL-fenced %s at %s, fence URL failed: %v", a.primary, fenced, err)
			}
			return "", err
		}
		j.add("fence", "%s %s answered 2xx", f.Method, fenceURL(f))
		if fenced == "" {
			fenced = marker
		}
	}
	return fenced, nil
}

// fenceHTTP calls the fence URL. Secret references in its headers are resolved now, and their
// values scrubbed from the error; errors show the URL without query, userinfo or webhook path.
func (a *PromoteAction) fenceHTTP(ctx context.Context, f config.PostgresFence, key string) error {
	var rv handlers.Revealed
	return rv.Error(a.callFence(ctx, f, key, &rv))
}

func (a *PromoteAction) callFence(ctx context.Context, f config.PostgresFence, key string, rv *handlers.Revealed) error {
	rctx, cancel := context.WithTimeout(ctx, f.Timeout.D())
	defer cancel()
	var body io.Reader
	if f.Body != "" {
		body = strings.NewReader(f.Body)
	}
	req, err := http.NewRequestWithContext(rctx, f.Method, f.URL, body)
	if err != nil {
		return handlers.Fail(vocab.ReasonBadParam, "fence url %s: %s", fenceURL(f), handlers.URLRedactor{}.Error(err))
	}
	for k, v := range f.Headers {
		val, err := rv.Reveal(ctx, a.h.secrets, v.Value())
		if err != nil {
			return fmt.Errorf("fence header %s: %w; nothing promoted", k, err)
		}
		req.Header.Set(k, val)
	}
	req.Header.Set("Idempotency-Key", "responder-"+key)
	if f.Body != "" && req.Header.Get("Content-Type") == "" && strings.HasPrefix(strings.TrimSpace(f.Body), "{") {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := delivery.Send(a.h.http, req, 0)
	if err != nil {
		return handlers.Fail(vocab.ReasonServerError, "fence %s %s: %s; nothing promoted", f.Method, fenceURL(f), handlers.URLRedactor{}.Error(err))
	}
	// An answer other than 2xx is a fence that did not confirm: server_error whatever the status.
	if resp.StatusCode/100 != 2 {
		return handlers.Fail(vocab.ReasonServerError, "fence %s %s answered %s; nothing promoted", f.Method, fenceURL(f), resp.Status)
	}
	return nil
}

// fenceURL is the fence URL as errors and the journal show it.
func fenceURL(f config.PostgresFence) string { return handlers.URLRedactor{}.String(f.URL) }

// verify checks the candidate is out of recovery and takes a write.
func (a *PromoteAction) verify(ctx context.Context, j *journal) error {
	h := a.h
	c, err := a.candidate.connect(ctx, h.connect)
	if err != nil {
		return handlers.Fail(vocab.ReasonNotRecovered, "verify: %v", err)
	}
	defer closeConn(ctx, c)
	s, err := readState(ctx, c)
	if err != nil {
		return handlers.Fail(vocab.ReasonNotRecovered, "verify: %v", err)
	}
	if s.inRecovery {
		return handlers.Fail(vocab.ReasonNotRecovered, "verify: %s is still in recovery after pg_promote", a.candidate)
	}
	if err := testWrite(ctx, c); err != nil {
		return handlers.Fail(vocab.ReasonNotRecovered, "verify: %s is out of recovery but refuses writes: %v", a.candidate, err)
	}
	j.add("verify", "%s: pg_is_in_recovery() = false, test write committed, WAL at %s", a.candidate, s.current)
	j.set("new_primary", a.candidate.addr)
	j.set("new_primary_name", a.candidate.name)
	j.set("old_primary", a.primary.addr)
	j.set("lsn", s.current.String())
	if tl, err := timeline(ctx, c); err != nil {
		j.add("verify", "timeline unknown: %v", err) // the promotion stands; the field is left out
	} else {
		j.set("timeline", tl)
	}
	return nil
}

// Describe tells the approver what responder sees of the old primary and the candidate (reachable,
// in recovery, fenced, received and replayed LSNs).
func (a *PromoteAction) Describe(ctx context.Context) (string, error) {
	pri, cand := a.h.probe(ctx, a.primary), a.h.probe(ctx, a.candidate)
	return fmt.Sprintf("primary %s: %s; candidate %s: %s", a.primary, describe(pri), a.candidate, describe(cand)), nil
}
