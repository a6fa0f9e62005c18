package ruletest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgserver"
)

// databases hands out a fresh, migrated database per test: a copy of a template database that
// was migrated once.
type databases struct {
	version string
	srv     *pgserver.Server // nil when the user gave a URL
	baseURL string           // the user's URL (admin connection for CREATE/DROP)
	mu      sync.Mutex
	admin   *pgx.Conn
	tmpl    string
	n       atomic.Int64
	prefix  string
}

// openDatabases starts a throwaway server when baseURL is empty, and migrates the template.
func openDatabases(ctx context.Context, baseURL, version string) (*databases, error) {
	d := &databases{version: version, baseURL: baseURL, prefix: fmt.Sprintf("responder_rulestest_%d", os.Getpid())}
	if baseURL == "" {
		srv, err := pgserver.Start(ctx, pgserver.Options{MaxConnections: 100})
		if err != nil {
			return nil, err
		}
		d.srv, d.baseURL = srv, srv.URL("postgres")
	}
	conn, err := pgx.Connect(ctx, d.baseURL)
	if err != nil {
		d.close(ctx)
		return nil, fmt.Errorf("connect to the database server: %w", err)
	}
	d.admin = conn
	d.tmpl = d.prefix + "_template"
	if err := d.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.tmpl}.Sanitize()); err != nil {
		d.close(ctx)
		return nil, err
	}
	if err := d.exec(ctx, "CREATE DATABASE "+pgx.Identifier{d.tmpl}.Sanitize()); err != nil {
		d.close(ctx)
		return nil, err
	}
	st, err := store.Open(ctx, d.url(d.tmpl), store.Options{MaxConns: 2, Version: version})
	if err != nil {
		d.close(ctx)
		return nil, fmt.Errorf("migrate the template database: %w", err)
	}
	st.Close()
	return d, nil
}

func (d *databases) exec(ctx context.Context, sql string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.admin.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// url is the URL of database name on the server of baseURL.
func (d *databases) url(name string) string {
	if u, err := url.Parse(d.baseURL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	// A keyword/value connection string: a later dbname wins.
	return strings.TrimSpace(d.baseURL) + " dbname=" + name
}

// open creates a fresh database from the template and opens a store on it; drop removes it.
func (d *databases) open(ctx context.Context) (*store.Store, func(), error) {
	name := fmt.Sprintf("%s_%d", d.prefix, d.n.Add(1))
	if err := d.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{d.tmpl}.Sanitize()); err != nil {
		return nil, nil, err
	}
	drop := func() {
		_ = d.exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
	st, err := store.Open(ctx, d.url(name), store.Options{MaxConns: 8, Version: d.version})
	if err != nil {
		drop()
		return nil, nil, err
	}
	return st, func() { st.Close(); drop() }, nil
}

// close drops the template and stops the throwaway server.
func (d *databases) close(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	if d.admin != nil {
		if d.tmpl != "" {
			_ = d.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.tmpl}.Sanitize()+" WITH (FORCE)")
		}
		_ = d.admin.Close(ctx)
	}
	if d.srv != nil {
		_ = d.srv.Close(ctx)
	}
}
