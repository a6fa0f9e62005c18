package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/responder-sre/responder/vocab"
)

// ErrNotFound is returned when a row does not exist.
var ErrNotFound = errors.New("not found")

// Page selects a page of a list, newest first. Cursor is the next_cursor of the previous page.
type Page struct {
	Limit  int
	Cursor string
}

// DefaultLimit and MaxLimit bound list pages.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

func (p Page) bounds() (limit int, before int64, err error) {
	limit = p.Limit
	switch {
	case limit <= 0:
		limit = DefaultLimit
	case limit > MaxLimit:
		limit = MaxLimit
	}
	if p.Cursor != "" {
		before, err = strconv.ParseInt(p.Cursor, 10, 64)
		if err != nil || before <= 0 {
			return 0, 0, fmt.Errorf("invalid cursor %q", p.Cursor)
		}
	}
	return limit, before, nil
}

// where builds "WHERE a AND b" with positional args.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, arg any) {
	w.args = append(w.args, arg)
	w.conds = append(w.conds, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(w.args))))
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

func nextCursor(n, limit int, lastID int64) string {
	if n < limit {
		return ""
	}
	return strconv.FormatInt(lastID, 10)
}

// IncidentFilter filters ListIncidents.
type IncidentFilter struct {
	State vocab.IncidentState
	Rule  string
	// Drill keeps the incidents of one drill run (its run id).
	Drill string
	Page
}

const incidentCols = `id, rule, fingerprint, state, alert_name, labels, starts_at, fired_at, resolved_at, last_seen_at, created_at, updated_at, version, rule_hash`

// scanIncident scans the columns of incidentSelect, then extra.
func scanIncident(r pgx.Row, i *Incident, extra ...any) error {
	err := r.Scan(append([]any{&i.ID, &i.Rule, &i.Fingerprint, &i.State, &i.AlertName, &i.Labels, &i.StartsAt, &i.FiredAt, &i.ResolvedAt,
		&i.LastSeenAt, &i.CreatedAt, &i.UpdatedAt, &i.Version, &i.RuleHash, &i.Drill, &i.ReceivedAt}, extra...)...)
	if i.ReceivedAt != nil && i.ReceivedAt.IsZero() {
		i.ReceivedAt = nil
	}
	return err
}

// ListIncidents returns a page of incidents, newest first, and the cursor of the next page.
func (s *Store) ListIncidents(ctx context.Context, f IncidentFilter) ([]Incident, string, error) {
	limit, before, err := f.bounds()
	if err != nil {
		return nil, "", err
	}
	var w where
	if f.State != "" {
		w.add("state = ?", f.State)
	}
	if f.Rule != "" {
		w.add("rule = ?", f.Rule)
	}
	if f.Drill != "" {
		w.addDrill("incidents", f.Drill)
	}
	if before > 0 {
		w.add("id < ?", before)
	}
	w.args = append(w.args, limit)
	rows, err := s.pool.Query(ctx, `SELECT `+incidentSelect("")+` FROM incidents`+w.String()+` ORDER BY id DESC LIMIT $`+strconv.Itoa(len(w.args)), w.args...)
	if err != nil {
		return nil, "", err
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Incident, error) {
		var i Incident
		err := scanIncident(r, &i)
		return i, err
	})
	if err != nil || len(items) == 0 {
		return []Incident{}, "", err
	}
	return items, nextCursor(len(items), limit, items[len(items)-1].ID), nil
}

// GetIncident returns one incident with its actions and audit trail.
func (s *Store) GetIncident(ctx context.Context, id int64) (*Incident, error) {
	var i Incident
	if err := scanIncident(s.pool.QueryRow(ctx, `SELECT `+incidentSelect("")+` FROM incidents WHERE id = $1`, id), &i); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	acts, _, err := s.ListActions(ctx, ActionFilter{IncidentID: id, Page: Page{Limit: MaxLimit}})
	if err != nil {
		return nil, err
	}
	aud, _, err := s.ListAudit(ctx, AuditFilter{IncidentID: id, Page: Page{Limit: MaxLimit}})
	if err != nil {
		return nil, err
	}
	i.Actions, i.Audit = acts, aud
	return &i, nil
}

// ActionFilter filters ListActions.
type ActionFilter struct {
	State      vocab.State
	Rule       string
	IncidentID int64
	// Drill keeps the actions of one drill run's incidents (its run id).
	Drill string
	Page
}

// ListActions returns a page of actions, newest first.
func (s *Store) ListActions(ctx context.Context, f ActionFilter) ([]Action, string, error) {
	limit, before, err := f.bounds()
	if err != nil {
		return nil, "", err
	}
	var w where
	if f.State != "" {
		w.add("a.state = ?", f.State)
	}
	if f.Rule != "" {
		w.add("a.rule = ?", f.Rule)
	}
	if f.IncidentID != 0 {
		w.add("a.incident_id = ?", f.IncidentID)
	}
	if f.Drill != "" {
		w.addDrillActions(f.Drill)
	}
	if before > 0 {
		w.add("a.id < ?", before)
	}
	w.args = append(w.args, limit)
	rows, err := s.pool.Query(ctx, `SELECT `+actionCols+` FROM actions a`+w.String()+` ORDER BY a.id DESC LIMIT $`+strconv.Itoa(len(w.args)), w.args...)
	if err != nil {
		return nil, "", err
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Action, error) {
		var a Action
		err := scanAction(r, &a)
		return a, err
	})
	if err != nil || len(items) == 0 {
		return []Action{}, "", err
	}
	return items, nextCursor(len(items), limit, items[len(items)-1].ID), nil
}

// GetAction returns one action.
func (s *Store) GetAction(ctx context.Context, id int64) (*Action, error) {
	var a Action
	if err := scanAction(s.pool.QueryRow(ctx, `SELECT `+actionCols+` FROM actions a WHERE a.id = $1`, id), &a); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	return &a, nil
}

// AuditFilter filters ListAudit.
type AuditFilter struct {
	IncidentID int64
	// Rule keeps the entries of the rule's incidents.
	Rule string
	// Since and Until bound the entries' time: Since <= at < Until (zero: unbounded).
	Since, Until time.Time
	Page
}

// ListAudit returns a page of audit entries, newest first.
func (s *Store) ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, string, error) {
	limit, before, err := f.bounds()
	if err != nil {
		return nil, "", err
	}
	var w where
	if f.IncidentID != 0 {
		w.add("incident_id = ?", f.IncidentID)
	}
	if f.Rule != "" {
		w.add("incident_id IN (SELECT id FROM incidents WHERE rule = ?)", f.Rule)
	}
	if !f.Since.IsZero() {
		w.add("at >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		w.add("at < ?", f.Until)
	}
	if before > 0 {
		w.add("id < ?", before)
	}
	w.args = append(w.args, limit)
	rows, err := s.pool.Query(ctx, `SELECT id, at, incident_id, action_id, kind, actor, reason, detail, version, rule_hash FROM audit`+
		w.String()+` ORDER BY id DESC LIMIT $`+strconv.Itoa(len(w.args)), w.args...)
	if err != nil {
		return nil, "", err
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		err := r.Scan(&e.ID, &e.At, &e.IncidentID, &e.ActionID, &e.Kind, &e.Actor, &e.Reason, &e.Detail, &e.Version, &e.RuleHash)
		return e, err
	})
	if err != nil || len(items) == 0 {
		return []AuditEntry{}, "", err
	}
	return items, nextCursor(len(items), limit, items[len(items)-1].ID), nil
}
