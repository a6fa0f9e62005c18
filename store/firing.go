package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
)

// RecordFiringTx records the batch's alerts in the firing set firing() reads: a firing alert is
// upserted (its latest episode), a resolved one removes its episode (not a later one).
func (s *Store) RecordFiringTx(ctx context.Context, tx pgx.Tx, as []alert.Alert, now time.Time) error {
	var fps, names, labels, sources []string
	var values []*float64
	var starts []time.Time
	var gone []string
	var goneStarts []time.Time
	seen := map[string]int{}
	for _, a := range as {
		if a.Status != alert.StatusFiring {
			gone, goneStarts = append(gone, a.Fingerprint), append(goneStarts, a.StartsAt)
			continue
		}
		b, err := json.Marshal(a.Labels)
		if err != nil {
			return err
		}
		if i, ok := seen[a.Fingerprint]; ok { // one row per fingerprint: the latest episode
			if a.StartsAt.After(starts[i]) {
				names[i], labels[i], starts[i], sources[i], values[i] = a.Name, string(b), a.StartsAt, a.Source, a.Value
			}
			continue
		}
		seen[a.Fingerprint] = len(fps)
		fps, names, labels, starts = append(fps, a.Fingerprint), append(names, a.Name), append(labels, string(b)), append(starts, a.StartsAt)
		sources, values = append(sources, a.Source), append(values, a.Value)
	}
	if len(fps) > 0 {
		if _, err := tx.Exec(ctx, `
INSERT INTO firing_alerts (fingerprint, name, labels, starts_at, last_seen, source, value)
SELECT u.fp, u.name, u.labels::jsonb, u.starts, $5, u.source, u.value
  FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $6::text[], $7::float8[]) AS u(fp, name, labels, starts, source, value)
ORDER BY u.fp
ON CONFLICT (fingerprint) DO UPDATE
   SET name = EXCLUDED.name, labels = EXCLUDED.labels, last_seen = EXCLUDED.last_seen,
       starts_at = greatest(firing_alerts.starts_at, EXCLUDED.starts_at), source = EXCLUDED.source, value = EXCLUDED.value`,
			fps, names, labels, starts, now, sources, values); err != nil {
			return fmt.Errorf("record firing alerts: %w", err)
		}
	}
	if len(gone) > 0 {
		if _, err := tx.Exec(ctx, `
DELETE FROM firing_alerts f USING unnest($1::text[], $2::timestamptz[]) AS u(fp, starts)
 WHERE f.fingerprint = u.fp AND f.starts_at <= u.starts`, gone, goneStarts); err != nil {
			return fmt.Errorf("record resolved alerts: %w", err)
		}
	}
	return nil
}

// FiringAlerts returns, in one read, the snapshot behind the rules' firing(): the alerts of open
// incidents and the recorded firing alerts last seen after since (an alert that stopped being
// re-sent without a resolution drops out).
func (s *Store) FiringAlerts(ctx context.Context, since time.Time) ([]OpenAlert, error) {
	rows, err := s.pool.Query(ctx, `
SELECT alert_name, labels::jsonb FROM incidents WHERE state IN `+sqlOpen+`
UNION
SELECT name, labels FROM firing_alerts WHERE last_seen > $1`, since)
	if err != nil {
		return nil, fmt.Errorf("read firing alerts: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (OpenAlert, error) {
		var o OpenAlert
		err := r.Scan(&o.Name, &o.Labels)
		return o, err
	})
}

// ProbeAlerts returns the firing alerts of responder's probes (source probe) in the same snapshot
// as FiringAlerts, each with its value: the source of probe("name") in expressions. Only the open
// incidents whose labels carry probe_kind (every probe alert's) have their stored alert read.
func (s *Store) ProbeAlerts(ctx context.Context, since time.Time) ([]OpenAlert, error) {
	rows, err := s.pool.Query(ctx, `
SELECT alert_name, labels::jsonb, (alert->>'value')::float8 FROM incidents
 WHERE state IN `+sqlOpen+` AND labels ? 'probe_kind' AND alert->>'source' = `+lit(alert.SourceProbe)+`
UNION
SELECT name, labels, value FROM firing_alerts WHERE last_seen > $1 AND source = `+lit(alert.SourceProbe), since)
	if err != nil {
		return nil, fmt.Errorf("read probe alerts: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (OpenAlert, error) {
		o := OpenAlert{Source: alert.SourceProbe}
		err := r.Scan(&o.Name, &o.Labels, &o.Value)
		return o, err
	})
}
