package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// dbPrefix starts the name of every bench database: responder_bench_<pid>_<phase>.
const dbPrefix = "responder_bench_"

var benchDBName = regexp.MustCompile(`^` + dbPrefix + `(\d+)(_[a-z0-9_]+)?$`)

// databases creates and drops the bench databases on the admin server.
type databases struct {
	admin *pgx.Conn
	cfg   *pgx.ConnConfig
}

func openDatabases(ctx context.Context, adminURL string) (*databases, error) {
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		return nil, fmt.Errorf("--database-admin-url: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s (run `make db-start`): %w", adminURL, err)
	}
	d := &databases{admin: conn, cfg: cfg}
	d.dropStale(ctx)
	return d, nil
}

func (d *databases) close(ctx context.Context) { d.admin.Close(context.WithoutCancel(ctx)) }

// dropStale drops the bench databases of harnesses that are gone (killed before they could):
// those whose harness process does not exist and that nobody is connected to.
func (d *databases) dropStale(ctx context.Context) {
	rows, err := d.admin.Query(ctx, `SELECT datname FROM pg_database d WHERE datname LIKE $1
   AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)`, dbPrefix+"%")
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, name := range names {
		m := benchDBName.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		if pid, _ := strconv.Atoi(m[1]); pid == os.Getpid() || processExists(pid) {
			continue
		}
		if _, err := d.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err == nil {
			fmt.Println("dropped the stale bench database", name)
		}
	}
}

// create makes a fresh database for phase and returns its URL and its drop function.
func (d *databases) create(ctx context.Context, phase string) (string, func(), error) {
	name := fmt.Sprintf("%s%d_%s", dbPrefix, os.Getpid(), strings.ReplaceAll(phase, "-", "_"))
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := d.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		return "", nil, err
	}
	if _, err := d.admin.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return "", nil, err
	}
	url := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", d.cfg.User, d.cfg.Host, d.cfg.Port, name)
	if d.cfg.Password != "" {
		url = fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", d.cfg.User, d.cfg.Password, d.cfg.Host, d.cfg.Port, name)
	}
	return url, func() {
		if _, err := d.admin.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			fmt.Fprintf(os.Stderr, "responder-bench: drop database %s: %v\n", name, err)
		}
	}, nil
}

// actionCounts counts the bench rule's actions by state.
type actionCounts struct {
	total, dryRun, succeeded, settled int
	// last is the latest finished_at of a settled action (the engine's clock, on this machine).
	last time.Time
}

// countActions reads the bench rule's actions. Settled: in a final state.
func countActions(ctx context.Context, db *pgx.Conn) (actionCounts, error) {
	var c actionCounts
	var last *time.Time
	err := db.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state = $2), count(*) FILTER (WHERE state = $3),
       count(*) FILTER (WHERE state = ANY($4)), max(finished_at)
  FROM actions WHERE rule = $1`, benchRule, vocab.StateDryRun, vocab.StateSucceeded, finalStates()).
		Scan(&c.total, &c.dryRun, &c.succeeded, &c.settled, &last)
	if last != nil {
		c.last = *last
	}
	return c, err
}

// settledQuantile is when the fraction q of the bench rule's settled actions had been recorded:
// the q-quantile of their finished_at (the engine's clock, on this machine).
func settledQuantile(ctx context.Context, db *pgx.Conn, q float64) (time.Time, error) {
	var t *time.Time
	err := db.QueryRow(ctx, `SELECT percentile_disc($2::float8) WITHIN GROUP (ORDER BY finished_at) FROM actions
 WHERE rule = $1 AND state = ANY($3) AND finished_at IS NOT NULL`, benchRule, q, finalStates()).Scan(&t)
	if err != nil || t == nil {
		return time.Time{}, err
	}
	return *t, nil
}

func finalStates() []string {
	return []string{string(vocab.StateDryRun), string(vocab.StateSucceeded), string(vocab.StateFailed), string(vocab.StateUnknown),
		string(vocab.StateSkipped), string(vocab.StateDenied), string(vocab.StateExpired)}
}

// waitSettled polls the store until want of the bench rule's actions are settled, one of the
// responders rs exits, ctx ends or limit passes. It returns the counts and when it saw them settled.
func waitSettled(ctx context.Context, db *pgx.Conn, want int, limit time.Duration, rs ...*responder) (actionCounts, time.Time, error) {
	deadline := time.Now().Add(limit)
	for {
		t0 := time.Now()
		c, err := countActions(ctx, db)
		now := time.Now()
		switch {
		case err != nil:
			return c, now, err
		case c.settled >= want:
			return c, now, nil
		case now.After(deadline):
			return c, now, fmt.Errorf("only %d of %d actions settled after %s", c.settled, want, limit)
		}
		for _, r := range rs {
			if err := r.alive(); err != nil {
				return c, now, err
			}
		}
		select {
		case <-ctx.Done():
			return c, now, ctx.Err()
		case <-time.After(pollPause(now.Sub(t0))):
		}
	}
}

// pollPause is the pause after a count that took took: at least 50ms, and ten times the count
// (a scan of every action), so the poll costs the store under test at most a tenth of one core.
// The settled time comes from the actions' finished_at, not from when the poll saw them.
func pollPause(took time.Duration) time.Duration { return max(50*time.Millisecond, 10*took) }

// storeCheck is what the store says about n alerts (pods) the harness sent, each of which must
// make exactly one incident of the bench rule and one action, decided once.
type storeCheck struct {
	Alerts    int `json:"alerts"`
	Incidents int `json:"incidents"`
	// DistinctPods is the number of distinct pods among the incidents.
	DistinctPods int `json:"distinct_pods"`
	Actions      int `json:"actions"`
	// DistinctIncidents is the number of distinct incidents among the actions.
	DistinctIncidents int `json:"distinct_incidents"`
	// Decided is the number of actions in the expected final state (dry_run or succeeded).
	Decided int `json:"decided"`
	// Decisions is the number of audit rows that record an action's verdict (dry_run) or its start;
	// DecidedActions the number of distinct actions among them.
	Decisions      int `json:"decisions"`
	DecidedActions int `json:"decided_actions"`
	// Lost is alerts without a decided action; Twice counts every incident, action or decision
	// beyond one per alert.
	Lost  int `json:"lost"`
	Twice int `json:"twice"`
}

// checkStore counts the incidents, actions and decisions of the bench rule: want alerts sent,
// each on its own pod, whose action must end in state.
func checkStore(ctx context.Context, db *pgx.Conn, want int, state vocab.State) (storeCheck, error) {
	c := storeCheck{Alerts: want}
	err := db.QueryRow(ctx, `SELECT count(*), count(DISTINCT labels->>'pod') FROM incidents WHERE rule = $1`, benchRule).
		Scan(&c.Incidents, &c.DistinctPods)
	if err != nil {
		return c, err
	}
	err = db.QueryRow(ctx, `SELECT count(*), count(DISTINCT incident_id), count(*) FILTER (WHERE state = $2) FROM actions WHERE rule = $1`,
		benchRule, state).Scan(&c.Actions, &c.DistinctIncidents, &c.Decided)
	if err != nil {
		return c, err
	}
	reason := vocab.ReasonStarted
	if state == vocab.StateDryRun {
		reason = vocab.ReasonDryRun
	}
	err = db.QueryRow(ctx, `SELECT count(*), count(DISTINCT au.action_id) FROM audit au JOIN actions a ON a.id = au.action_id
 WHERE a.rule = $1 AND au.kind = $2 AND au.reason = $3`, benchRule, store.AuditAction, reason).Scan(&c.Decisions, &c.DecidedActions)
	if err != nil {
		return c, err
	}
	var decidedPods int
	err = db.QueryRow(ctx, `SELECT count(DISTINCT i.labels->>'pod') FROM actions a JOIN incidents i ON i.id = a.incident_id
 WHERE a.rule = $1 AND a.state = $2`, benchRule, state).Scan(&decidedPods)
	if err != nil {
		return c, err
	}
	c.Lost = want - decidedPods
	c.Twice = (c.Incidents - c.DistinctPods) + (c.Actions - c.DistinctIncidents) + (c.Decisions - c.DecidedActions)
	return c, nil
}

func (c storeCheck) String() string {
	return fmt.Sprintf("%d alerts → %d incidents (%d distinct pods), %d actions (%d distinct incidents, %d decided), %d decisions audited (%d distinct actions): lost %d, twice %d",
		c.Alerts, c.Incidents, c.DistinctPods, c.Actions, c.DistinctIncidents, c.Decided, c.Decisions, c.DecidedActions, c.Lost, c.Twice)
}

// backendCPU reads the CPU time of the database's other sessions (the responder's connections)
// from /proc, by server process id: PostgreSQL on this machine, as `make db-start` runs it. Empty
// when the server is elsewhere or /proc is not readable.
func backendCPU(ctx context.Context, db *pgx.Conn) map[int]time.Duration {
	rows, err := db.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	if err != nil {
		return nil
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil
	}
	out := make(map[int]time.Duration, len(pids))
	for _, pid := range pids {
		if u := readUsage(int(pid)); u.cpu > 0 {
			out[int(pid)] = u.cpu
		}
	}
	return out
}

// backendCPUSince is the CPU the sessions of after spent since before (a session new since then
// from its start). Sessions that ended between the two reads are not counted: a lower bound.
func backendCPUSince(before, after map[int]time.Duration) time.Duration {
	var d time.Duration
	for pid, c := range after {
		d += c - before[pid]
	}
	return d
}
