package store

import (
	"context"
	"fmt"
)

// AcceptFence records that an alert produced under the lease token of source name is being
// accepted, and reports false when a higher token was already accepted for name: the producer was
// deposed, and its late result must be dropped (a fencing token enforced where the results land).
// Tokens only grow, so results backlogged from a leader are accepted until its successor's first
// result arrives.
func (s *Store) AcceptFence(ctx context.Context, name string, token int64) (bool, error) {
	var highest int64
	err := s.pool.QueryRow(ctx, `
INSERT INTO fences (name, token) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET token = greatest(fences.token, EXCLUDED.token)
RETURNING token`, name, token).Scan(&highest)
	if err != nil {
		return false, fmt.Errorf("accept fence %s: %w", name, err)
	}
	return highest == token, nil
}
