package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/vocab"
)

// Audit kinds.
const (
	AuditAlertRejected = "alert_rejected"
	AuditIncident      = "incident"
	AuditAction        = "action"
	AuditTimer         = "timer"
	AuditDeadLetter    = "dead_letter"
	AuditReload        = "reload"
	AuditApproval      = "approval"
	AuditControl       = "control"
	// AuditDrill records a drill run's start and end (reasons DrillStarted, DrillPassed, DrillFailed).
	AuditDrill = "drill"
)

// AuditInsert is one decision to record.
type AuditInsert struct {
	At         time.Time
	IncidentID int64 // 0 = none
	ActionID   int64 // 0 = none
	Kind       string
	Actor      string
	Reason     string
	Detail     map[string]any
	RuleHash   string
}

// AuditTx appends audit rows in one statement (from bulkRows rows on, one COPY).
func (s *Store) AuditTx(ctx context.Context, tx pgx.Tx, es []AuditInsert) error {
	if len(es) == 0 {
		return nil
	}
	if len(es) >= bulkRows {
		return s.copyAudit(ctx, tx, es)
	}
	n := len(es)
	ats := make([]time.Time, n)
	incs, acts := make([]*int64, n), make([]*int64, n)
	kinds, actors, reasons, details, hashes := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	var buf []byte
	for i := range es {
		e := &es[i]
		var err error
		if buf, err = auditDetail(buf[:0], e.Detail); err != nil {
			return err
		}
		ats[i], kinds[i], actors[i], reasons[i], details[i], hashes[i] = e.At, e.Kind, e.Actor, e.Reason, string(buf), e.RuleHash
		incs[i], acts[i] = nonZero(&e.IncidentID), nonZero(&e.ActionID)
	}
	_, err := tx.Exec(ctx, `
INSERT INTO audit (at, incident_id, action_id, kind, actor, reason, detail, rule_hash, version)
SELECT u.at, u.inc, u.act, u.kind, u.actor, u.reason, u.detail::json, u.hash, $9
  FROM unnest($1::timestamptz[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
       AS u(at, inc, act, kind, actor, reason, detail, hash)`,
		ats, incs, acts, kinds, actors, reasons, details, hashes, s.version)
	if err != nil {
		return fmt.Errorf("write audit: %w", err)
	}
	return nil
}

// copyAudit appends audit rows with COPY: they only ever insert, so no staging is needed.
func (s *Store) copyAudit(ctx context.Context, tx pgx.Tx, es []AuditInsert) error {
	var buf []byte
	err := copyRows(ctx, tx, "audit", auditCopyCols, len(es), func(i int, c *copyBuf) error {
		e := &es[i]
		var err error
		if buf, err = auditDetail(buf[:0], e.Detail); err != nil {
			return err
		}
		c.time(e.At)
		c.int8OrNull(e.IncidentID)
		c.int8OrNull(e.ActionID)
		c.text(e.Kind)
		c.text(e.Actor)
		c.text(e.Reason)
		c.json(buf)
		c.text(e.RuleHash)
		c.text(s.version)
		return nil
	})
	if err != nil {
		return fmt.Errorf("write audit: %w", err)
	}
	return nil
}

// auditDetail appends the JSON of an audit row's detail ({} for none) to b.
func auditDetail(b []byte, d map[string]any) ([]byte, error) {
	if d == nil {
		return append(b, "{}"...), nil
	}
	b, err := appendJSON(b, d)
	if err != nil {
		return nil, fmt.Errorf("audit detail: %w", err)
	}
	return b, nil
}

// appendJSON appends v's JSON, json.Marshal's byte for byte, to b: without reflection for the
// values details and params hold (alert.AppendJSONValue).
func appendJSON(b []byte, v any) ([]byte, error) {
	n := len(b)
	if out, ok := alert.AppendJSONValue(b, v); ok {
		return out, nil
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b[:n], j...), nil
}

// nonZero is p, or nil (NULL) when *p is 0.
func nonZero(p *int64) *int64 {
	if *p == 0 {
		return nil
	}
	return p
}

// Audit appends audit rows in their own transaction.
func (s *Store) Audit(ctx context.Context, es ...AuditInsert) error {
	return s.InTx(ctx, func(tx pgx.Tx) error { return s.AuditTx(ctx, tx, es) })
}

// DeleteBefore removes incidents resolved or abandoned before cutoff (with their actions and
// timers), and audit rows (the timers' re-check rows too), cooldowns, budget spend and recorded
// firing alerts older than cutoff, and drill runs that ended (or started, if they never ended)
// before cutoff and no incident names any longer: a run is kept while an incident of it is, since
// that incident is a drill's only while its run is known. Open incidents are kept whatever their age (Retain abandons
// those nobody heard of); dead letters are Retain's, which counts the unreplayed ones first.
func (s *Store) DeleteBefore(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for _, q := range []string{
		`DELETE FROM incidents WHERE state IN ` + list(vocab.IncidentResolved, vocab.IncidentAbandoned) + ` AND resolved_at < $1`,
		`DELETE FROM audit WHERE at < $1`,
		`DELETE FROM drill_runs r WHERE coalesce(r.finished_at, r.started_at) < $1 AND NOT EXISTS (
    SELECT 1 FROM incidents i WHERE i.labels ? '` + alert.DrillLabel + `' AND i.labels->>'` + alert.DrillLabel + `' = r.run_id)`,
		`DELETE FROM cooldowns WHERE until < $1`,
		`DELETE FROM budget_spend WHERE at < $1`,
		// An alert re-sent while it fires refreshes last_seen; one not seen since is long stale.
		`DELETE FROM firing_alerts WHERE last_seen < $1`,
	} {
		tag, err := s.pool.Exec(ctx, q, cutoff)
		if err != nil {
			return total, fmt.Errorf("retention: %w", err)
		}
		total += tag.RowsAffected()
	}
	return total, nil
}
