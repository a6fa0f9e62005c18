package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/vocab"
)

// AuditSlack is the audit kind of refused Slack requests (bad signature, not an approver).
const AuditSlack = "slack"

// SlackMessage is the Slack message of one incident: where it is and what it last showed.
type SlackMessage struct {
	IncidentID int64
	Channel    string // the channel ID chat.postMessage answered
	TS         string
	Hash       string // of the rendered content last sent
	Renders    int    // how many times it was posted or updated
	// ResolvedNotice is true once the resolution notice was posted in its thread.
	ResolvedNotice bool
	// Final is true once nothing about the incident can change any more: it is left alone.
	Final     bool
	UpdatedAt time.Time
}

// SlackIncident is an incident whose message may need posting or updating, with its latest alert
// and its message (nil when none was posted yet).
type SlackIncident struct {
	Incident
	Alert   alert.Alert
	Message *SlackMessage
}

// SlackFloor returns the id below which no incident was created after since, scanning forward from
// after (the previous floor): incidents at or below it are too old to get a first message.
func (s *Store) SlackFloor(ctx context.Context, after int64, since time.Time) (int64, error) {
	var floor int64
	err := s.pool.QueryRow(ctx, `
SELECT coalesce((SELECT min(id) - 1 FROM incidents WHERE id > $1 AND created_at > $2),
                (SELECT max(id) FROM incidents), $1)`, after, since).Scan(&floor)
	if err != nil {
		return after, fmt.Errorf("slack floor: %w", err)
	}
	return max(floor, after), nil
}

// SlackCandidates returns, oldest first, up to limit incidents whose Slack message may be out of
// date: those above floor created after since that have none yet and are firing, suppressed, or
// resolved after firing; and those whose message is not final.
func (s *Store) SlackCandidates(ctx context.Context, floor int64, since time.Time, limit int) ([]SlackIncident, error) {
	rows, err := s.pool.Query(ctx, `
(SELECT `+incidentSelect("i.")+`, i.alert, NULL::text, NULL::text, NULL::text, NULL::int, NULL::boolean, NULL::timestamptz
   FROM incidents i
  WHERE i.id > $1 AND i.created_at > $2
    AND (i.state IN `+list(vocab.IncidentFiring, vocab.IncidentSuppressed)+` OR (i.state = `+lit(vocab.IncidentResolved)+` AND i.fired_at IS NOT NULL))
    AND NOT EXISTS (SELECT 1 FROM slack_messages m WHERE m.incident_id = i.id)
  ORDER BY i.id LIMIT $3)
UNION ALL
(SELECT `+incidentSelect("i.")+`, i.alert, m.channel, m.ts, m.hash, m.renders, m.resolved_notice, m.updated_at
   FROM slack_messages m JOIN incidents i ON i.id = m.incident_id
  WHERE NOT m.final
  ORDER BY m.incident_id LIMIT $3)
ORDER BY 1 LIMIT $3`, floor, since, limit)
	if err != nil {
		return nil, fmt.Errorf("slack candidates: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (SlackIncident, error) {
		var c SlackIncident
		var ab []byte
		var channel, ts, hash *string
		var renders *int
		var notice *bool
		var updated *time.Time
		i := &c.Incident
		if err := scanIncident(r, i, &ab, &channel, &ts, &hash, &renders, &notice, &updated); err != nil {
			return c, err
		}
		if channel != nil {
			c.Message = &SlackMessage{IncidentID: i.ID, Channel: *channel, TS: *ts, Hash: *hash, Renders: *renders,
				ResolvedNotice: *notice, UpdatedAt: *updated}
		}
		return c, json.Unmarshal(ab, &c.Alert)
	})
}

// prefixed qualifies every column of a ", "-separated list with p ("i.").
func prefixed(p, cols string) string { return p + strings.ReplaceAll(cols, ", ", ", "+p) }

// SaveSlackMessage records a posted or updated incident message. The channel and ts of an existing
// message never change; renders counts the saves.
func (s *Store) SaveSlackMessage(ctx context.Context, m SlackMessage, at time.Time) error {
	_, err := s.pool.Exec(ctx, `
INSERT INTO slack_messages (incident_id, channel, ts, hash, renders, resolved_notice, final, created_at, updated_at)
VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $7)
ON CONFLICT (incident_id) DO UPDATE
   SET hash = EXCLUDED.hash, renders = slack_messages.renders + 1,
       resolved_notice = slack_messages.resolved_notice OR EXCLUDED.resolved_notice,
       final = EXCLUDED.final, updated_at = EXCLUDED.updated_at`,
		m.IncidentID, m.Channel, m.TS, m.Hash, m.ResolvedNotice, m.Final, at)
	if err != nil {
		return fmt.Errorf("save slack message of incident %d: %w", m.IncidentID, err)
	}
	return nil
}

// GetSlackMessage returns the message of an incident, or ErrNotFound.
func (s *Store) GetSlackMessage(ctx context.Context, incidentID int64) (*SlackMessage, error) {
	m := SlackMessage{IncidentID: incidentID}
	err := s.pool.QueryRow(ctx, `SELECT channel, ts, hash, renders, resolved_notice, final, updated_at FROM slack_messages WHERE incident_id = $1`,
		incidentID).Scan(&m.Channel, &m.TS, &m.Hash, &m.Renders, &m.ResolvedNotice, &m.Final, &m.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("slack message of incident %d: %w", incidentID, err)
	}
	return &m, nil
}

// SlackPage is a page page.slack posted, keyed by its action's idempotency key.
type SlackPage struct {
	Key        string
	IncidentID int64 // 0 = none
	Channel    string
	TS         string
	At         time.Time
}

// GetSlackPage returns the page recorded under key, or ErrNotFound.
func (s *Store) GetSlackPage(ctx context.Context, key string) (*SlackPage, error) {
	p := SlackPage{Key: key}
	var inc *int64
	err := s.pool.QueryRow(ctx, `SELECT incident_id, channel, ts, at FROM slack_pages WHERE key = $1`, key).Scan(&inc, &p.Channel, &p.TS, &p.At)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("slack page %q: %w", key, err)
	}
	if inc != nil {
		p.IncidentID = *inc
	}
	return &p, nil
}

// RecordSlackPage records a posted page; a key recorded before keeps its first page (it reports
// false then).
func (s *Store) RecordSlackPage(ctx context.Context, p SlackPage) (bool, error) {
	var inc *int64
	if p.IncidentID != 0 {
		inc = &p.IncidentID
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO slack_pages (key, incident_id, channel, ts, at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING`,
		p.Key, inc, p.Channel, p.TS, p.At)
	if err != nil {
		return false, fmt.Errorf("record slack page %q: %w", p.Key, err)
	}
	return tag.RowsAffected() == 1, nil
}
