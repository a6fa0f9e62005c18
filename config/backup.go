package config

import (
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Sources of a backup probe, as written under backup: (exactly one).
const (
	BackupGlob = "glob"
	BackupURL  = "url"
	BackupSQL  = "sql"
)

// BackupProbe checks that the newest backup is at most MaxAge old (a recovery point objective).
// The backup's time comes from exactly one source: the modification time of the newest file
// matching Glob, the Last-Modified header of the HTTP object at URL (HEAD, or GET where HEAD is
// not allowed), or the timestamp SQL's query returns (by default when PostgreSQL last archived a
// WAL segment). Its value is the backup's age in seconds; older than MaxAge is a failure.
type BackupProbe struct {
	// MaxAge is how old the newest backup may be; required.
	MaxAge Duration `yaml:"max_age"`
	// Glob matches the backup files (filepath.Match syntax, no "**"); relative to the config file.
	Glob string `yaml:"glob"`
	// URL is an HTTP object whose Last-Modified is the backup's time; Headers and TLS as an http
	// probe's (they apply to URL only).
	URL     string            `yaml:"url"`
	Headers map[string]Secret `yaml:"headers"` // values never print (they may hold credentials)
	TLS     ProbeTLSConfig    `yaml:"tls"`
	// SQL runs a query on PostgreSQL that returns the backup's time.
	SQL *BackupSQLSource `yaml:"sql,omitempty"`
}

// BackupSQLSource is a backup probe's sql source: a connection like a postgres probe's and a
// query returning one timestamptz (NULL: no backup yet). It runs in a read-only transaction.
type BackupSQLSource struct {
	DSN     Secret `yaml:"dsn"`
	DSNFile string `yaml:"dsn_file"`
	Query   string `yaml:"query"` // default DefaultBackupQuery
}

// Source returns the probe's one source (BackupGlob, BackupURL or BackupSQL), or "" when none or
// several are set.
func (b *BackupProbe) Source() string {
	s := b.sources()
	if len(s) != 1 {
		return ""
	}
	return s[0]
}

func (b *BackupProbe) sources() []string {
	var s []string
	if b.Glob != "" {
		s = append(s, BackupGlob)
	}
	if b.URL != "" {
		s = append(s, BackupURL)
	}
	if b.SQL != nil {
		s = append(s, BackupSQL)
	}
	return s
}

// validateBackupProbe checks the backup probe at key ("probes[0].backup"); a glob is resolved
// against the config file's directory.
func (c *Config) validateBackupProbe(ch *checker, key string, b *BackupProbe) {
	if b.MaxAge <= 0 {
		ch.errorf(key+".max_age", "a backup probe needs max_age (how old the newest backup may be)")
	}
	if b.URL == "" && (len(b.Headers) > 0 || b.TLS.CAFile != "" || b.TLS.ServerName != "" || b.TLS.InsecureSkipVerify) {
		ch.errorf(key, "headers and tls apply to a url source only")
	}
	switch src := b.sources(); len(src) {
	case 0:
		ch.errorf(key, "a backup probe needs one source: glob, url or sql")
		return
	case 1:
	default:
		ch.errorf(key+"."+src[1], "a backup probe has several sources (%s); want exactly one", strings.Join(src, ", "))
		return
	}
	switch {
	case b.Glob != "":
		if _, err := filepath.Match(b.Glob, ""); err != nil {
			ch.wrapf(key+".glob", err, "%q: %v", b.Glob, err)
			return
		}
		b.Glob = absPath(c.Dir, b.Glob)
	case b.URL != "":
		checkProbeURL(ch, key+".url", b.URL)
		checkHeaders(ch, key+".headers", b.Headers)
		if b.TLS.CAFile != "" {
			checkCA(ch, key+".tls.ca_file", b.TLS.CA)
		}
	case b.SQL != nil:
		if b.SQL.DSN == "" {
			ch.errorf(key+".sql.dsn", "set sql.dsn or sql.dsn_file")
		} else if _, err := pgconn.ParseConfig(b.SQL.DSN.Value()); err != nil {
			// pgconn may echo the connection string, password included: never show it.
			ch.errorf(key+".sql.dsn", "invalid connection string")
		}
	}
}

// resolveBackupSecrets reads a backup probe's dsn_file and tls.ca_file; key is "probes[i].backup".
func resolveBackupSecrets(cfg *Config, c *checker, o options, key string, b *BackupProbe) {
	if b.SQL != nil {
		readOne(cfg, c, o, key+".sql.dsn", &b.SQL.DSN, b.SQL.DSNFile)
	}
	if b.TLS.CAFile != "" {
		b.TLS.CAFile = absPath(cfg.Dir, b.TLS.CAFile)
		if data, ok := readFile(cfg, c, o, key+".tls.ca_file", b.TLS.CAFile); ok {
			b.TLS.CA = data
		}
	}
}
