package store_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
)

// TestIsTransientOnRealErrors provokes each error on a real server: what is about the database
// (read-only, permissions, missing relations, connections) is transient; what is about the data
// is permanent.
func TestIsTransientOnRealErrors(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	role := fmt.Sprintf("no_grants_%d", os.Getpid())
	if _, err := conn.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL CHECK (n >= 0));
INSERT INTO t VALUES (1, 1);
DROP ROLE IF EXISTS `+role+`; CREATE ROLE `+role+` NOLOGIN`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), `RESET ROLE; DROP ROLE IF EXISTS `+role) })
	otherDB, _ := url.Parse(dbURL)
	otherDB.Path = "/no_such_database"

	for _, tc := range []struct {
		name, code string
		want       bool
		provoke    func(ctx context.Context, c *pgx.Conn) error
	}{
		{"read-only transaction", "25006", true, func(ctx context.Context, c *pgx.Conn) error {
			if _, err := c.Exec(ctx, `SET default_transaction_read_only = on`); err != nil {
				return err
			}
			_, err := c.Exec(ctx, `INSERT INTO t VALUES (2, 2)`)
			_, _ = c.Exec(ctx, `SET default_transaction_read_only = off`)
			return err
		}},
		{"permission denied", "42501", true, func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, `SET ROLE `+role+`; SELECT * FROM t`)
			_, _ = c.Exec(ctx, `RESET ROLE`)
			return err
		}},
		{"missing relation", "42P01", true, func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, `SELECT * FROM no_such_table`)
			return err
		}},
		{"statement timeout", "57014", true, func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, `SET statement_timeout = '10ms'; SELECT pg_sleep(1)`)
			_, _ = c.Exec(ctx, `RESET statement_timeout`)
			return err
		}},
		{"missing database", "3D000", true, func(ctx context.Context, _ *pgx.Conn) error {
			_, err := pgx.Connect(ctx, otherDB.String())
			return err
		}},
		{"connection refused", "", true, func(ctx context.Context, _ *pgx.Conn) error {
			_, err := pgx.Connect(ctx, "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2")
			return err
		}},
		{"session terminated", "", true, func(ctx context.Context, _ *pgx.Conn) error {
			c, err := pgx.Connect(ctx, dbURL)
			if err != nil {
				return err
			}
			defer c.Close(ctx)
			if _, err := c.Exec(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`); err != nil {
				return err
			}
			_, err = c.Exec(ctx, `SELECT 1`)
			return err
		}},
		{"unique violation", "23505", false, func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, `INSERT INTO t VALUES (1, 1)`)
			return err
		}},
		{"not null violation", "23502", false, func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, `INSERT INTO t VALUES (3, NULL)`)
			return err
		}},
		{"check violation", "23514", false, func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, `INSERT INTO t VALUES (3, -1)`)
			return err
		}},
		{"invalid input", "22P02", false, func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, `SELECT 'x'::int`)
			return err
		}},
		{"bad jsonb", "22P02", false, func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, `SELECT '{not json'::jsonb`)
			return err
		}},
		{"numeric out of range", "22003", false, func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, `SELECT 2147483647::int + 1`)
			return err
		}},
		{"syntax error", "42601", false, func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, `SELEC 1`)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			err := tc.provoke(ctx, conn)
			if err == nil {
				t.Fatal("no error provoked")
			}
			if tc.code != "" {
				pe, ok := errors.AsType[*pgconn.PgError](err)
				if !ok {
					// A connect error wraps the server's answer.
					if !strings.Contains(err.Error(), "SQLSTATE "+tc.code) {
						t.Fatalf("provoked %v, want SQLSTATE %s", err, tc.code)
					}
				} else if pe.Code != tc.code {
					t.Fatalf("provoked SQLSTATE %s (%v), want %s", pe.Code, err, tc.code)
				}
			}
			wrapped := fmt.Errorf("process batch: %w", err)
			if got := store.IsTransient(wrapped); got != tc.want {
				t.Fatalf("IsTransient(%v) = %v, want %v", err, got, tc.want)
			}
		})
	}
}
