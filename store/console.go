package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
)

// IncidentAlert returns the latest alert received for an incident (its annotations, its source's
// link), or ErrNotFound.
func (s *Store) IncidentAlert(ctx context.Context, id int64) (alert.Alert, error) {
	var a alert.Alert
	var b []byte
	if err := s.pool.QueryRow(ctx, `SELECT alert FROM incidents WHERE id = $1`, id).Scan(&b); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return a, ErrNotFound
		}
		return a, err
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("incident %d: decode its alert: %w", id, err)
	}
	return a, nil
}
