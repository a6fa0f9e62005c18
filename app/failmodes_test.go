package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

// adminExec runs sql on the server of dbURL, in its postgres database (never read-only here).
func adminExec(t *testing.T, dbURL, sql string, args ...any) {
	t.Helper()
	u, err := url.Parse(dbURL)
	must(t, err)
	u.Path = "/postgres"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u.String())
	must(t, err)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// setReadOnly makes database db read-only or writable again for new sessions, and ends the
// sessions open on it so that the app's pool takes new ones.
func setReadOnly(t *testing.T, dbURL string, on bool) {
	t.Helper()
	u, err := url.Parse(dbURL)
	must(t, err)
	db := strings.TrimPrefix(u.Path, "/")
	if on {
		adminExec(t, dbURL, fmt.Sprintf(`ALTER DATABASE %q SET default_transaction_read_only = on`, db))
	} else {
		adminExec(t, dbURL, fmt.Sprintf(`ALTER DATABASE %q RESET default_transaction_read_only`, db))
	}
	adminExec(t, dbURL, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, db)
}

// countRows runs a count query on its own new session (the app's pooled sessions may just have
// been ended).
func countRows(t *testing.T, dbURL, q string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	must(t, err)
	defer conn.Close(ctx)
	var n int
	must(t, conn.QueryRow(ctx, q).Scan(&n))
	return n
}

// A read-only database (25006: a pool on a demoted primary, a database set read-only for
// maintenance) is a transient failure: the message is retried, not dead-lettered, and processed
// once the database is writable again.
func TestReadOnlyDatabaseRetriesNotDeadLetters(t *testing.T) {
	db := pgtest.NewDatabase(t)
	f := startApp(t, fixtureOpts{dbURL: db})
	setReadOnly(t, db, true)
	if code := f.post(payload("firing", time.Now().Add(-time.Minute).UTC().Truncate(time.Second), "cart-1")); code != 200 {
		t.Fatalf("webhook answered %d, want 200 (the bus holds the alert)", code)
	}
	// Three failed attempts: as many as a permanent error gets before it is dead-lettered.
	testwait.Until(t, 20*time.Second, "3 failed attempts", func() bool { return metricValue(t, f, "responder_bus_process_errors_total") >= 3 })
	f.waitStoreDegraded(10 * time.Second)
	setReadOnly(t, db, false)
	testwait.Until(t, 30*time.Second, "1 succeeded action after the database is writable", func() bool {
		return countRows(t, db, `SELECT count(*) FROM actions WHERE state = 'succeeded'`) == 1 || countRows(t, db, `SELECT count(*) FROM dead_letters`) > 0
	})
	if n := countRows(t, db, `SELECT count(*) FROM dead_letters`); n != 0 {
		t.Fatalf("%d dead letters: a read-only database is not a permanent failure", n)
	}
	if n := len(f.sink.Calls()); n != 1 {
		t.Fatalf("sink calls = %d, want 1", n)
	}
	f.waitStoreOK(15 * time.Second)
}

// stormSender posts webhook requests of two new pods each until stopped, and remembers what was
// accepted.
type stormSender struct {
	f        *fixture
	starts   time.Time
	next     atomic.Int64
	mu       sync.Mutex
	accepted map[string]bool
	refused  []string
}

func (s *stormSender) send() {
	i := s.next.Add(1)
	pods := []string{fmt.Sprintf("storm-%d-a", i), fmt.Sprintf("storm-%d-b", i)}
	req, err := http.NewRequest(http.MethodPost, s.f.base+"/webhook/alertmanager", strings.NewReader(string(payload("firing", s.starts, pods...))))
	must(s.f.t, err)
	req.Header.Set("Authorization", "Bearer "+hookToken)
	resp, err := http.DefaultClient.Do(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.refused = append(s.refused, err.Error())
		return
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		s.refused = append(s.refused, resp.Status)
		return
	}
	for _, p := range pods {
		s.accepted[p] = true
	}
}

// run sends with n workers, each at most one request per every, until stop is closed.
func (s *stormSender) run(n int, every time.Duration, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			pace := time.NewTicker(every) // the storm's rate, bounded for a shared test machine
			defer pace.Stop()
			for {
				select {
				case <-stop:
					return
				case <-pace.C:
					s.send()
				}
			}
		})
	}
	return &wg
}

// TestDatabaseCrashMidStorm: PostgreSQL stops immediately (as in a crash) in the middle of a storm
// and comes back, three times. responder stays up, intake keeps answering 200, and each accepted alert's
// action runs exactly once (issue 13: responder used to panic in gobreaker's constructor).
func TestDatabaseCrashMidStorm(t *testing.T) {
	pg := pgtest.StartServer(t)
	db := pg.CreateDatabase(t, "responder")
	// The test server turns synchronous_commit off for speed; a crash must not lose commits.
	adminExec(t, db, `ALTER DATABASE responder SET synchronous_commit = on`)
	f := startApp(t, fixtureOpts{dbURL: db})
	s := &stormSender{f: f, starts: time.Now().Add(-time.Minute).UTC().Truncate(time.Second), accepted: map[string]bool{}}
	stop := make(chan struct{})
	senders := s.run(2, 50*time.Millisecond, stop) // up to 80 alerts/s
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		senders.Wait()
	}()

	// Several crashes, each while actions are being recorded: each catches the transaction holding
	// the breaker row in some statement (in gobreaker's constructor, it used to end the process).
	const crashes, outage = 3, 2 * time.Second
	for i := range crashes {
		calls := len(f.sink.Calls())
		testwait.Until(t, 60*time.Second, fmt.Sprintf("the storm under way (crash %d)", i+1), func() bool { return len(f.sink.Calls()) >= calls+30 })
		pg.StopImmediate(t)
		down := time.Now()
		f.waitStoreDegraded(15 * time.Second)
		// The storm goes on during the outage (the lasted 8 s).
		<-time.After(time.Until(down.Add(outage))) // the outage's length (part of the scenario), not a wait for work
		pg.Start(t)
	}
	s.mu.Lock()
	atRestart := len(s.accepted)
	s.mu.Unlock()
	testwait.Until(t, 30*time.Second, "more alerts accepted after the restart", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.accepted) >= atRestart+60
	})
	close(stop)
	senders.Wait()

	s.mu.Lock()
	accepted, refused := len(s.accepted), s.refused
	s.mu.Unlock()
	if len(refused) > 0 {
		t.Fatalf("intake refused %d requests during the outage: %v", len(refused), refused[:min(len(refused), 5)])
	}
	testwait.Until(t, 180*time.Second, fmt.Sprintf("%d actions finished", accepted), func() bool {
		return countRows(t, db, `SELECT count(*) FROM actions WHERE state NOT IN ('planned', 'running')`) >= accepted
	})
	select {
	case err := <-f.done:
		t.Fatalf("responder stopped: %v", err)
	default:
	}
	conn, err := pgx.Connect(context.Background(), db)
	must(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), `SELECT i.labels->>'pod', a.state, a.reason FROM actions a JOIN incidents i ON i.id = a.incident_id`)
	must(t, err)
	states := map[string][]string{}
	var pod, state, reason string
	_, err = pgx.ForEachRow(rows, []any{&pod, &state, &reason}, func() error {
		states[pod] = append(states[pod], state+" "+reason)
		return nil
	})
	must(t, err)
	calls := map[string]int{}
	for _, c := range f.sink.Calls() {
		calls[fmt.Sprint(c.Body["pod"])]++
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	bad := 0
	for p := range s.accepted {
		if st := states[p]; (len(st) != 1 || st[0] != "succeeded ") || calls[p] != 1 {
			if bad++; bad <= 10 {
				t.Errorf("pod %s: actions %q, sink calls %d; want one succeeded action and one call", p, st, calls[p])
			}
		}
	}
	if len(calls) != accepted || len(states) != accepted {
		t.Errorf("%d accepted alerts, %d acted on, %d with actions", accepted, len(calls), len(states))
	}
	if n := metricValue(t, f, "responder_panics_total"); n != 0 {
		t.Errorf("responder_panics_total = %v, want 0", n)
	}
	t.Logf("%d alerts accepted, %d of them before the last restart; the database crashed %d times for %s", accepted, atRestart, crashes, outage)
}
