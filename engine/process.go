package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// Process evaluates every rule against alerts and commits, in one transaction, the incidents they
// open or resolve, the actions they plan and the audit trail. Replaying the same alerts is a no-op.
// An error means nothing was committed; the caller retries (the bus keeps the message).
//
// It matches (match.go: pure, from the batch, the rules, the firing snapshot and the time) and
// commits what it matched (commit.go: one transaction).
func (e *Engine) Process(ctx context.Context, alerts []alert.Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	set := e.rules.Load()
	now := e.now()
	firing, err := e.firingSet(ctx, set, alerts)
	if err != nil {
		return err
	}
	pl := e.matcher().match(set, alerts, firing, now)
	e.matched(pl)
	if pl.empty() {
		return nil
	}
	opened, resolved, err := e.commit(ctx, pl)
	if err != nil {
		return err
	}
	e.noteBatch()
	e.m.incidents.WithLabelValues("opened").Add(float64(opened))
	e.m.incidents.WithLabelValues("resolved").Add(float64(resolved))
	if opened > 0 || resolved > 0 {
		e.Kick()
	}
	return nil
}

// matched counts and logs what matching a batch found, whether or not it commits.
func (e *Engine) matched(pl *plan) {
	for _, f := range pl.failures {
		e.m.ruleErrors.WithLabelValues(f.rule).Inc()
		e.log.Warn("rule evaluation failed", "rule", f.rule, "alert", f.alert.Name, "fingerprint", f.alert.Fingerprint, "err", f.err)
	}
	for r, n := range pl.matches {
		e.m.ruleMatches.WithLabelValues(r).Add(float64(n))
	}
}

// firingSet is the snapshot behind firing(): the alerts of open incidents, every firing alert
// recorded while a rule uses firing() (received within firingTTL), and this batch's firing alerts. It is
// only read from the store when some rule uses firing() (or probe(): then it also holds the
// probes' firing alerts, withProbes).
func (e *Engine) firingSet(ctx context.Context, set *rules.Set, batch []alert.Alert) (rules.FiringSet, error) {
	if !set.UsesFiring {
		return noneFiring{}, nil
	}
	open, err := e.st.FiringAlerts(ctx, e.now().Add(-firingTTL))
	if err != nil {
		return nil, err
	}
	fs := firingSnapshot{}
	for _, o := range open {
		fs[o.Name] = append(fs[o.Name], o.Labels)
	}
	for _, a := range batch {
		if a.Status == alert.StatusFiring {
			fs[a.Name] = append(fs[a.Name], a.Labels)
		}
	}
	if set.UsesProbe {
		return e.withProbes(ctx, fs, batch)
	}
	return fs, nil
}

// firingTTL is how long a firing alert counts for firing() without being received again:
// Alertmanager re-sends firing alerts every repeat_interval (4h by default), probes every 5m.
const firingTTL = 24 * time.Hour

// locate sets the action's target, scope, member and (awaiting approval) evidence. When they need
// a lookup (handlers.Resolver, handlers.Describer), it is taken from p.lk, made outside the
// transaction; a lookup not made yet is noted there and the action left unlocated: inPlanTx rolls
// the transaction back and runs it again once the lookup is made.
func (p *planner) locate(na *store.NewAction, act handlers.Action, key string) error {
	_, resolves := act.(handlers.Resolver)
	_, describes := act.(handlers.Describer)
	describe := describes && na.State == vocab.StateAwaitingApproval
	l := &lookup{act: act, describe: describe}
	switch {
	case !resolves && !describe:
		l.locate()
	case p.lk != nil && !p.lk.inPlace:
		if describe {
			key = "describe\x00" + key
		}
		done, ok := p.lk.done[key]
		if !ok {
			p.lk.need(key, l)
			return nil
		}
		l = done
	case p.ctx != nil: // a caller that cannot run its transaction again: in place, bounded
		l.run(p.ctx, p.e.log)
	default:
		l.locate()
	}
	na.Target, na.Scope, na.Member, na.Evidence = l.target, l.scope, l.member, l.evidence
	return l.err
}

// resolveTimeout bounds one handler lookup while planning.
const resolveTimeout = 5 * time.Second

// lookupRounds bounds how often a planning transaction is run again for lookups it met: each
// round makes the lookups the last one met; only when concurrent changes keep bringing new ones
// are the rest made in place.
const lookupRounds = 3

// lookups are the calls planning makes to handlers' peers (handlers.Resolver, Describer), made
// with no transaction open: they may be slow, and a row lock or the kill switch's lock held
// meanwhile would stall every other replica and POST /api/v1/pause.
type lookups struct {
	done    map[string]*lookup // by handler and rendered params
	missing map[string]*lookup
	inPlace bool // the last round: lookups are made inside the transaction
}

func (lk *lookups) need(key string, l *lookup) {
	if lk.missing == nil {
		lk.missing = map[string]*lookup{}
	}
	lk.missing[key] = l
}

// lookup is one built action's lookup and what it found.
type lookup struct {
	act                             handlers.Action
	describe                        bool
	target, scope, member, evidence string
	err                             error // the handler's code panicked
}

// run resolves the action's target and describes it for its approver, each bounded. It often
// runs in a goroutine of its own, beyond the planning transaction's panic recovery: a panic in the
// handler's code fails this action alone.
func (l *lookup) run(ctx context.Context, log *slog.Logger) {
	l.err = calm(func() error { l.lookUp(ctx, log); return nil })
}

func (l *lookup) lookUp(ctx context.Context, log *slog.Logger) {
	if r, ok := l.act.(handlers.Resolver); ok {
		// The target needs a lookup (a pod's workload); on failure Target falls back.
		rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
		if err := r.Resolve(rctx); err != nil {
			log.Warn("could not resolve the action's target", "err", err)
		}
		cancel()
	}
	l.locate()
	if d, ok := l.act.(handlers.Describer); ok && l.describe {
		dctx, cancel := context.WithTimeout(ctx, resolveTimeout)
		text, err := d.Describe(dctx)
		cancel()
		if err != nil {
			text = "could not describe the situation: " + err.Error()
		}
		l.evidence = text
	}
}

// calm runs fn, a call into a handler's code, turning a panic into an error.
func calm(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic in the handler: %v", v)
		}
	}()
	return fn()
}

func (l *lookup) locate() {
	l.target, l.scope = l.act.Target(), l.act.Scope()
	if m, ok := l.act.(handlers.WorkloadMember); ok {
		l.member = m.Member()
	}
}

// errLookups rolls back a planning transaction that met lookups not made yet.
var errLookups = errors.New("planning needs handler lookups")

// inPlanTx runs fn, which plans with lk, in a transaction. When the planning met lookups not made
// yet, the transaction is rolled back, the lookups are made (concurrently, bounded) with no
// transaction open, and fn runs again in a new transaction: fn must start from scratch each time.
func (e *Engine) inPlanTx(ctx context.Context, lk *lookups, fn func(pgx.Tx) error) error {
	for round := 1; ; round++ {
		lk.missing, lk.inPlace = nil, round > lookupRounds
		err := e.st.InTx(ctx, func(tx pgx.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			if len(lk.missing) > 0 {
				return errLookups
			}
			return nil
		})
		if !errors.Is(err, errLookups) {
			return err
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for _, l := range lk.missing {
			wg.Add(1)
			sem <- struct{}{}
			go func() { defer wg.Done(); defer func() { <-sem }(); l.run(ctx, e.log) }()
		}
		wg.Wait()
		if lk.done == nil {
			lk.done = map[string]*lookup{}
		}
		maps.Copy(lk.done, lk.missing)
	}
}
