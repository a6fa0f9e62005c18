package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SpendBudgetTx spends one unit of budget for key (the action's scope, or "" for a global budget)
// if fewer than limit were spent in the window ending at now, and reports whether it did. Spending
// is serialised per (budget, key) by a transaction-level advisory lock, so replicas and executors
// never overspend; a caller that refuses the action later rolls the spend back with its
// transaction (or savepoint).
func (s *Store) SpendBudgetTx(ctx context.Context, tx pgx.Tx, budget, key string, limit int, window time.Duration, now time.Time, actionID int64) (bool, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))`, budget, key); err != nil {
		return false, fmt.Errorf("budget lock: %w", err)
	}
	used, err := s.BudgetUsedTx(ctx, tx, budget, key, window, now)
	if err != nil {
		return false, err
	}
	if used >= limit {
		return false, nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO budget_spend (budget, key, action_id, at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
		budget, key, actionID, now); err != nil {
		return false, fmt.Errorf("spend budget %s: %w", budget, err)
	}
	return true, nil
}

// BudgetUsedTx counts what budget spent for key in the window ending at now.
func (s *Store) BudgetUsedTx(ctx context.Context, tx pgx.Tx, budget, key string, window time.Duration, now time.Time) (int, error) {
	var used int
	err := tx.QueryRow(ctx, `SELECT count(*) FROM budget_spend WHERE budget = $1 AND key = $2 AND at > $3 AND at <= $4`,
		budget, key, now.Add(-window), now).Scan(&used)
	if err != nil {
		return 0, fmt.Errorf("budget %s: %w", budget, err)
	}
	return used, nil
}

// BudgetKey is one counter of a budget: the key is the action's scope, or "" for a global budget.
type BudgetKey struct{ Budget, Key string }

// BudgetRead asks what a budget spent for a key in its window.
type BudgetRead struct {
	BudgetKey
	Window time.Duration
}

// BudgetsUsedTx counts, in one statement, what each budget spent for each key in the window ending
// at now (BudgetUsedTx for many keys).
func (s *Store) BudgetsUsedTx(ctx context.Context, tx pgx.Tx, reads []BudgetRead, now time.Time) (map[BudgetKey]int, error) {
	if len(reads) == 0 {
		return nil, nil
	}
	budgets, keys, since := make([]string, len(reads)), make([]string, len(reads)), make([]time.Time, len(reads))
	for i, r := range reads {
		budgets[i], keys[i], since[i] = r.Budget, r.Key, now.Add(-r.Window)
	}
	rows, err := tx.Query(ctx, `
SELECT u.budget, u.key, (SELECT count(*) FROM budget_spend s WHERE s.budget = u.budget AND s.key = u.key AND s.at > u.since AND s.at <= $4)
  FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(budget, key, since)`, budgets, keys, since, now)
	if err != nil {
		return nil, fmt.Errorf("budgets: %w", err)
	}
	out := make(map[BudgetKey]int, len(reads))
	var k BudgetKey
	var n int
	_, err = pgx.ForEachRow(rows, []any{&k.Budget, &k.Key, &n}, func() error { out[k] = n; return nil })
	if err != nil {
		return nil, fmt.Errorf("budgets: %w", err)
	}
	return out, nil
}

// BudgetMostUsed returns the largest amount budget spent for any one key in the window ending at
// now (what is left of the tightest key is max minus it).
func (s *Store) BudgetMostUsed(ctx context.Context, budget string, window time.Duration, now time.Time) (int, error) {
	var used int
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(n), 0) FROM (
    SELECT count(*) AS n FROM budget_spend WHERE budget = $1 AND at > $2 AND at <= $3 GROUP BY key) x`,
		budget, now.Add(-window), now).Scan(&used)
	return used, err
}
