package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestLoadIssue19Probes: backup probes (glob, url, sql), an http status_map and redis llen load
// with their defaults, secrets read from files and never printed.
func TestLoadIssue19Probes(t *testing.T) {
	cfg := mustLoad(t, "conf.probes-issue19.yml")
	byName := map[string]ProbeConfig{}
	for _, p := range cfg.Probes {
		byName[p.Name] = p
	}
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		probe, source string
		maxAge        time.Duration
	}{
		{"wal-archive", BackupGlob, time.Hour},
		{"nightly-dump", BackupURL, 26 * time.Hour},
		{"archiver", BackupSQL, time.Hour},
		{"custom-query", BackupSQL, 30 * time.Minute},
	} {
		p := byName[tc.probe]
		if p.Kind() != ProbeBackup || p.Backup.Source() != tc.source || p.Backup.MaxAge.D() != tc.maxAge {
			t.Errorf("%s: kind %q source %q max_age %s; want backup, %s, %s", tc.probe, p.Kind(), p.Backup.Source(), p.Backup.MaxAge, tc.source, tc.maxAge)
		}
	}
	if got, want := byName["wal-archive"].Backup.Glob, filepath.Join(dir, "backups/wal/*"); got != want {
		t.Errorf("glob = %q, want %q (relative to the config file)", got, want)
	}
	dump := byName["nightly-dump"].Backup
	if dump.Headers["Authorization"].Value() != "Bearer SECRET-backup-token" || dump.TLS.ServerName != "backups.internal" {
		t.Errorf("nightly-dump = %+v", dump)
	}
	arch := byName["archiver"].Backup.SQL
	if arch.DSN.Value() != "postgres://monitor:SECRET-probe-dsn@db.internal:5432/orders?sslmode=disable" || arch.Query != DefaultBackupQuery {
		t.Errorf("archiver sql: query %q, dsn from dsn_file %v", arch.Query, arch.DSN.Value() != "")
	}
	if q := byName["custom-query"].Backup.SQL.Query; !strings.HasPrefix(q, "SELECT max(finished_at)") {
		t.Errorf("custom-query query = %q", q)
	}
	vault := byName["vault"].HTTP
	want := map[int]string{200: "ok", 429: "ok", 472: "ok", 473: "ok", 474: "failing", 501: "failing", 503: "failing"}
	if !cmp.Equal(vault.StatusMap, want) || len(vault.ExpectStatus) != 0 || vault.Method != "GET" {
		t.Errorf("vault: status_map %v expect_status %v method %q; want the map, no expect_status default", vault.StatusMap, vault.ExpectStatus, vault.Method)
	}
	q := byName["celery-queue"].Redis
	if q.LLEN != "celery" || q.DB != 1 || q.Password.Value() != "SECRET-probe-redis" {
		t.Errorf("celery-queue = %+v", q)
	}
	out := fmt.Sprintf("%v %+v %#v", cfg.Probes, cfg.Probes, cfg.Probes)
	if strings.Contains(out, "SECRET-backup") || strings.Contains(out, "SECRET-probe") {
		t.Errorf("a probe secret prints: %s", out)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate() after Load: %v", err)
	}
}

func TestIssue19ProbeErrors(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"probes-issue19-bad", []string{
			`conf.probes-issue19-bad.yml:3: probes[0].backup.max_age: a backup probe needs max_age`,
			`conf.probes-issue19-bad.yml:5: probes[1].backup: a backup probe needs one source: glob, url or sql`,
			`conf.probes-issue19-bad.yml:7: probes[2].backup.url: a backup probe has several sources (glob, url); want exactly one`,
			`conf.probes-issue19-bad.yml:9: probes[3].backup.glob: "/backups/[a": syntax error in pattern`,
			`conf.probes-issue19-bad.yml:11: probes[4].backup.sql.dsn: set sql.dsn or sql.dsn_file`,
			`conf.probes-issue19-bad.yml:13: probes[5].backup.url: want an http or https URL, got scheme "ftp"`,
			`conf.probes-issue19-bad.yml:15: probes[6].backup: headers and tls apply to a url source only`,
			`conf.probes-issue19-bad.yml:17: probes[7].http.expect_status: set expect_status or status_map, not both`,
			`conf.probes-issue19-bad.yml:24: probes[8].http.status_map.99: 99 is not an HTTP status`,
			`conf.probes-issue19-bad.yml:23: probes[8].http.status_map.503: "sealed" is not a state: want ok or failing`,
			`conf.probes-issue19-bad.yml:26: probes[9].http.status_map: no status maps to ok`,
			`conf.probes-issue19-bad.yml:27: probes[9].labels.http_status: label "http_status" is set by an http probe with a status_map`,
			`conf.probes-issue19-bad.yml:29: probes[10].redis.db: must not be negative, got -1`,
			`conf.probes-issue19-bad.yml:31: probes[11].backup.sql.dsn: invalid connection string`,
		}},
		{"probes-issue19-badkey", []string{`conf.probes-issue19-badkey.yml:5: `, `2xx`}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := load(t, "conf."+tc.file+".yml")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks\n  %s\nin\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "SECRET-") {
				t.Errorf("error quotes a secret: %v", err)
			}
		})
	}
}
