package probe

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/common/model"

	"github.com/responder-sre/responder/config"
)

// backupCheck measures the age of the newest backup, as one source tells its time; older than
// maxAge is a failure whose reason says both in human units ("newest backup is 1h12m old, max
// 1h"). The value is the age in seconds (also on that failure); NaN when the source failed.
type backupCheck struct {
	maxAge time.Duration
	src    backupSource
	now    func() time.Time
}

// backupSource tells when the newest backup was made.
type backupSource interface {
	// newest returns the newest backup's time and, when the source can name it, the backup
	// ("" otherwise).
	newest(ctx context.Context) (time.Time, string, error)
	instance() string
}

func newBackupCheck(c *config.BackupProbe) (*backupCheck, error) {
	b := &backupCheck{maxAge: c.MaxAge.D(), now: time.Now}
	switch c.Source() {
	case config.BackupGlob:
		b.src = globSource{pattern: c.Glob}
	case config.BackupURL:
		src, err := newURLSource(c)
		if err != nil {
			return nil, err
		}
		b.src = src
	case config.BackupSQL:
		cfg, inst, err := parseDSN(c.SQL.DSN)
		if err != nil {
			return nil, fmt.Errorf("backup: sql: %w", err)
		}
		b.src = &sqlSource{cfg: cfg, inst: inst, query: c.SQL.Query}
	default:
		return nil, errors.New("backup: want exactly one source: glob, url or sql")
	}
	return b, nil
}

func (b *backupCheck) instance() string { return b.src.instance() }

func (b *backupCheck) check(ctx context.Context) Measurement {
	start := time.Now()
	at, name, err := b.src.newest(ctx)
	d := time.Since(start)
	if err != nil {
		return Measurement{Value: nanValue, Err: err, Duration: d}
	}
	age := max(b.now().Sub(at), 0) // a clock ahead of ours: the backup is as fresh as can be
	m := Measurement{Value: age.Seconds(), Duration: d}
	if age > b.maxAge {
		what := "newest backup"
		if name != "" {
			what += " " + name
		}
		m.Err = fmt.Errorf("%s is %s old, max %s", what, humanAge(age), humanAge(b.maxAge))
	}
	return m
}

// humanAge writes d for a person: to the millisecond under a second ("250ms"), to the second
// under an hour ("12m5s"), to the minute under two days ("1h12m"), to the hour beyond ("3d4h").
func humanAge(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return "0s"
	case d < time.Second:
		d = d.Truncate(time.Millisecond)
	case d < time.Hour:
		d = d.Truncate(time.Second)
	case d < 48*time.Hour:
		d = d.Truncate(time.Minute)
	default:
		d = d.Truncate(time.Hour)
	}
	return model.Duration(d).String()
}

// globSource: the modification time of the newest file (or directory) matching a pattern.
type globSource struct{ pattern string }

func (g globSource) instance() string { return g.pattern }

func (g globSource) newest(ctx context.Context) (time.Time, string, error) {
	type out struct {
		at   time.Time
		name string
		err  error
	}
	done := make(chan out, 1)
	// A hung network file system can block for minutes: do not wait past the timeout.
	go func() {
		var o out
		o.at, o.name, o.err = g.scan(ctx)
		done <- o
	}()
	select {
	case <-ctx.Done():
		return time.Time{}, "", fmt.Errorf("glob %s: %w", g.pattern, ctx.Err())
	case o := <-done:
		return o.at, o.name, o.err
	}
}

func (g globSource) scan(ctx context.Context) (time.Time, string, error) {
	matches, err := filepath.Glob(g.pattern)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("glob %s: %w", g.pattern, err)
	}
	var newest time.Time
	var name string
	for _, m := range matches {
		if ctx.Err() != nil {
			return time.Time{}, "", ctx.Err()
		}
		fi, err := os.Stat(m)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the glob listed it (rotation)
		}
		if err != nil {
			return time.Time{}, "", fmt.Errorf("glob %s: %w", g.pattern, err)
		}
		if name == "" || fi.ModTime().After(newest) {
			newest, name = fi.ModTime(), m
		}
	}
	if name == "" {
		return time.Time{}, "", fmt.Errorf("no backup: nothing matches %s", g.pattern)
	}
	return newest, name, nil
}

// urlSource: the Last-Modified of an HTTP object, by HEAD, or by GET (body unread) when the server
// does not allow HEAD.
type urlSource struct {
	url     string
	inst    string
	headers map[string]config.Secret
	client  *http.Client
}

func newURLSource(c *config.BackupProbe) (*urlSource, error) {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return nil, errors.New("backup: invalid url")
	}
	tlsCfg, err := tlsConfig(c.TLS.CA, c.TLS.CAFile, c.TLS.ServerName, c.TLS.InsecureSkipVerify)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return &urlSource{url: c.URL, inst: urlInstance(u), headers: c.Headers, client: newHTTPClient(tlsCfg)}, nil
}

func (s *urlSource) instance() string { return s.inst }

func (s *urlSource) newest(ctx context.Context) (time.Time, string, error) {
	method := http.MethodHead
	resp, err := s.do(ctx, method)
	if err == nil && (resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotImplemented) {
		resp.Body.Close()
		method = http.MethodGet
		resp, err = s.do(ctx, method)
	}
	if err != nil {
		return time.Time{}, "", requestError(method, s.inst, err)
	}
	// Only the headers matter: closing unread ends the transfer (keep-alives are off).
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return time.Time{}, "", fmt.Errorf("%s %s: status %d", method, s.inst, resp.StatusCode)
	}
	lm := resp.Header.Get("Last-Modified")
	if lm == "" {
		return time.Time{}, "", fmt.Errorf("%s %s: no Last-Modified header", method, s.inst)
	}
	at, err := http.ParseTime(lm)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("%s %s: unparsable Last-Modified %q", method, s.inst, sanitize(lm))
	}
	return at, "", nil
}

func (s *urlSource) do(ctx context.Context, method string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.url, nil)
	if err != nil {
		return nil, errors.New("invalid request")
	}
	setHeaders(req, s.headers)
	return s.client.Do(req)
}

// sqlSource: a query's timestamp (by default pg_stat_archiver.last_archived_time), run in a
// read-only transaction on a fresh connection.
type sqlSource struct {
	cfg   *pgx.ConnConfig
	inst  string
	query string
}

func (s *sqlSource) instance() string { return s.inst }

func (s *sqlSource) newest(ctx context.Context) (time.Time, string, error) {
	conn, err := pgx.ConnectConfig(ctx, s.cfg.Copy())
	if err != nil {
		return time.Time{}, "", fmt.Errorf("postgres %s: %w", s.inst, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = conn.Close(cctx)
		cancel()
	}()
	var at *time.Time
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, s.query).Scan(&at)
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return time.Time{}, "", fmt.Errorf("postgres %s: the backup query returned no row", s.inst)
	case err != nil:
		return time.Time{}, "", fmt.Errorf("postgres %s: backup query: %w", s.inst, err)
	case at == nil:
		return time.Time{}, "", errors.New("no backup yet (the backup query returned NULL)")
	}
	return *at, "", nil
}
