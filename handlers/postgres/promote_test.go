package postgres

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
	"github.com/responder-sre/responder/vocab"
)

// pair is a streaming-replication pair started for one test.
type pair struct {
	primary, standby *pgtest.Server
	cfg              config.PostgresHandlerConfig
}

func startPair(t *testing.T) *pair {
	t.Helper()
	p := &pair{primary: pgtest.StartServer(t)}
	p.standby = pgtest.StartStandby(t, p.primary)
	p.cfg = config.PostgresHandlerConfig{Clusters: map[string]config.PostgresCluster{
		"legacy": {
			Primary:  &config.PostgresNode{Name: "primary", DSN: config.Secret(p.primary.URL("postgres"))},
			Standbys: []config.PostgresNode{{Name: "standby-1", DSN: config.Secret(p.standby.URL("postgres"))}},
			Detect:   config.PostgresDetect{Failures: 2, MinPeriod: config.Duration(200 * time.Millisecond)},
			RTO:      config.Duration(30 * time.Minute),
		},
	}}
	// A committed row the standby must have before anything is stopped.
	sqlExec(t, p.primary.URL("postgres"), `CREATE TABLE before_failover (id int); INSERT INTO before_failover VALUES (1)`)
	testwait.Until(t, 30*time.Second, "standby replays the primary's row", func() bool {
		var n int
		return queryRow(t, p.standby.URL("postgres"), `SELECT count(*) FROM before_failover`, &n) == nil && n == 1
	})
	return p
}

func (p *pair) promote(t *testing.T, o Options, params handlers.Params) *PromoteAction {
	t.Helper()
	o.PollInterval = cmpOr(o.PollInterval, 20*time.Millisecond)
	o.ConnectTimeout = cmpOr(o.ConnectTimeout, 2*time.Second)
	hs, err := New(p.cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	act, err := handlerNamed(t, hs, PromoteName).Build(params)
	if err != nil {
		t.Fatalf("Build(%v): %v", params, err)
	}
	return act.(*PromoteAction)
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func handlerNamed(t *testing.T, hs []handlers.Handler, name string) handlers.Handler {
	t.Helper()
	for _, h := range hs {
		if h.Spec().Name == name {
			return h
		}
	}
	t.Fatalf("no handler %s", name)
	return nil
}

func sqlExec(t *testing.T, url, sql string) {
	t.Helper()
	if err := tryExec(t, url, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func tryExec(t *testing.T, url, sql string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	_, err = c.Exec(ctx, sql)
	return err
}

func queryRow(t *testing.T, url, sql string, dst ...any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	return c.QueryRow(ctx, sql).Scan(dst...)
}

func inRecovery(t *testing.T, url string) bool {
	t.Helper()
	var r bool
	if err := queryRow(t, url, `SELECT pg_is_in_recovery()`, &r); err != nil {
		t.Fatalf("pg_is_in_recovery: %v", err)
	}
	return r
}

func wantReason(t *testing.T, err error, reason vocab.Reason, text string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Do succeeded, want %s %q", reason, text)
	}
	if got := handlers.ReasonOf(err); got != reason || !strings.Contains(err.Error(), text) {
		t.Fatalf("Do: %s %v, want %s containing %q", got, err, reason, text)
	}
}

func wantDetail(t *testing.T, res handlers.Result, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(res.Detail, p) {
			t.Errorf("detail does not contain %q:\n%s", p, res.Detail)
		}
	}
}

// wantFields checks the result fields of a promotion of p's standby (Spec.Results): the new
// primary's address, name and timeline (a promotion moves to timeline 2), the old primary's address.
func wantFields(t *testing.T, res handlers.Result, p *pair) {
	t.Helper()
	addr := func(s *pgtest.Server) string {
		u, err := url.Parse(s.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		return u.Host
	}
	f := res.Fields
	if f["new_primary"] != addr(p.standby) || f["new_primary_name"] != "standby-1" || f["old_primary"] != addr(p.primary) || f["timeline"] != 2 {
		t.Errorf("result fields %v, want new_primary %s (standby-1), old_primary %s, timeline 2", f, addr(p.standby), addr(p.primary))
	}
	if lsn, _ := f["lsn"].(string); lsn == "" {
		t.Errorf("result fields %v: no lsn", f)
	} else if _, err := ParseLSN(lsn); err != nil {
		t.Errorf("lsn %q: %v", lsn, err)
	}
	for _, rf := range promoteResults {
		if _, ok := f[rf.Name]; !ok {
			t.Errorf("declared result field %s not filled: %v", rf.Name, f)
		}
	}
}

// TestPromoteStoppedPrimary: the primary stops; detect confirms it, the standby is promoted and
// takes writes; a second Do only verifies; the old primary restarted is a second primary: refused.
func TestPromoteStoppedPrimary(t *testing.T) {
	p := startPair(t)
	act := p.promote(t, Options{}, handlers.Params{"cluster": "legacy"})
	if act.Target() != "postgres/legacy" || act.Scope() != "postgres/legacy" {
		t.Errorf("target %q scope %q", act.Target(), act.Scope())
	}
	if err := act.Check(t.Context(), alert.Alert{}); err == nil || !strings.Contains(err.Error(), "answers") {
		t.Errorf("Check with the primary up = %v, want not needed", err)
	}

	p.primary.Stop(t)
	down := time.Now()
	if err := act.Check(t.Context(), alert.Alert{}); err != nil {
		t.Errorf("Check with the primary down = %v, want nil (needed)", err)
	}
	al := alert.Alert{StartsAt: down.Add(-time.Minute)}
	start := time.Now()
	res, err := act.Do(t.Context(), handlers.Invocation{}, al)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Do: %v\n%s", err, res.Detail)
	}
	t.Logf("primary stopped → promotion verified in %s (Do %s)\n%s", time.Since(down), took, res.Detail)
	if took < 200*time.Millisecond {
		t.Errorf("Do took %s: detect did not span min_period 200ms", took)
	}
	wantDetail(t, res, "attempt 1/2 failed", "attempt 2/2 failed", "primary down: 2 consecutive failures",
		"candidate replayed all it received", "SQL fence skipped", "pg_promote(wait => true)", "pg_is_in_recovery() = false", "within rto 30m")
	if inRecovery(t, p.standby.URL("postgres")) {
		t.Fatal("standby still in recovery")
	}
	wantFields(t, res, p)
	sqlExec(t, p.standby.URL("postgres"), `INSERT INTO before_failover VALUES (2)`)

	res, err = act.Do(t.Context(), handlers.Invocation{}, al)
	if err != nil {
		t.Fatalf("second Do: %v\n%s", err, res.Detail)
	}
	wantDetail(t, res, "already promoted: verified only")
	wantFields(t, res, p) // a Do that only verifies reports the same new primary
	if strings.Contains(res.Detail, "pg_promote") {
		t.Errorf("second Do promoted again:\n%s", res.Detail)
	}

	p.primary.Start(t) // the old primary comes back writable: split brain
	res, err = act.Do(t.Context(), handlers.Invocation{}, al)
	wantReason(t, err, vocab.ReasonClientError, "two primaries")
	wantDetail(t, res, "two primaries")
}

// TestPromoteFencesReachablePrimary: a reachable primary is refused by default; with
// require_primary_down: false it is fenced (read-only, sessions ended) before the promotion.
func TestPromoteFencesReachablePrimary(t *testing.T) {
	p := startPair(t)
	res, err := p.promote(t, Options{}, handlers.Params{"cluster": "legacy", "candidate": "standby-1"}).Do(t.Context(), handlers.Invocation{}, alert.Alert{})
	wantReason(t, err, vocab.ReasonClientError, "not down from responder's side")
	if !inRecovery(t, p.standby.URL("postgres")) {
		t.Fatal("refused, yet the standby was promoted")
	}

	// A client session on the old primary must be ended by the fence.
	ctx := t.Context()
	client, err := pgx.Connect(ctx, p.primary.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close(context.WithoutCancel(ctx))
	sqlExec(t, p.primary.URL("postgres"), `INSERT INTO before_failover SELECT generate_series(10, 5000)`)

	act := p.promote(t, Options{}, handlers.Params{"cluster": "legacy", "require_primary_down": false})
	res, err = act.Do(ctx, handlers.Invocation{}, alert.Alert{StartsAt: time.Now().Add(-30 * time.Second)})
	if err != nil {
		t.Fatalf("Do: %v\n%s", err, res.Detail)
	}
	t.Logf("planned promotion:\n%s", res.Detail)
	wantDetail(t, res, "detect: skipped", "default_transaction_read_only = on", "sessions terminated",
		"received and replayed the fenced primary's WAL", "pg_promote")
	if strings.Index(res.Detail, "fence:") > strings.Index(res.Detail, "promote:") {
		t.Errorf("promoted before fencing:\n%s", res.Detail)
	}
	if _, err := client.Exec(ctx, `SELECT 1`); err == nil {
		t.Error("a client session on the old primary survived the fence")
	}
	var ro string
	if err := queryRow(t, p.primary.URL("postgres"), `SHOW default_transaction_read_only`, &ro); err != nil || ro != "on" {
		t.Errorf("old primary default_transaction_read_only = %q (%v), want on", ro, err)
	}
	if err := tryExec(t, p.primary.URL("postgres"), `INSERT INTO before_failover VALUES (3)`); err == nil {
		t.Error("the fenced old primary accepted a write")
	}
	var n int
	if err := queryRow(t, p.standby.URL("postgres"), `SELECT count(*) FROM before_failover`, &n); err != nil || n != 4992 {
		t.Errorf("new primary has %d rows (%v), want all 4992 written before the fence", n, err)
	}
	sqlExec(t, p.standby.URL("postgres"), `INSERT INTO before_failover VALUES (4)`)

	// Again: promoted, the old primary is fenced (read-only): verify only.
	res, err = act.Do(ctx, handlers.Invocation{}, alert.Alert{})
	if err != nil {
		t.Fatalf("second Do: %v\n%s", err, res.Detail)
	}
	wantDetail(t, res, "already promoted")
}

// TestPromoteCrashBetweenFenceAndPromote: Do stops after fencing (its context cancelled, like a
// crash); the next Do finds the old primary fenced and the standby not promoted, and refuses.
func TestPromoteCrashBetweenFenceAndPromote(t *testing.T) {
	p := startPair(t)
	ctx, cancel := context.WithCancelCause(t.Context())
	crash := errors.New("simulated crash")
	o := Options{StepHook: func(ctx context.Context, step string) error {
		if step == StepFenced {
			cancel(crash)
			return context.Cause(ctx)
		}
		return nil
	}}
	params := handlers.Params{"cluster": "legacy", "require_primary_down": false}
	res, err := p.promote(t, o, params).Do(ctx, handlers.Invocation{IdempotencyKey: "responder-action-42"}, alert.Alert{})
	if !errors.Is(err, crash) {
		t.Fatalf("Do = %v, want the crash\n%s", err, res.Detail)
	}
	if !inRecovery(t, p.standby.URL("postgres")) {
		t.Fatal("the standby was promoted despite the crash before promotion")
	}

	res, err = p.promote(t, Options{}, params).Do(t.Context(), handlers.Invocation{}, alert.Alert{})
	wantReason(t, err, vocab.ReasonClientError, "half-done: old primary primary")
	for _, w := range []string{"fenced at ", "by responder-action-42", "not promoted", "needs a human"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if !inRecovery(t, p.standby.URL("postgres")) {
		t.Fatal("the second Do promoted the standby")
	}
}

// TestPromoteDetectBlip: the primary answers again during detect: refused, nothing fenced or
// promoted. The injected Sleep restarts the primary between the attempts.
func TestPromoteDetectBlip(t *testing.T) {
	p := startPair(t)
	p.primary.Stop(t)
	slept := 0
	o := Options{Sleep: func(ctx context.Context, d time.Duration) error {
		slept++
		if slept == 1 {
			p.primary.Start(t)
		}
		return nil
	}}
	res, err := p.promote(t, o, handlers.Params{"cluster": "legacy"}).Do(t.Context(), handlers.Invocation{}, alert.Alert{})
	wantReason(t, err, vocab.ReasonClientError, "a blip, not down")
	wantDetail(t, res, "attempt 1/2 failed", "attempt 2 answered")
	if !inRecovery(t, p.standby.URL("postgres")) {
		t.Fatal("standby promoted after a blip")
	}
	var ro string
	if err := queryRow(t, p.primary.URL("postgres"), `SHOW default_transaction_read_only`, &ro); err != nil || ro != "off" {
		t.Errorf("primary default_transaction_read_only = %q (%v), want off (not fenced)", ro, err)
	}
}
