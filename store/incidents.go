package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/vocab"
)

// IncidentUpsert is one (rule, alert) match to record.
type IncidentUpsert struct {
	Rule     string
	RuleHash string
	Alert    alert.Alert
	State    vocab.IncidentState // pending, firing or resolved (a tombstone for a resolved alert never seen firing)
	At       time.Time
}

// UpsertResult says what happened to one upsert. Inserted is false when the incident existed; rows
// that conflicted with a resolved incident are not returned at all (a late firing is a no-op).
type UpsertResult struct {
	ID          int64
	Rule        string
	Fingerprint string
	StartsAt    time.Time
	State       vocab.IncidentState
	Inserted    bool
}

// UpsertIncidentsTx inserts new incidents and refreshes the alert snapshot of open ones, in one
// statement. The state of an existing incident is never changed here: it only moves forward
// through FireIncidentTx and ResolveIncidentsTx. Callers must not pass the same key twice.
//
// From bulkRows upserts on, the new incidents are copied instead (see bulkRows, upsertCopy),
// with the same outcome.
func (s *Store) UpsertIncidentsTx(ctx context.Context, tx pgx.Tx, ups []IncidentUpsert) ([]UpsertResult, error) {
	if len(ups) == 0 {
		return nil, nil
	}
	if len(ups) >= bulkRows {
		res, ok, err := s.upsertCopy(ctx, tx, ups)
		if err != nil {
			return nil, fmt.Errorf("upsert incidents: %w", err)
		}
		if ok {
			return res, nil
		}
	}
	rows, err := s.upsertUnnest(ctx, tx, ups)
	if err != nil {
		return nil, fmt.Errorf("upsert incidents: %w", err)
	}
	res := make([]UpsertResult, 0, len(ups))
	var state string
	var u UpsertResult
	_, err = pgx.ForEachRow(rows, []any{&u.ID, &u.Rule, &u.Fingerprint, &u.StartsAt, &state, &u.Inserted}, func() error {
		u.State = vocab.IncidentState(state)
		res = append(res, u)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("upsert incidents: %w", err)
	}
	return res, nil
}

// firedResolved are the fired_at and resolved_at an upsert in state st inserts.
func firedResolved(st vocab.IncidentState, at *time.Time) (fired, resolved *time.Time) {
	switch st {
	case vocab.IncidentFiring:
		return at, nil
	case vocab.IncidentResolved:
		return nil, at
	}
	return nil, nil
}

// upsertSQL is the upsert of UpsertIncidentsTx, over unnest arrays.
var upsertSQL = `
INSERT INTO incidents (rule, fingerprint, starts_at, state, alert_name, labels, alert, last_seen_at,
                       fired_at, resolved_at, created_at, updated_at, version, rule_hash)
SELECT u.rule, u.fp, u.starts, u.state, u.name, u.labels::jsonb, u.alert::json, u.seen,
       u.fired, u.resolved, u.at, u.at, $13, u.hash
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::text[])
     AS u(rule, fp, starts, state, name, labels, alert, seen, fired, resolved, at, hash)
ON CONFLICT (rule, fingerprint, starts_at) DO UPDATE
   SET alert = EXCLUDED.alert,
       last_seen_at = greatest(incidents.last_seen_at, EXCLUDED.last_seen_at),
       updated_at = EXCLUDED.updated_at
   WHERE incidents.state <> ` + lit(vocab.IncidentResolved) + ` AND EXCLUDED.state <> ` + lit(vocab.IncidentResolved) + `
RETURNING id, rule, fingerprint, starts_at, state, (xmax = 0) AS inserted`

func (s *Store) upsertUnnest(ctx context.Context, tx pgx.Tx, ups []IncidentUpsert) (pgx.Rows, error) {
	n := len(ups)
	rules, fps, states, names, labels, alerts, hashes := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	starts, seen, ats := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	fired := make([]*time.Time, n)
	resolved := make([]*time.Time, n)
	var buf []byte
	for i, u := range ups {
		var n int
		var err error
		if buf, n, err = appendAlert(buf[:0], u.Alert); err != nil {
			return nil, err
		}
		rules[i], fps[i], states[i], names[i], labels[i], alerts[i], hashes[i] = u.Rule, u.Alert.Fingerprint, string(u.State), u.Alert.Name, string(buf[:n]), string(buf[n:]), u.RuleHash
		starts[i], seen[i], ats[i] = u.Alert.StartsAt, u.Alert.ReceivedAt, u.At
		fired[i], resolved[i] = firedResolved(u.State, &ats[i])
	}
	return tx.Query(ctx, upsertSQL, rules, fps, starts, states, names, labels, alerts, seen, fired, resolved, ats, hashes, s.version)
}

// ResolveKey names one alert episode that resolved.
type ResolveKey struct {
	Fingerprint string
	StartsAt    time.Time
	Alert       alert.Alert
}

// Resolved is an incident that ResolveIncidentsTx moved to resolved.
type Resolved struct {
	ID        int64
	Rule      string
	PrevState vocab.IncidentState
	Alert     alert.Alert
}

// ResolveIncidentsTx resolves every open incident of the given episodes (whatever rule opened it),
// cancels their planned, awaiting and approved actions (skipped, reason cancelled) and deletes their
// timers. It returns the incidents it resolved with their previous state.
func (s *Store) ResolveIncidentsTx(ctx context.Context, tx pgx.Tx, keys []ResolveKey, at time.Time) ([]Resolved, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	fps, starts, alerts := make([]string, len(keys)), make([]time.Time, len(keys)), make([]string, len(keys))
	var buf []byte
	for i, k := range keys {
		var err error
		if buf, err = k.Alert.AppendJSON(buf[:0]); err != nil {
			return nil, err
		}
		fps[i], starts[i], alerts[i] = k.Fingerprint, k.StartsAt, string(buf)
	}
	rows, err := tx.Query(ctx, `
WITH k AS (
    SELECT DISTINCT ON (fp, starts) fp, starts, alert
    FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS u(fp, starts, alert)
), prev AS (
    SELECT i.id, i.state, k.alert
    FROM incidents i JOIN k ON i.fingerprint = k.fp AND i.starts_at = k.starts
    WHERE i.state IN `+sqlUnended+`
    ORDER BY i.id
    FOR NO KEY UPDATE OF i
)
UPDATE incidents i
   SET state = `+lit(vocab.IncidentResolved)+`, resolved_at = $4, updated_at = $4, alert = prev.alert::json,
       last_seen_at = greatest(i.last_seen_at, (prev.alert::json->>'receivedAt')::timestamptz)
  FROM prev
 WHERE i.id = prev.id
RETURNING i.id, i.rule, prev.state, i.alert`, fps, starts, alerts, at)
	if err != nil {
		return nil, fmt.Errorf("resolve incidents: %w", err)
	}
	res, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Resolved, error) {
		var x Resolved
		var ab []byte
		if err := r.Scan(&x.ID, &x.Rule, &x.PrevState, &ab); err != nil {
			return x, err
		}
		var err error
		x.Alert, err = alert.ParseJSON(ab)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("resolve incidents: %w", err)
	}
	if len(res) == 0 {
		return nil, nil
	}
	ids := make([]int64, len(res))
	for i, r := range res {
		ids[i] = r.ID
	}
	if _, err := tx.Exec(ctx, `
UPDATE actions SET state = `+lit(vocab.StateSkipped)+`, reason = `+lit(vocab.ReasonCancelled)+`, finished_at = $2
 WHERE incident_id = ANY($1) AND coalesce(state IN `+sqlWaiting+`, false) AND phase NOT IN `+list(vocab.PhaseOnResolved, vocab.PhaseResolve), ids, at); err != nil {
		return nil, fmt.Errorf("cancel actions: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM timers WHERE incident_id = ANY($1)`, ids); err != nil {
		return nil, fmt.Errorf("delete timers: %w", err)
	}
	return res, nil
}

// TimerFor is the kind of the timer that fires a pending incident once its rule's `for` has elapsed
// (TimerInsert.Kind).
const TimerFor = "for"

// TimerInsert schedules a timer for an incident.
type TimerInsert struct {
	IncidentID int64
	Kind       string
	DueAt      time.Time
}

// InsertTimersTx schedules timers; an existing (incident, kind) timer is kept.
func (s *Store) InsertTimersTx(ctx context.Context, tx pgx.Tx, ts []TimerInsert) error {
	if len(ts) == 0 {
		return nil
	}
	ids, kinds, dues := make([]int64, len(ts)), make([]string, len(ts)), make([]time.Time, len(ts))
	for i, t := range ts {
		ids[i], kinds[i], dues[i] = t.IncidentID, t.Kind, t.DueAt
	}
	_, err := tx.Exec(ctx, `
INSERT INTO timers (incident_id, kind, due_at)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[])
ON CONFLICT (incident_id, kind) DO NOTHING`, ids, kinds, dues)
	if err != nil {
		return fmt.Errorf("insert timers: %w", err)
	}
	return nil
}

// DueTimer is a claimed timer with its incident.
type DueTimer struct {
	TimerID    int64
	Kind       string
	DueAt      time.Time
	IncidentID int64
	Rule       string
	State      vocab.IncidentState
	Alert      alert.Alert
}

// ClaimDueTimersTx locks up to limit timers due at now (FOR UPDATE SKIP LOCKED: each timer fires on
// exactly one replica). The caller deletes or reschedules each in the same transaction.
func (s *Store) ClaimDueTimersTx(ctx context.Context, tx pgx.Tx, now time.Time, limit int) ([]DueTimer, error) {
	rows, err := tx.Query(ctx, `
SELECT t.id, t.kind, t.due_at, i.id, i.rule, i.state, i.alert
  FROM timers t JOIN incidents i ON i.id = t.incident_id
 WHERE t.due_at <= $1
 ORDER BY t.due_at
 LIMIT $2
 FOR UPDATE OF t, i SKIP LOCKED`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("claim timers: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (DueTimer, error) {
		var d DueTimer
		var ab []byte
		if err := r.Scan(&d.TimerID, &d.Kind, &d.DueAt, &d.IncidentID, &d.Rule, &d.State, &ab); err != nil {
			return d, err
		}
		var err error
		d.Alert, err = alert.ParseJSON(ab)
		return d, err
	})
}

// DeleteTimerTx removes a fired timer.
func (s *Store) DeleteTimerTx(ctx context.Context, tx pgx.Tx, id int64) error {
	_, err := tx.Exec(ctx, `DELETE FROM timers WHERE id = $1`, id)
	return err
}

// RescheduleTimerTx moves a timer to a later due time.
func (s *Store) RescheduleTimerTx(ctx context.Context, tx pgx.Tx, id int64, due time.Time) error {
	_, err := tx.Exec(ctx, `UPDATE timers SET due_at = $2 WHERE id = $1`, id, due)
	return err
}

// FireIncidentTx moves a pending incident to firing; it reports false if it was not pending.
func (s *Store) FireIncidentTx(ctx context.Context, tx pgx.Tx, id int64, at time.Time) (bool, error) {
	tag, err := tx.Exec(ctx, `UPDATE incidents SET state = `+lit(vocab.IncidentFiring)+`, fired_at = $2, updated_at = $2 WHERE id = $1 AND state = `+lit(vocab.IncidentPending), id, at)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// OpenAlert is the name and labels of a firing alert (see FiringAlerts), with its source and its
// value (nil when it carried none).
type OpenAlert struct {
	Name   string
	Labels map[string]string
	Source string
	Value  *float64
}

// RefreshKey names the open incidents of one alert episode (the alert's fingerprint and startsAt)
// whose rule is one of the rules given to RefreshIncidentsTx but not one of Except.
type RefreshKey struct {
	Alert  alert.Alert
	Except []string
}

// RefreshIncidentsTx stores the latest alert of the open incidents the keys name, each key's rules
// being rules but its Except, so a `for` re-check sees the alert as it is now even when it no
// longer matches. One key per alert, whatever the number of rules: the engine passes the rules
// with a `for` and, per firing alert, those of them that matched it or failed on it.
func (s *Store) RefreshIncidentsTx(ctx context.Context, tx pgx.Tx, rules []string, ks []RefreshKey) error {
	if len(ks) == 0 || len(rules) == 0 {
		return nil
	}
	n := len(ks)
	fps, alerts := make([]string, n), make([]string, n)
	starts, seen := make([]time.Time, n), make([]time.Time, n)
	var buf []byte
	var exKeys []int64
	var exRules []string
	for i, k := range ks {
		var err error
		if buf, err = k.Alert.AppendJSON(buf[:0]); err != nil {
			return err
		}
		fps[i], starts[i], alerts[i], seen[i] = k.Alert.Fingerprint, k.Alert.StartsAt, string(buf), k.Alert.ReceivedAt
		for _, r := range k.Except {
			exKeys, exRules = append(exKeys, int64(i+1)), append(exRules, r)
		}
	}
	// The rows are locked in id order first (l), as refreshOpen does: no lock cycle between
	// replicas refreshing the same incidents.
	_, err := tx.Exec(ctx, `
WITH u AS MATERIALIZED (
    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::timestamptz[]) WITH ORDINALITY AS u(fp, starts, alert, seen, k)
), l AS MATERIALIZED (
    SELECT i.id FROM incidents i
     WHERE (i.fingerprint, i.starts_at) IN (SELECT fp, starts FROM u) AND i.state IN `+sqlOpen+` AND i.rule = ANY($5::text[])
     ORDER BY i.id FOR NO KEY UPDATE
)
UPDATE incidents i SET alert = u.alert::json, last_seen_at = greatest(i.last_seen_at, u.seen)
  FROM u, l
 WHERE l.id = i.id AND i.fingerprint = u.fp AND i.starts_at = u.starts AND i.state IN `+sqlOpen+` AND i.rule = ANY($5::text[])
   AND NOT EXISTS (SELECT FROM unnest($6::bigint[], $7::text[]) AS x(k, rule) WHERE x.k = u.k AND x.rule = i.rule)`,
		fps, starts, alerts, seen, rules, exKeys, exRules)
	if err != nil {
		return fmt.Errorf("refresh incidents: %w", err)
	}
	return nil
}

// SuppressIncidentTx marks a firing incident suppressed (the storm guard refused to act on it).
func (s *Store) SuppressIncidentTx(ctx context.Context, tx pgx.Tx, id int64, at time.Time) error {
	_, err := tx.Exec(ctx, `UPDATE incidents SET state = `+lit(vocab.IncidentSuppressed)+`, updated_at = $2 WHERE id = $1 AND state = `+lit(vocab.IncidentFiring), id, at)
	return err
}
