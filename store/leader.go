package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrStaleToken is returned by CheckFence when the fencing token is no longer the lease's current,
// live token: another holder took over, or the lease expired. The side effect must not be recorded.
var ErrStaleToken = errors.New("stale leader fencing token")

// Lease is a leader lease row: who holds the singleton work called Name, until when, and the
// fencing token side effects taken under it must carry.
type Lease struct {
	Name      string
	Holder    string
	Token     int64
	ExpiresAt time.Time
}

func checkLeaseArgs(name, holder string, ttl time.Duration) error {
	switch {
	case name == "":
		return errors.New("lease name is empty")
	case holder == "":
		return errors.New("lease holder is empty")
	case ttl <= 0:
		return fmt.Errorf("lease ttl %s is not positive", ttl)
	}
	return nil
}

// AcquireLease takes lease name for holder until now+ttl when it is free, expired, or already
// holder's. A change of holder increments the fencing token (it starts at 1 and is never reused);
// holder re-acquiring its own lease keeps the token. Concurrent callers are serialised on the row:
// exactly one wins a free or expired lease.
//
// On success it returns the lease and true. On refusal it returns false and the live lease of the
// current holder (zero when that holder's row is not yet visible, e.g. it was created by a racing
// caller). now is the caller's clock: every replica must keep it in sync to well within ttl.
// holder must identify one process incarnation (e.g. host, pid and a random suffix): two processes
// sharing a holder would share the lease.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (Lease, bool, error) {
	if err := checkLeaseArgs(name, holder, ttl); err != nil {
		return Lease{}, false, err
	}
	var l Lease
	var won bool
	err := s.pool.QueryRow(ctx, `
WITH won AS (
    INSERT INTO leader_leases AS l (name, holder, token, expires_at, acquired_at, renewed_at)
    VALUES ($1, $2, 1, $4, $3, $3)
    ON CONFLICT (name) DO UPDATE
       SET holder      = EXCLUDED.holder,
           token       = CASE WHEN l.holder = EXCLUDED.holder THEN l.token ELSE l.token + 1 END,
           expires_at  = EXCLUDED.expires_at,
           acquired_at = CASE WHEN l.holder = EXCLUDED.holder THEN l.acquired_at ELSE EXCLUDED.acquired_at END,
           renewed_at  = EXCLUDED.renewed_at
     WHERE l.expires_at < $3 OR l.holder = EXCLUDED.holder
    RETURNING name, holder, token, expires_at
)
SELECT name, holder, token, expires_at, true FROM won
UNION ALL
SELECT name, holder, token, expires_at, false FROM leader_leases
 WHERE name = $1 AND expires_at >= $3 AND NOT EXISTS (SELECT FROM won)`,
		name, holder, now, now.Add(ttl)).Scan(&l.Name, &l.Holder, &l.Token, &l.ExpiresAt, &won)
	if errors.Is(err, pgx.ErrNoRows) {
		return Lease{}, false, nil
	}
	if err != nil {
		return Lease{}, false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	return l, won, nil
}

// RenewLease extends holder's lease to now+ttl. It returns false when holder no longer holds it
// with token at now (another holder took over, it was released, or it expired before now): the
// caller has lost leadership and must stop its singleton work.
func (s *Store) RenewLease(ctx context.Context, name, holder string, token int64, now time.Time, ttl time.Duration) (bool, error) {
	if err := checkLeaseArgs(name, holder, ttl); err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `
UPDATE leader_leases SET expires_at = $5, renewed_at = $4
 WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at >= $4`,
		name, holder, token, now, now.Add(ttl))
	if err != nil {
		return false, fmt.Errorf("renew lease %s: %w", name, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseLease gives up holder's lease at once (expires_at becomes -infinity) so another replica
// can take it without waiting for the TTL; the token stays, so the next holder gets token+1.
// Releasing a lease holder no longer holds with token is a no-op.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string, token int64) error {
	_, err := s.pool.Exec(ctx, `
UPDATE leader_leases SET expires_at = '-infinity'
 WHERE name = $1 AND holder = $2 AND token = $3`, name, holder, token)
	if err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// CheckFence fences a side effect taken under leadership. Call it inside the transaction that
// records the effect, before recording it: it share-locks the lease row (so no takeover can commit
// until the transaction ends) and returns an error wrapping ErrStaleToken unless token is the
// lease's current token and the lease is live at now. On ErrStaleToken roll back: the caller is no
// longer the leader. Keep the transaction short: the holder's own renewal waits for it.
//
// An effect outside the database (a message, an HTTP call) is only as fenced as the row that
// records it: check and record in one transaction, and make the receiver idempotent.
func (s *Store) CheckFence(ctx context.Context, tx pgx.Tx, name string, token int64, now time.Time) error {
	var current int64
	var live bool
	err := tx.QueryRow(ctx, `SELECT token, expires_at >= $2 FROM leader_leases WHERE name = $1 FOR SHARE`,
		name, now).Scan(&current, &live)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: lease %s has never been held", ErrStaleToken, name)
	case err != nil:
		return fmt.Errorf("check fence %s: %w", name, err)
	case current != token:
		return fmt.Errorf("%w: lease %s token %d, current %d", ErrStaleToken, name, token, current)
	case !live:
		return fmt.Errorf("%w: lease %s token %d expired or released", ErrStaleToken, name, token)
	}
	return nil
}
