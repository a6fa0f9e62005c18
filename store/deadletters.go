package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Audit reasons of dead letters beyond the failure's own reason.
const (
	DeadLetterReplayed = "replayed"
	// DeadLetterExpired: retention deleted a dead letter nobody replayed.
	DeadLetterExpired = "expired_unreplayed"
)

// DeadLetterInsert is one bus message to record as dead.
type DeadLetterInsert struct {
	MsgID string
	// Reason is what the bus said, "kind: error text" (undecodable: ..., permanent: ...); it is
	// stored split into the reason and the error.
	Reason     string
	Data       []byte
	Deliveries uint64
	At         time.Time
}

var reasonPrefix = regexp.MustCompile(`^([a-z_]+): (?s)(.*)$`)

// SplitDeadLetterReason splits the bus's "kind: error" into the reason and the error text.
func SplitDeadLetterReason(s string) (reason, errText string) {
	if m := reasonPrefix.FindStringSubmatch(s); m != nil {
		return m[1], m[2]
	}
	return s, ""
}

// InsertDeadLetter records a bus message that could not be processed, and audits it.
func (s *Store) InsertDeadLetter(ctx context.Context, msgID, reason string, data []byte, at time.Time) error {
	_, err := s.RecordDeadLetter(ctx, DeadLetterInsert{MsgID: msgID, Reason: reason, Data: data, At: at})
	return err
}

// RecordDeadLetter records a bus message that could not be processed, and audits it, in one
// transaction. It returns the dead letter's id.
func (s *Store) RecordDeadLetter(ctx context.Context, d DeadLetterInsert) (int64, error) {
	reason, errText := SplitDeadLetterReason(d.Reason)
	var id int64
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `
INSERT INTO dead_letters (at, msg_id, reason, error, data, deliveries, version) VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id`, d.At, d.MsgID, reason, errText, d.Data, int64(d.Deliveries), s.version).Scan(&id); err != nil {
			return fmt.Errorf("write dead letter: %w", err)
		}
		return s.AuditTx(ctx, tx, []AuditInsert{{At: d.At, Kind: AuditDeadLetter, Actor: "bus", Reason: reason,
			Detail: map[string]any{"dead_letter_id": id, "msg_id": d.MsgID, "bytes": len(d.Data), "error": errText,
				"deliveries": d.Deliveries}}})
	})
	return id, err
}

// DeadLetterFilter filters ListDeadLetters.
type DeadLetterFilter struct {
	Unreplayed bool // only those not replayed yet
	Page
}

// deadLetterCols: the preview is the body's first 256 bytes.
const deadLetterCols = `id, at, msg_id, reason, error, deliveries, length(data), substring(data from 1 for 256),
       replayed_at, replayed_by, replay_msg_id`

// scanDeadLetter scans deadLetterCols and then extra.
func scanDeadLetter(r pgx.Row, d *DeadLetter, extra ...any) error {
	var preview []byte
	dest := append([]any{&d.ID, &d.At, &d.MsgID, &d.Reason, &d.Error, &d.Deliveries, &d.Size, &preview, &d.ReplayedAt,
		&d.ReplayedBy, &d.ReplayMsgID}, extra...)
	if err := r.Scan(dest...); err != nil {
		return err
	}
	d.Preview = strings.ToValidUTF8(string(preview), "\uFFFD")
	return nil
}

// ListDeadLetters returns a page of dead letters, newest first, and the cursor of the next page.
func (s *Store) ListDeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, string, error) {
	limit, before, err := f.bounds()
	if err != nil {
		return nil, "", err
	}
	var w where
	if f.Unreplayed {
		w.conds = append(w.conds, "replayed_at IS NULL")
	}
	if before > 0 {
		w.add("id < ?", before)
	}
	w.args = append(w.args, limit)
	rows, err := s.pool.Query(ctx, `SELECT `+deadLetterCols+` FROM dead_letters`+w.String()+
		` ORDER BY id DESC LIMIT $`+strconv.Itoa(len(w.args)), w.args...)
	if err != nil {
		return nil, "", fmt.Errorf("list dead letters: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetter, error) {
		var d DeadLetter
		err := scanDeadLetter(r, &d)
		return d, err
	})
	if err != nil || len(items) == 0 {
		return []DeadLetter{}, "", err
	}
	return items, nextCursor(len(items), limit, items[len(items)-1].ID), nil
}

// GetDeadLetter returns one dead letter with its whole body (Data); ErrNotFound if there is none.
func (s *Store) GetDeadLetter(ctx context.Context, id int64) (*DeadLetter, error) {
	var d DeadLetter
	err := scanDeadLetter(s.pool.QueryRow(ctx, `SELECT `+deadLetterCols+`, data FROM dead_letters WHERE id = $1`, id), &d, &d.Data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read dead letter %d: %w", id, err)
	}
	return &d, nil
}

// MarkDeadLetterReplayed records that a dead letter was published again as replayMsgID, and audits
// it. It reports false (and changes nothing) when the dead letter was already marked replayed:
// a concurrent replay won.
func (s *Store) MarkDeadLetterReplayed(ctx context.Context, id int64, by, replayMsgID string, at time.Time) (bool, error) {
	ok := false
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		var msgID string
		err := tx.QueryRow(ctx, `
UPDATE dead_letters SET replayed_at = $2, replayed_by = $3, replay_msg_id = $4
 WHERE id = $1 AND replayed_at IS NULL
RETURNING msg_id`, id, at, by, replayMsgID).Scan(&msgID)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("mark dead letter %d replayed: %w", id, err)
		}
		ok = true
		return s.AuditTx(ctx, tx, []AuditInsert{{At: at, Kind: AuditDeadLetter, Actor: by, Reason: DeadLetterReplayed,
			Detail: map[string]any{"dead_letter_id": id, "msg_id": msgID, "replay_msg_id": replayMsgID}}})
	})
	return ok, err
}

// UnreplayedDeadLetters counts the dead letters nobody replayed yet.
func (s *Store) UnreplayedDeadLetters(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count dead letters: %w", err)
	}
	return n, nil
}
