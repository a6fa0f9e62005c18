package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/store"
)

// releaseTimeout bounds the release of the lease after Run's context ended.
const releaseTimeout = 5 * time.Second

// Options configure an Elector.
type Options struct {
	// TTL is how long a lease lasts without renewal (default 15s).
	TTL time.Duration
	// RenewEvery is how often the leader renews and a follower tries to acquire (default TTL/3;
	// must be shorter than TTL).
	RenewEvery time.Duration
	// Now is the clock lease times are taken from (default time.Now).
	Now        func() time.Time
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// LeaseStore keeps the leader lease rows an Elector takes, renews and gives up; *store.Store
// implements it. Lease times are the caller's clock; see the package doc for the discipline.
type LeaseStore interface {
	// AcquireLease takes lease name for holder until now+ttl when it is free, expired or already
	// holder's, and reports whether it did; on refusal it returns the current holder's live lease.
	AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (store.Lease, bool, error)
	// RenewLease extends holder's lease (with token) to now+ttl; false means holder lost it.
	RenewLease(ctx context.Context, name, holder string, token int64, now time.Time, ttl time.Duration) (bool, error)
	// ReleaseLease gives holder's lease up at once, keeping the token; a lease holder no longer
	// holds with token is left alone.
	ReleaseLease(ctx context.Context, name, holder string, token int64) error
}

// Elector holds or waits for the leader lease called name on behalf of holder.
type Elector struct {
	st     LeaseStore
	name   string
	holder string
	o      Options
	log    *slog.Logger

	mu         sync.Mutex
	token      int64     // the token of the lease this elector holds; 0 when it holds none
	validUntil time.Time // local clock: start of the last successful acquire or renew + TTL
}

// New returns an elector for lease name held as holder (unique per process incarnation). It
// registers responder_leader{name} on o.Registerer.
func New(st LeaseStore, name, holder string, o Options) (*Elector, error) {
	switch {
	case st == nil:
		return nil, errors.New("leader: nil store")
	case name == "" || holder == "":
		return nil, errors.New("leader: name and holder must be set")
	}
	if o.TTL == 0 {
		o.TTL = 15 * time.Second
	}
	if o.RenewEvery == 0 {
		o.RenewEvery = o.TTL / 3
	}
	if o.TTL < 0 || o.RenewEvery <= 0 || o.RenewEvery >= o.TTL {
		return nil, fmt.Errorf("leader: renew_every %s must be positive and shorter than ttl %s", o.RenewEvery, o.TTL)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	e := &Elector{st: st, name: name, holder: holder, o: o,
		log: o.Logger.With("lease", name, "holder", holder)}
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "responder", Name: "leader",
		Help:        "1 while this replica holds the leader lease called name, else 0.",
		ConstLabels: prometheus.Labels{"name": name}},
		func() float64 {
			if _, ok := e.Leading(); ok {
				return 1
			}
			return 0
		})
	if err := o.Registerer.Register(g); err != nil {
		return nil, fmt.Errorf("leader: register metrics for %s: %w", name, err)
	}
	return e, nil
}

// Leading returns the fencing token and true while this elector leads: its last successful
// acquire or renew is younger than the TTL by the local clock. Leadership can end right after;
// fence side effects with store.CheckFence and the token.
func (e *Elector) Leading() (token int64, ok bool) {
	now := e.o.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.token == 0 || !now.Before(e.validUntil) {
		return 0, false
	}
	return e.token, true
}

// Run acquires and renews the lease every RenewEvery until ctx ends, then releases it if held.
// It returns nil once ctx has ended.
func (e *Elector) Run(ctx context.Context) error {
	t := time.NewTicker(e.o.RenewEvery)
	defer t.Stop()
	for {
		e.step(ctx)
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
			defer cancel()
			e.release(rctx)
			return nil
		case <-t.C:
		}
	}
}

// step renews the lease when this elector holds it, else tries to acquire it.
func (e *Elector) step(ctx context.Context) {
	start := e.o.Now() // validity counts from before the call: the store's expiry is start+TTL
	e.mu.Lock()
	token := e.token
	e.mu.Unlock()

	if token != 0 {
		ok, err := e.st.RenewLease(ctx, e.name, e.holder, token, start, e.o.TTL)
		switch {
		case err != nil:
			// Keep the token: Leading turns false by itself once the TTL has passed locally, and
			// the next renewal tells whether the lease is still ours.
			if ctx.Err() == nil {
				e.log.Warn("renew leader lease failed", "token", token, "err", err)
			}
		case ok:
			e.mu.Lock()
			e.validUntil = start.Add(e.o.TTL)
			e.mu.Unlock()
		default:
			e.stepDown(token, "renewal refused: the lease expired or another holder took it")
		}
		return
	}

	l, won, err := e.st.AcquireLease(ctx, e.name, e.holder, start, e.o.TTL)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			e.log.Warn("acquire leader lease failed", "err", err)
		}
	case won:
		e.mu.Lock()
		e.token, e.validUntil = l.Token, start.Add(e.o.TTL)
		e.mu.Unlock()
		e.log.Info("became leader", "token", l.Token)
	}
}

func (e *Elector) stepDown(token int64, reason string) {
	e.mu.Lock()
	if e.token != token {
		e.mu.Unlock()
		return
	}
	e.token, e.validUntil = 0, time.Time{}
	e.mu.Unlock()
	e.log.Warn("lost leadership", "token", token, "reason", reason)
}

// release gives the lease up so another replica takes over at once.
func (e *Elector) release(ctx context.Context) {
	e.mu.Lock()
	token := e.token
	e.token, e.validUntil = 0, time.Time{}
	e.mu.Unlock()
	if token == 0 {
		return
	}
	if err := e.st.ReleaseLease(ctx, e.name, e.holder, token); err != nil {
		e.log.Warn("release leader lease failed; it expires after its ttl", "token", token, "err", err)
		return
	}
	e.log.Info("released leadership", "token", token)
}
