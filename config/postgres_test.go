package config

import (
	"strings"
	"testing"
	"time"
)

func TestLoadPostgres(t *testing.T) {
	cfg := mustLoad(t, "conf.postgres.yml")
	cs := cfg.Handlers.Postgres.Clusters
	if len(cs) != 3 {
		t.Fatalf("clusters = %v", cs)
	}
	b := cs["billing"]
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"billing is patroni", b.IsPatroni(), true},
		{"billing patroni", strings.Join(b.Patroni, ","), "http://10.0.0.11:8008,http://10.0.0.12:8008"},
		{"billing max_lag", b.MaxLag, Bytes(1_000_000)},
		{"billing password from file", b.PatroniPassword.Value(), "SECRET-patroni-pw"},
		{"billing rto default", b.RTO.D(), 30 * time.Minute},
		{"defaults max_lag", cs["defaults"].MaxLag, DefaultPostgresMaxLag},
		{"legacy is patroni", cs["legacy"].IsPatroni(), false},
		{"legacy primary dsn from file", cs["legacy"].Primary.DSN.Value(), "postgres://responder:SECRET-pg-primary@db-1.internal:5432/postgres?sslmode=disable"},
		{"legacy primary name", cs["legacy"].Primary.Name, "primary"},
		{"legacy standby-1 dsn from file", cs["legacy"].Standbys[0].DSN.Value(), "postgres://responder:SECRET-pg-standby@db-2.internal:5432/postgres?sslmode=disable"},
		{"legacy standby-2 name", cs["legacy"].Standbys[1].Name, "standby-2"},
		{"legacy detect", cs["legacy"].Detect, PostgresDetect{Failures: 3, MinPeriod: Duration(30 * time.Second)}},
		{"legacy rto", cs["legacy"].RTO.D(), 30 * time.Minute},
		{"legacy fence method default", cs["legacy"].Fence.Method, "POST"},
		{"legacy fence timeout default", cs["legacy"].Fence.Timeout.D(), 10 * time.Second},
		{"legacy fence header", cs["legacy"].Fence.Headers["Authorization"].Value(), "Bearer SECRET-fence"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("got %v, want %v", c.got, c.want)
			}
		})
	}
}

func TestLoadPostgresErrors(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"conf.postgres-bad.yml", []string{
			`conf.postgres-bad.yml:6: handlers.postgres.clusters.both.primary: cluster "both" sets both patroni and primary`,
			`conf.postgres-bad.yml:8: handlers.postgres.clusters.neither: cluster "neither" needs patroni`,
			`conf.postgres-bad.yml:10: handlers.postgres.clusters.badurl.patroni[0]: want an http or https URL, got scheme "ftp"`,
			`conf.postgres-bad.yml:10: handlers.postgres.clusters.badurl.patroni[1]: credentials in the URL`,
			`conf.postgres-bad.yml:10: handlers.postgres.clusters.badurl.patroni[3]: "http://h:8008" is listed twice`,
			`conf.postgres-bad.yml:11: handlers.postgres.clusters.badurl.detect: detect applies to postgres.promote`,
			`conf.postgres-bad.yml:13: handlers.postgres.clusters.stream.primary.dsn: invalid connection string`,
			`conf.postgres-bad.yml:14: handlers.postgres.clusters.stream.max_lag: max_lag applies to Patroni clusters`,
			`conf.postgres-bad.yml:16: handlers.postgres.clusters.stream.standbys[0].name: a standby needs a name`,
			`conf.postgres-bad.yml:17: handlers.postgres.clusters.stream.standbys[1].dsn: set dsn or dsn_file`,
			`conf.postgres-bad.yml:19: handlers.postgres.clusters.stream.standbys[3].name: standby "s2" is already defined by standbys[2]`,
			`conf.postgres-bad.yml:20: handlers.postgres.clusters.stream.detect.failures: 1 failure cannot span min_period 10s`,
			`conf.postgres-bad.yml:21: handlers.postgres.clusters.stream.fence.url: want an http or https URL, got scheme "ftp"`,
			`conf.postgres-bad.yml:21: handlers.postgres.clusters.stream.fence.method: "TRACE"`,
			`conf.postgres-bad.yml:23: handlers.postgres.clusters.Bad_Name: cluster name "Bad_Name"`,
			`conf.postgres-bad.yml:25: handlers.postgres.clusters.nostandby.standbys: a streaming cluster needs at least one standby`,
			`conf.postgres-bad.yml:26: handlers.postgres.clusters.nostandby.fence.url: fence settings without a url`,
		}},
		{"conf.postgres-bad-key.yml", []string{`conf.postgres-bad-key.yml:7:`, `"min_perod"`}},
		{"conf.postgres-bad-file.yml", []string{
			`conf.postgres-bad-file.yml:5: handlers.postgres.clusters.legacy.primary.dsn_file: set either handlers.postgres.clusters.legacy.primary.dsn or`,
			`conf.postgres-bad-file.yml:6: handlers.postgres.clusters.legacy.standbys[0].dsn_file:`,
			`no-such-file`,
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := load(t, tc.file)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
				}
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error prints a secret:\n%v", err)
			}
		})
	}
}

func TestPostgresSecretsNeverPrint(t *testing.T) {
	cfg := mustLoad(t, "conf.postgres.yml")
	for _, s := range []string{
		strings.Join([]string{
			cfg.Handlers.Postgres.Clusters["legacy"].Primary.DSN.String(),
			cfg.Handlers.Postgres.Clusters["billing"].PatroniPassword.String(),
		}, " "),
	} {
		if strings.Contains(s, "SECRET") {
			t.Errorf("printed %q", s)
		}
	}
}
