package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
)

var leaseT0 = time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)

const leaseTTL = 15 * time.Second

func openLeaseStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), pgtest.NewDatabase(t), store.Options{Version: "v-test", MaxConns: 24})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// acquire calls AcquireLease and fails the test on error or when won differs from want.
func acquire(t *testing.T, s *store.Store, name, holder string, at time.Time, want bool) store.Lease {
	t.Helper()
	l, won, err := s.AcquireLease(t.Context(), name, holder, at, leaseTTL)
	if err != nil {
		t.Fatalf("AcquireLease(%s, %s, %s): %v", name, holder, at.Sub(leaseT0), err)
	}
	if won != want {
		t.Fatalf("AcquireLease(%s, %s, t0+%s) won = %v, want %v (lease %+v)", name, holder, at.Sub(leaseT0), won, want, l)
	}
	return l
}

func renew(t *testing.T, s *store.Store, name, holder string, token int64, at time.Time) bool {
	t.Helper()
	ok, err := s.RenewLease(t.Context(), name, holder, token, at, leaseTTL)
	if err != nil {
		t.Fatalf("RenewLease: %v", err)
	}
	return ok
}

func wantLease(t *testing.T, got store.Lease, holder string, token int64, expires time.Time) {
	t.Helper()
	if got.Holder != holder || got.Token != token || !got.ExpiresAt.Equal(expires) {
		t.Fatalf("lease = %+v, want holder %s token %d expires %s", got, holder, token, expires)
	}
}

func TestLeaderLease(t *testing.T) {
	s := openLeaseStore(t)
	ctx := context.Background()
	at := func(d time.Duration) time.Time { return leaseT0.Add(d) }

	t.Run("free lease is taken with token 1", func(t *testing.T) {
		l := acquire(t, s, "free", "a", at(0), true)
		if l.Name != "free" {
			t.Fatalf("name = %q", l.Name)
		}
		wantLease(t, l, "a", 1, at(leaseTTL))
	})
	t.Run("second holder refused while live", func(t *testing.T) {
		acquire(t, s, "live", "a", at(0), true)
		l := acquire(t, s, "live", "b", at(5*time.Second), false)
		wantLease(t, l, "a", 1, at(leaseTTL)) // the refusal names the live holder
		// At the expiry instant the lease is still the holder's.
		acquire(t, s, "live", "b", at(leaseTTL), false)
	})
	t.Run("takeover after expiry increments token", func(t *testing.T) {
		acquire(t, s, "expiry", "a", at(0), true)
		l := acquire(t, s, "expiry", "b", at(leaseTTL+time.Microsecond), true)
		wantLease(t, l, "b", 2, at(2*leaseTTL+time.Microsecond))
		l = acquire(t, s, "expiry", "a", at(3*leaseTTL), true)
		wantLease(t, l, "a", 3, at(4*leaseTTL)) // a is back: a new token, never its old one
	})
	t.Run("same holder re-acquire keeps token and extends", func(t *testing.T) {
		acquire(t, s, "same", "a", at(0), true)
		l := acquire(t, s, "same", "a", at(5*time.Second), true)
		wantLease(t, l, "a", 1, at(5*time.Second+leaseTTL))
		// Even after its own lease expired, if nobody else held it in between.
		l = acquire(t, s, "same", "a", at(time.Hour), true)
		wantLease(t, l, "a", 1, at(time.Hour+leaseTTL))
	})
	t.Run("renew extends only the live holder's token", func(t *testing.T) {
		acquire(t, s, "renew", "a", at(0), true)
		if !renew(t, s, "renew", "a", 1, at(10*time.Second)) {
			t.Fatal("live holder's renew refused")
		}
		acquire(t, s, "renew", "b", at(10*time.Second+leaseTTL), false) // renewed: still a's
		cases := []struct {
			holder string
			token  int64
			at     time.Duration
		}{
			{"b", 1, 11 * time.Second},                             // not the holder
			{"a", 2, 11 * time.Second},                             // wrong token
			{"a", 1, 10*time.Second + leaseTTL + time.Microsecond}, // expired
		}
		for _, c := range cases {
			if renew(t, s, "renew", c.holder, c.token, at(c.at)) {
				t.Errorf("renew by %s token %d at t0+%s succeeded", c.holder, c.token, c.at)
			}
		}
	})
	t.Run("renew by old holder after takeover fails", func(t *testing.T) {
		acquire(t, s, "stolen", "a", at(0), true)
		l := acquire(t, s, "stolen", "b", at(leaseTTL+time.Second), true)
		if renew(t, s, "stolen", "a", 1, at(leaseTTL+time.Second)) {
			t.Fatal("old holder renewed after takeover")
		}
		if !renew(t, s, "stolen", "b", l.Token, at(leaseTTL+2*time.Second)) {
			t.Fatal("new holder's renew refused")
		}
	})
	t.Run("release lets another take it at once", func(t *testing.T) {
		acquire(t, s, "release", "a", at(0), true)
		if err := s.ReleaseLease(ctx, "release", "a", 1); err != nil {
			t.Fatal(err)
		}
		if renew(t, s, "release", "a", 1, at(time.Second)) {
			t.Fatal("released lease renewed")
		}
		l := acquire(t, s, "release", "b", at(time.Second), true)
		wantLease(t, l, "b", 2, at(time.Second+leaseTTL))
		// A stale release (a's old token) does not free b's lease.
		if err := s.ReleaseLease(ctx, "release", "a", 1); err != nil {
			t.Fatal(err)
		}
		if err := s.ReleaseLease(ctx, "release", "b", 1); err != nil {
			t.Fatal(err)
		}
		acquire(t, s, "release", "c", at(2*time.Second), false)
	})
	t.Run("invalid arguments", func(t *testing.T) {
		for _, c := range []struct {
			name, holder string
			ttl          time.Duration
		}{
			{"", "a", time.Second}, {"x", "", time.Second}, {"x", "a", 0},
		} {
			if _, _, err := s.AcquireLease(ctx, c.name, c.holder, at(0), c.ttl); err == nil {
				t.Errorf("AcquireLease(%q, %q, %s) accepted", c.name, c.holder, c.ttl)
			}
			if _, err := s.RenewLease(ctx, c.name, c.holder, 1, at(0), c.ttl); err == nil {
				t.Errorf("RenewLease(%q, %q, %s) accepted", c.name, c.holder, c.ttl)
			}
		}
	})
}

func TestAcquireLeaseRaceHasOneWinner(t *testing.T) {
	s := openLeaseStore(t)
	const n = 20
	race := func(round int, at time.Time) []store.Lease {
		t.Helper()
		var wg sync.WaitGroup
		start := make(chan struct{})
		type result struct {
			l   store.Lease
			won bool
			err error
		}
		results := make([]result, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				l, won, err := s.AcquireLease(context.Background(), "race", fmt.Sprintf("r%d-h%d", round, i), at, leaseTTL)
				results[i] = result{l, won, err}
			}()
		}
		close(start)
		wg.Wait()
		var winners []store.Lease
		for _, r := range results {
			if r.err != nil {
				t.Fatalf("AcquireLease: %v", r.err)
			}
			if r.won {
				winners = append(winners, r.l)
			}
		}
		return winners
	}
	for round, c := range []struct {
		at    time.Time
		token int64
	}{
		{leaseT0, 1},                             // free
		{leaseT0.Add(leaseTTL + time.Second), 2}, // expired: one takeover, one increment
	} {
		w := race(round, c.at)
		if len(w) != 1 {
			t.Fatalf("round %d: %d winners, want exactly 1: %+v", round, len(w), w)
		}
		if w[0].Token != c.token {
			t.Fatalf("round %d: token %d, want %d", round, w[0].Token, c.token)
		}
	}
}

func TestCheckFence(t *testing.T) {
	s := openLeaseStore(t)
	ctx := context.Background()
	acquire(t, s, "probes", "a", leaseT0, true)
	l := acquire(t, s, "probes", "b", leaseT0.Add(leaseTTL+time.Second), true) // token 2
	now := leaseT0.Add(leaseTTL + 2*time.Second)

	for _, c := range []struct {
		name  string
		lease string
		token int64
		at    time.Time
		stale bool
	}{
		{"current token passes", "probes", l.Token, now, false},
		{"stale token refused", "probes", 1, now, true},
		{"future token refused", "probes", 3, now, true},
		{"expired lease refused", "probes", l.Token, l.ExpiresAt.Add(time.Microsecond), true},
		{"unknown lease refused", "nope", 1, now, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var recorded bool
			err := s.InTx(ctx, func(tx pgx.Tx) error {
				if err := s.CheckFence(ctx, tx, c.lease, c.token, c.at); err != nil {
					return err
				}
				recorded = true
				return nil
			})
			if got := errors.Is(err, store.ErrStaleToken); got != c.stale {
				t.Fatalf("CheckFence err = %v, stale = %v, want %v", err, got, c.stale)
			}
			if recorded == c.stale {
				t.Fatalf("side effect recorded = %v with stale = %v", recorded, c.stale)
			}
		})
	}

	t.Run("takeover waits for a fenced transaction", func(t *testing.T) {
		tx, err := s.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }() // a no-op after the Commit below
		if err := s.CheckFence(ctx, tx, "probes", l.Token, now); err != nil {
			t.Fatal(err)
		}
		type result struct {
			l   store.Lease
			won bool
			err error
		}
		done := make(chan result, 1)
		go func() {
			l, won, err := s.AcquireLease(ctx, "probes", "c", l.ExpiresAt.Add(time.Second), leaseTTL)
			done <- result{l, won, err}
		}()
		// Wait until the takeover is blocked on the row lock.
		testwait.Until(t, 10*time.Second, "the takeover blocked on the lease row", func() bool {
			var waiting bool
			err := s.Pool().QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_stat_activity
			    WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%leader_leases%')`).Scan(&waiting)
			if err != nil {
				t.Fatal(err)
			}
			if waiting {
				return true
			}
			select {
			case r := <-done:
				t.Fatalf("takeover did not wait for the fenced transaction: %+v", r)
			default:
			}
			return false
		})
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.err != nil || !r.won || r.l.Token != l.Token+1 {
			t.Fatalf("takeover after commit = %+v, want won with token %d", r, l.Token+1)
		}
	})
}
