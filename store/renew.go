package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/responder-sre/responder/vocab"
)

// RenewOwnedLeases extends the leases of the running actions among ids that owner holds, and
// returns the ids it extended: an id missing from the answer is no longer owner's to run (another
// replica expired its lease, or it ran past its timeout and was recorded unknown).
func (s *Store) RenewOwnedLeases(ctx context.Context, owner string, ids []int64, until time.Time) ([]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `
UPDATE actions SET lease_until = $3
 WHERE id = ANY($1) AND owner = $2 AND state = `+lit(vocab.StateRunning)+`
RETURNING id`, ids, owner, until)
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	renewed, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	return renewed, nil
}
