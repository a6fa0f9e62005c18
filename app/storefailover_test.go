package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

// readyzDatabase is /readyz's status code and its database check.
func (f *fixture) readyzDatabase() (int, string) {
	f.t.Helper()
	code, b := f.do(http.MethodGet, "/readyz", "", nil)
	var r struct {
		Checks map[string]string `json:"checks"`
		Ready  bool              `json:"ready"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		f.t.Fatalf("/readyz: %d %s: %v", code, b, err)
	}
	if r.Ready != (code == http.StatusOK) {
		f.t.Fatalf("/readyz: code %d with ready %v", code, r.Ready)
	}
	return code, r.Checks["database"]
}

// waitStoreDegraded waits until /readyz reports the store degraded; the pod stays ready all along
// (intake needs only the bus).
func (f *fixture) waitStoreDegraded(d time.Duration) {
	f.t.Helper()
	testwait.UntilDetail(f.t, d, "/readyz to report the store degraded, still ready", func() (bool, string) {
		code, db := f.readyzDatabase()
		if code != http.StatusOK {
			f.t.Fatalf("/readyz answered %d while only the store is down (database: %q): readiness depends on the bus only", code, db)
		}
		return strings.HasPrefix(db, "degraded: "), db
	})
}

// waitStoreOK waits until /readyz reports the store ok again.
func (f *fixture) waitStoreOK(d time.Duration) {
	f.t.Helper()
	testwait.UntilDetail(f.t, d, "/readyz to report the store ok", func() (bool, string) {
		code, db := f.readyzDatabase()
		return code == http.StatusOK && db == "ok", fmt.Sprintf("%d %q", code, db)
	})
}

// multiHostDSN is a libpq multi-host URL over the servers' database db that connects only to the
// one taking writes (target_session_attrs=read-write).
func multiHostDSN(t *testing.T, db string, servers ...*pgtest.Server) string {
	t.Helper()
	var hosts []string
	var u *url.URL
	for _, s := range servers {
		p, err := url.Parse(s.URL(db))
		must(t, err)
		hosts = append(hosts, p.Host)
		u = p
	}
	u.Host = strings.Join(hosts, ",")
	q := u.Query()
	q.Set("target_session_attrs", "read-write")
	q.Set("connect_timeout", "1")
	u.RawQuery = q.Encode()
	return u.String()
}

// A failover of the store under load: the store is a streaming pair behind a multi-host DSN with
// target_session_attrs=read-write; alerts are posted without pause while the primary stops and the
// standby is promoted. Intake answers 200 throughout (it needs only the bus), /readyz reports the
// store degraded without failing, the consumer backs off and retries (25006 on a standby, refused
// connections), and after the switch every alert is processed exactly once, none dead-lettered.
func TestStoreFailoverUnderLoad(t *testing.T) {
	primary := pgtest.StartServer(t)
	primary.CreateDatabase(t, "responder") // before the standby's base backup: the standby has it too
	standby := pgtest.StartStandby(t, primary)
	dsn := multiHostDSN(t, "responder", primary, standby)
	f := startApp(t, fixtureOpts{dbURL: dsn})

	var (
		mu      sync.Mutex
		sent    int
		refused []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(15 * time.Millisecond) // the load's pace, not a wait for work
		defer tick.Stop()
		starts := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			code := f.post(payload("firing", starts, fmt.Sprintf("fo-%d", i)))
			mu.Lock()
			sent++
			if code != http.StatusOK {
				refused = append(refused, fmt.Sprintf("fo-%d: %d", i, code))
			}
			mu.Unlock()
		}
	})
	stopSending := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	t.Cleanup(stopSending)
	sentNow := func() int { mu.Lock(); defer mu.Unlock(); return sent }

	testwait.Until(t, 30*time.Second, "alerts processed on the primary", func() bool { return len(f.sink.Calls()) >= 20 })
	primary.Stop(t)
	atStop := sentNow()
	f.waitStoreDegraded(15 * time.Second)
	// Alerts keep arriving while no server takes writes (the standby answers read-only).
	testwait.Until(t, 15*time.Second, "alerts posted during the outage", func() bool { return sentNow() >= atStop+20 })
	standby.Promote(t)
	atPromote := sentNow()
	testwait.Until(t, 30*time.Second, "alerts posted after the promotion", func() bool { return sentNow() >= atPromote+20 })
	stopSending()

	mu.Lock()
	total := sent
	if len(refused) > 0 {
		t.Fatalf("intake refused %d of %d requests during the failover (want 200 throughout): %v", len(refused), total, refused)
	}
	mu.Unlock()
	newPrimary := standby.URL("responder")
	testwait.UntilDetail(t, 60*time.Second, "every alert processed on the promoted standby", func() (bool, string) {
		n := countRows(t, newPrimary, `SELECT count(*) FROM actions WHERE state = 'succeeded'`)
		return n >= total, fmt.Sprintf("%d of %d actions succeeded", n, total)
	})
	for _, c := range []struct{ what, q string }{
		{"incidents", `SELECT count(*) FROM incidents`},
		{"actions", `SELECT count(*) FROM actions`},
		{"succeeded actions", `SELECT count(*) FROM actions WHERE state = 'succeeded'`},
	} {
		if n := countRows(t, newPrimary, c.q); n != total {
			t.Errorf("%s = %d, want %d (one per alert posted)", c.what, n, total)
		}
	}
	if n := countRows(t, newPrimary, `SELECT count(*) FROM dead_letters`); n != 0 {
		t.Errorf("%d dead letters: a store failover is not a permanent failure", n)
	}
	calls := map[string]int{}
	for _, c := range f.sink.Calls() {
		calls[c.Path]++
	}
	if len(calls) != total {
		t.Errorf("the sink was called for %d pods, want %d", len(calls), total)
	}
	for p, n := range calls {
		if n != 1 {
			t.Errorf("%s called %d times, want once", p, n)
		}
	}
	f.waitStoreOK(15 * time.Second)
	// A replica starting now, with the same URL and the old primary gone, finds the promoted standby
	// and its migrations (replicated, applied under the advisory lock on the new primary) are a no-op.
	g := startApp(t, fixtureOpts{dbURL: dsn})
	g.waitStoreOK(15 * time.Second)
	t.Logf("%d alerts posted: %d before the primary stopped, %d before the promotion", total, atStop, atPromote)
}
