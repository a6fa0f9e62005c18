package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/vocab"
)

// bulkRows is the batch size from which the engine's writes go through COPY instead of one
// statement over unnest arrays. PostgreSQL takes rows from COPY several times faster than from
// an INSERT … SELECT over a dozen parameter arrays of thousands of elements (COPY inserts them
// in pages, and pgx streams it while it encodes), but COPY cannot say ON CONFLICT: the bulk
// paths copy only rows that cannot conflict, in a savepoint, and should a concurrent
// transaction insert one of them first (the unique index refuses the COPY), they roll the
// savepoint back and write the same rows with the one-statement form, whose semantics they
// keep. Below bulkRows the one-statement form costs fewer round trips.
const bulkRows = 64

var (
	incidentCopyCols = []string{"id", "rule", "fingerprint", "starts_at", "state", "alert_name", "labels", "alert", "last_seen_at",
		"fired_at", "resolved_at", "created_at", "updated_at", "version", "rule_hash"}
	actionCopyCols = []string{"incident_id", "phase", "step", "rule", "rule_hash", "handler", "target", "scope", "class", "mode", "params",
		"approval", "timeout_ms", "state", "reason", "error", "created_at", "finished_at", "basis_at", "approvals_required", "member", "evidence", "version", "chain"}
	auditCopyCols = []string{"at", "incident_id", "action_id", "kind", "actor", "reason", "detail", "rule_hash", "version"}
)

// copyBuf builds the data of a binary COPY (COPY … FROM STDIN (FORMAT binary)): each row is
// its field count, then each field as its length and its bytes in the column type's binary
// form. The fields must be of the exact types of the columns (tests copy into every table that
// is copied into, so a migration that changes one fails them).
type copyBuf struct{ b []byte }

// copyHeader starts the data: signature, flags, header extension length.
const copyHeader = "PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00"

func (c *copyBuf) row(fields int) { c.b = binary.BigEndian.AppendUint16(c.b, uint16(fields)) }

func (c *copyBuf) null() { c.b = binary.BigEndian.AppendUint32(c.b, math.MaxUint32) }

// text is a text value (or json, whose binary form is its text).
func (c *copyBuf) text(s string) {
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(s)))
	c.b = append(c.b, s...)
}

func (c *copyBuf) json(j []byte) {
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(j)))
	c.b = append(c.b, j...)
}

// jsonb is JSON in jsonb's binary form: version 1, then the text.
func (c *copyBuf) jsonb(j []byte) {
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(j)+1))
	c.b = append(c.b, 1)
	c.b = append(c.b, j...)
}

func (c *copyBuf) int8(v int64) {
	c.b = binary.BigEndian.AppendUint32(c.b, 8)
	c.b = binary.BigEndian.AppendUint64(c.b, uint64(v))
}

func (c *copyBuf) int8OrNull(v int64) {
	if v == 0 {
		c.null()
		return
	}
	c.int8(v)
}

func (c *copyBuf) int4(v int32) {
	c.b = binary.BigEndian.AppendUint32(c.b, 4)
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(v))
}

// y2k is PostgreSQL's epoch for timestamps, in microseconds after Unix's.
const y2k = 946684800 * 1000000

// time is a timestamptz: microseconds since 2000-01-01 UTC, as pgx encodes a time.Time.
func (c *copyBuf) time(t time.Time) {
	c.int8(t.Unix()*1000000 + int64(t.Nanosecond())/1000 - y2k)
}

func (c *copyBuf) timeOrNull(t *time.Time) {
	if t == nil {
		c.null()
		return
	}
	c.time(*t)
}

// copyRows copies n rows into table's cols; row(i, c) appends row i to c. The rows are encoded
// as pgx sends them, 64 KiB at a time, while the server inserts the previous ones.
func copyRows(ctx context.Context, tx pgx.Tx, table string, cols []string, n int, row func(i int, c *copyBuf) error) error {
	quoted := make([]string, len(cols))
	for i, col := range cols {
		quoted[i] = pgx.Identifier{col}.Sanitize()
	}
	sql := "COPY " + pgx.Identifier{table}.Sanitize() + " (" + strings.Join(quoted, ", ") + ") FROM STDIN (FORMAT binary)"
	r := &copyReader{n: n, fields: len(cols), row: row}
	r.c.b = append(make([]byte, 0, 80<<10), copyHeader...)
	_, err := tx.Conn().PgConn().CopyFrom(ctx, r, sql)
	if r.err != nil { // not the server's "COPY from stdin failed", which would read as transient
		return r.err
	}
	return err
}

// copyReader encodes rows as they are read.
type copyReader struct {
	c        copyBuf
	off      int // c.b[:off] was read
	i, n     int // next row, rows
	fields   int
	row      func(i int, c *copyBuf) error
	err      error
	finished bool
}

func (r *copyReader) Read(p []byte) (int, error) {
	if r.off > 0 { // keep what is left at the start
		r.c.b = append(r.c.b[:0], r.c.b[r.off:]...)
		r.off = 0
	}
	for len(r.c.b) < len(p) && !r.finished {
		if r.i == r.n {
			r.c.b = append(r.c.b, 0xff, 0xff) // the trailer: a row of -1 fields
			r.finished = true
			break
		}
		r.c.row(r.fields)
		if r.err = r.row(r.i, &r.c); r.err != nil {
			return 0, r.err
		}
		r.i++
	}
	k := copy(p, r.c.b)
	r.off = k
	if k == 0 && r.finished {
		return 0, io.EOF
	}
	return k, nil
}

// copyNew copies rows that should not conflict in a savepoint. It reports false, with the
// savepoint rolled back, when a unique index refused one: a concurrent transaction inserted
// it first, and the caller writes the rows the one-statement way.
func copyNew(ctx context.Context, tx pgx.Tx, table string, cols []string, n int, row func(i int, c *copyBuf) error) (bool, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return false, err
	}
	if err := copyRows(ctx, sp, table, cols, n, row); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
			return false, sp.Rollback(ctx)
		}
		return false, fmt.Errorf("copy into %s: %w", table, err)
	}
	return true, sp.Commit(ctx)
}

// PlanActionsTx plans actions as InsertActionsTx does (an existing (incident, phase, step) is
// left alone), without returning ids. From bulkRows actions on, it copies them (see bulkRows):
// the engine mostly plans the steps of incidents it has just opened or resolved, which have none
// yet. When some already exist (an escalation planned again, a redelivered batch), the copy fails
// on the unique key and the rows go in through InsertActionsTx instead: correct, only slower.
func (s *Store) PlanActionsTx(ctx context.Context, tx pgx.Tx, as []NewAction) error {
	if len(as) >= bulkRows {
		var buf []byte
		ok, err := copyNew(ctx, tx, "actions", actionCopyCols, len(as), func(i int, c *copyBuf) error {
			var err error
			buf, err = s.actionRow(c, buf[:0], &as[i])
			return err
		})
		if ok || err != nil {
			if err != nil {
				err = fmt.Errorf("plan actions: %w", err)
			}
			return err
		}
	}
	_, err := s.InsertActionsTx(ctx, tx, as)
	return err
}

// actionRow appends a's row (actionCopyCols) to c as InsertActionsTx writes it; b is scratch
// space for the params' JSON (returned).
func (s *Store) actionRow(c *copyBuf, b []byte, a *NewAction) ([]byte, error) {
	p := a.Params
	if p == nil {
		p = map[string]any{}
	}
	params, err := appendJSON(b, p)
	if err != nil {
		return nil, fmt.Errorf("action params: %w", err)
	}
	c.int8(a.IncidentID)
	c.text(string(a.Phase))
	c.int4(int32(a.Step))
	for _, t := range [...]string{a.Rule, a.RuleHash, a.Handler, a.Target, a.Scope, string(a.Class), string(a.Mode)} {
		c.text(t)
	}
	c.json(params)
	c.text(a.Approval)
	c.int8(a.Timeout.Milliseconds())
	c.text(string(a.State))
	c.text(string(a.Reason))
	c.text(a.Error)
	c.time(a.At)
	if a.State != vocab.StatePlanned && a.State != vocab.StateAwaitingApproval {
		c.time(a.At) // finished_at
	} else {
		c.null()
	}
	basis := a.BasisAt
	if basis.IsZero() {
		basis = a.At
	}
	c.time(basis)
	c.int4(int32(max(a.ApprovalsRequired, 1)))
	if a.Member != "" {
		c.text(a.Member)
	} else {
		c.null()
	}
	c.text(a.Evidence)
	c.text(s.version)
	if a.Chain == nil {
		c.null()
		return params, nil
	}
	chain, err := appendJSON(nil, a.Chain)
	if err != nil {
		return nil, fmt.Errorf("action chain: %w", err)
	}
	c.jsonb(chain)
	return params, nil
}

// upsertCopy is UpsertIncidentsTx for a bulk of upserts: one statement finds which incidents
// exist (and draws ids for the others), the new ones are copied, the open ones refreshed. It
// reports false when a concurrent transaction inserted one of the new ones first (see copyNew).
func (s *Store) upsertCopy(ctx context.Context, tx pgx.Tx, ups []IncidentUpsert) ([]UpsertResult, bool, error) {
	ids, existing, err := incidentIDs(ctx, tx, ups)
	if err != nil {
		return nil, false, err
	}
	var fresh, open []int
	for i, u := range ups {
		switch {
		case existing[i] == "":
			fresh = append(fresh, i)
		case existing[i] != vocab.IncidentResolved && u.State != vocab.IncidentResolved:
			open = append(open, i)
		}
	}
	if len(fresh) > 0 {
		var buf []byte
		ok, err := copyNew(ctx, tx, "incidents", incidentCopyCols, len(fresh), func(j int, c *copyBuf) error {
			u := &ups[fresh[j]]
			var n int
			var err error
			if buf, n, err = appendAlert(buf[:0], u.Alert); err != nil {
				return err
			}
			fired, resolved := firedResolved(u.State, &u.At)
			c.int8(ids[fresh[j]])
			c.text(u.Rule)
			c.text(u.Alert.Fingerprint)
			c.time(u.Alert.StartsAt)
			c.text(string(u.State))
			c.text(u.Alert.Name)
			c.jsonb(buf[:n])
			c.json(buf[n:])
			c.time(u.Alert.ReceivedAt)
			c.timeOrNull(fired)
			c.timeOrNull(resolved)
			c.time(u.At)
			c.time(u.At)
			c.text(s.version)
			c.text(u.RuleHash)
			return nil
		})
		if !ok || err != nil {
			return nil, false, err
		}
	}
	states, err := refreshOpen(ctx, tx, ups, ids, open)
	if err != nil {
		return nil, false, err
	}
	res := make([]UpsertResult, 0, len(fresh)+len(states))
	for i, u := range ups {
		r := UpsertResult{ID: ids[i], Rule: u.Rule, Fingerprint: u.Alert.Fingerprint, StartsAt: u.Alert.StartsAt, State: u.State, Inserted: true}
		if existing[i] != "" {
			st, ok := states[ids[i]]
			if !ok {
				continue // resolved: a late firing is a no-op
			}
			r.State, r.Inserted = st, false
		}
		res = append(res, r)
	}
	return res, true, nil
}

// incidentIDs returns, for each upsert, the id of its incident and the incident's state, or a
// new id and "" when there is none.
func incidentIDs(ctx context.Context, tx pgx.Tx, ups []IncidentUpsert) ([]int64, []vocab.IncidentState, error) {
	n := len(ups)
	rules, fps, starts := make([]string, n), make([]string, n), make([]time.Time, n)
	for i, u := range ups {
		rules[i], fps[i], starts[i] = u.Rule, u.Alert.Fingerprint, u.Alert.StartsAt
	}
	rows, err := tx.Query(ctx, `
SELECT u.n, coalesce(i.id, nextval('incidents_id_seq')), coalesce(i.state, '')
  FROM unnest($1::text[], $2::text[], $3::timestamptz[]) WITH ORDINALITY AS u(rule, fp, starts, n)
  LEFT JOIN incidents i ON i.rule = u.rule AND i.fingerprint = u.fp AND i.starts_at = u.starts
 ORDER BY u.n`, rules, fps, starts)
	if err != nil {
		return nil, nil, fmt.Errorf("incident ids: %w", err)
	}
	ids, states := make([]int64, n), make([]vocab.IncidentState, n)
	var k, id int64
	var state string
	_, err = pgx.ForEachRow(rows, []any{&k, &id, &state}, func() error {
		if k < 1 || k > int64(n) {
			return fmt.Errorf("incident ids: row %d of %d", k, n)
		}
		ids[k-1], states[k-1] = id, vocab.IncidentState(state)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("incident ids: %w", err)
	}
	return ids, states, nil
}

// refreshOpen stores the alert of the upserts at idx (incidents that exist) as the upsert's ON
// CONFLICT DO UPDATE does, and returns the state of each incident it refreshed: one resolved
// meanwhile is left alone.
func refreshOpen(ctx context.Context, tx pgx.Tx, ups []IncidentUpsert, ids []int64, idx []int) (map[int64]vocab.IncidentState, error) {
	if len(idx) == 0 {
		return nil, nil
	}
	n := len(idx)
	rids, alerts, seen, ats := make([]int64, n), make([]string, n), make([]time.Time, n), make([]time.Time, n)
	var buf []byte
	for j, i := range idx {
		var err error
		if buf, err = ups[i].Alert.AppendJSON(buf[:0]); err != nil {
			return nil, err
		}
		rids[j], alerts[j], seen[j], ats[j] = ids[i], string(buf), ups[i].Alert.ReceivedAt, ups[i].At
	}
	// The rows are locked in id order first (l): two replicas refreshing the same incidents lock
	// them in one order, so neither waits for the other in a cycle (a deadlock, then a retry).
	rows, err := tx.Query(ctx, `
WITH l AS MATERIALIZED (
    SELECT id FROM incidents WHERE id = ANY($1::bigint[]) AND state <> `+lit(vocab.IncidentResolved)+` ORDER BY id FOR NO KEY UPDATE
)
UPDATE incidents i
   SET alert = u.alert::json, last_seen_at = greatest(i.last_seen_at, u.seen), updated_at = u.at
  FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[]) AS u(id, alert, seen, at), l
 WHERE i.id = u.id AND l.id = i.id AND i.state <> `+lit(vocab.IncidentResolved)+`
RETURNING i.id, i.state`, rids, alerts, seen, ats)
	if err != nil {
		return nil, fmt.Errorf("refresh incidents: %w", err)
	}
	states := make(map[int64]vocab.IncidentState, n)
	var id int64
	var state string
	_, err = pgx.ForEachRow(rows, []any{&id, &state}, func() error {
		states[id] = vocab.IncidentState(state)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("refresh incidents: %w", err)
	}
	return states, nil
}

// appendAlert appends the JSON of an alert's labels and then of the alert (what json.Marshal
// writes for each) to b, and returns where the labels end.
func appendAlert(b []byte, a alert.Alert) ([]byte, int, error) {
	b = alert.AppendLabelsJSON(b, a.Labels)
	n := len(b)
	b, err := a.AppendJSON(b)
	return b, n, err
}
