package postgres

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/internal/clock"
	"github.com/responder-sre/responder/internal/testwait"
)

// TestPromotePausedDuringCatchUpTakesNoFurtherStep: the standby received WAL it has not replayed
// (recovery_min_apply_delay), so the promotion waits in catch-up; a pause then stops it at once:
// no fence, no promotion, and the error says nothing was changed (the engine records failed/paused).
func TestPromotePausedDuringCatchUpTakesNoFurtherStep(t *testing.T) {
	p := startPair(t)
	sqlExec(t, p.standby.URL("postgres"), `ALTER SYSTEM SET recovery_min_apply_delay = '1h'`)
	sqlExec(t, p.standby.URL("postgres"), `SELECT pg_reload_conf()`)
	testwait.Until(t, 10*time.Second, "the standby applies the delay", func() bool {
		var d string
		return queryRow(t, p.standby.URL("postgres"), `SHOW recovery_min_apply_delay`, &d) == nil && d == "1h"
	})
	sqlExec(t, p.primary.URL("postgres"), `INSERT INTO before_failover VALUES (2)`)
	testwait.Until(t, 30*time.Second, "the standby received WAL it did not replay", func() bool {
		var behind bool
		return queryRow(t, p.standby.URL("postgres"), `SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()`, &behind) == nil && behind
	})

	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	sleeps := 0
	o := Options{Sleep: func(sctx context.Context, d time.Duration) error {
		if sleeps++; sleeps == 3 { // the catch-up polls; the pause comes while it waits
			cancel(handlers.ErrPaused)
		}
		return clock.Sleep(sctx, d)
	}}
	start := time.Now()
	res, err := p.promote(t, o, handlers.Params{"cluster": "legacy", "require_primary_down": false}).Do(ctx, handlers.Invocation{}, alert.Alert{})
	if !errors.Is(err, handlers.ErrPaused) || !handlers.HadNoEffect(err) {
		t.Fatalf("Do = %v (no effect: %v), want the pause before any effect\n%s", err, handlers.HadNoEffect(err), res.Detail)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Do took %s: the catch-up was not abandoned at once", took)
	}
	t.Logf("paused during catch-up:\n%s", res.Detail)
	for _, step := range []string{"fence:", "promote:", "verify:"} {
		if strings.Contains(res.Detail, step) {
			t.Errorf("step %q taken after the pause:\n%s", step, res.Detail)
		}
	}
	if !inRecovery(t, p.standby.URL("postgres")) {
		t.Fatal("the standby was promoted after the pause")
	}
	var ro string
	if err := queryRow(t, p.primary.URL("postgres"), `SHOW default_transaction_read_only`, &ro); err != nil || ro != "off" {
		t.Errorf("primary default_transaction_read_only = %q (%v), want off (not fenced)", ro, err)
	}
}

// TestPromotePausedDuringFenceFinishesTheFence: the pause arrives while the fence URL is being
// called: the fence step finishes (the request completes, 2xx), then the promotion stops: the old
// primary is fenced, the standby not promoted, and the error does not claim "no effect" (the
// engine records unknown/paused and escalates: a human decides).
func TestPromotePausedDuringFenceFinishesTheFence(t *testing.T) {
	p := startPair(t)
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	var calls atomic.Int32
	fence := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		cancel(handlers.ErrPaused)
		select { // the fence takes a moment: the pause lands while the request is in flight
		case <-r.Context().Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer fence.Close()
	c := p.cfg.Clusters["legacy"]
	c.Fence = config.PostgresFence{URL: fence.URL, Method: http.MethodPost, Timeout: config.Duration(10 * time.Second)}
	p.cfg.Clusters["legacy"] = c

	res, err := p.promote(t, Options{}, handlers.Params{"cluster": "legacy", "require_primary_down": false}).Do(ctx, handlers.Invocation{}, alert.Alert{})
	t.Logf("paused during the fence:\n%s", res.Detail)
	if !errors.Is(err, handlers.ErrPaused) || handlers.HadNoEffect(err) {
		t.Fatalf("Do = %v (no effect: %v), want the pause after the fence", err, handlers.HadNoEffect(err))
	}
	if calls.Load() != 1 || !strings.Contains(res.Detail, "answered 2xx") {
		t.Errorf("fence URL called %d times; the fence step did not finish:\n%s", calls.Load(), res.Detail)
	}
	if strings.Contains(res.Detail, "pg_promote") || !inRecovery(t, p.standby.URL("postgres")) {
		t.Fatalf("promoted after the pause:\n%s", res.Detail)
	}
	var ro string
	if err := queryRow(t, p.primary.URL("postgres"), `SHOW default_transaction_read_only`, &ro); err != nil || ro != "on" {
		t.Errorf("old primary default_transaction_read_only = %q (%v), want on (the fence finished)", ro, err)
	}
}
