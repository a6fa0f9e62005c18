package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadProbes(t *testing.T) {
	cfg := mustLoad(t, "conf.probes.yml")
	if len(cfg.Probes) != 8 {
		t.Fatalf("len(Probes) = %d, want 8", len(cfg.Probes))
	}
	byName := map[string]ProbeConfig{}
	for _, p := range cfg.Probes {
		byName[p.Name] = p
	}
	api := byName["api-health"]
	if api.Kind() != ProbeHTTP || api.Interval.D() != 10*time.Second || api.Timeout.D() != 2*time.Second ||
		api.HTTP.Method != "GET" || !cmp.Equal(api.HTTP.ExpectStatus, []int{200}) || api.Labels["severity"] != "critical" {
		t.Errorf("api-health = %+v, http %+v", api, api.HTTP)
	}
	disk := byName["data-disk"]
	if disk.Kind() != ProbeDisk || disk.Timeout.D() != DefaultProbeTimeout || disk.FailuresToFire != 1 ||
		disk.SuccessesToResolve != 1 || disk.FiringWhen != "value < 0.10" || disk.Disk.Path != "/var/lib/data" {
		t.Errorf("data-disk = %+v", disk)
	}
	tcp := byName["checkout-tcp"]
	if tcp.Interval.D() != DefaultProbeInterval || tcp.FailuresToFire != 3 || tcp.SuccessesToResolve != 2 {
		t.Errorf("checkout-tcp = %+v", tcp)
	}
	if got := byName["orders-db"].Postgres.DSN.Value(); got != "postgres://monitor:SECRET-probe-dsn@db.internal:5432/orders?sslmode=disable" {
		t.Errorf("orders-db dsn = %q (from dsn_file)", got)
	}
	if got := byName["cache"].Redis.Password.Value(); got != "SECRET-probe-redis" {
		t.Errorf("cache password = %q (from password_file)", got)
	}
	if k := byName["shop-cert"].Kind(); k != ProbeTLS {
		t.Errorf("shop-cert kind = %q", k)
	}
	if p := byName["error-rate"].Prometheus; p == nil || !strings.HasPrefix(p.Query, "sum(rate(") {
		t.Errorf("error-rate = %+v", p)
	}
	sp := byName["status-page"].HTTP
	if sp.Method != "HEAD" || !cmp.Equal(sp.ExpectStatus, []int{200, 204}) || sp.TLS.ServerName != "status.internal" ||
		sp.Headers["Authorization"].Value() != "Bearer SECRET-header" {
		t.Errorf("status-page = %+v", sp)
	}
	// Secrets never print, whatever the verb.
	out := fmt.Sprintf("%v %+v %#v", cfg.Probes, cfg.Probes, cfg.Probes)
	if strings.Contains(out, "SECRET-") {
		t.Errorf("a probe secret prints: %s", out)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate() after Load: %v", err)
	}
}

func TestProbeErrors(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"probes-bad", []string{
			`conf.probes-bad.yml:3: probes[0].http.url: want an http or https URL, got scheme "ftp"`,
			`conf.probes-bad.yml:3: probes[0].http.expect_status[0]: 99 is not an HTTP status`,
			`conf.probes-bad.yml:4: probes[1].name: probe "api" is already defined by probes[0]`,
			`conf.probes-bad.yml:5: probes[1].tcp.address: "no-port": want host:port`,
			`conf.probes-bad.yml:8: probes[2].disk: probe "two" has several kinds (tcp, disk); want exactly one`,
			`conf.probes-bad.yml:9: probes[3]: probe "none" needs one kind`,
			`conf.probes-bad.yml:11: probes[3].timeout: 2s is longer than interval 1s`,
			`conf.probes-bad.yml:14: probes[4].firing_when: unexpected token EOF`,
			`conf.probes-bad.yml:17: probes[5].firing_when: expected bool, but got float64`,
			`conf.probes-bad.yml:20: probes[6].failures_to_fire: must be at least 1, got -1`,
			`conf.probes-bad.yml:23: probes[7].labels.alertname: label "alertname" is set by the probe`,
			`conf.probes-bad.yml:23: probes[7].labels: "" is not a valid label name`,
			`conf.probes-bad.yml:24: probes[8].name: "bad name": want letters`,
			`conf.probes-bad.yml:25: probes[8].redis.password_file: set either probes[8].redis.password or probes[8].redis.password_file, not both`,
			`conf.probes-bad.yml:27: probes[9].postgres.dsn: set postgres.dsn or postgres.dsn_file`,
			`conf.probes-bad.yml:29: probes[10].http.method: "GE T" is not an HTTP method`,
			`conf.probes-bad.yml:29: probes[10].http.body_regexp: error parsing regexp`,
			`conf.probes-bad.yml:31: probes[11].prometheus.query: a prometheus probe needs a query`,
		}},
		{"probes-unknown", []string{`conf.probes-unknown.yml:5: unknown key "expected_status"`}},
		{"probes-badca", []string{
			`conf.probes-badca.yml:3: probes[0].tls.ca_file: holds no PEM certificate`,
			`conf.probes-badca.yml:5: probes[1].tls.ca_file: open `,
		}},
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

func TestProbeDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, yaml        string
		interval, timeout time.Duration
	}{
		{"defaults", "{name: a, tcp: {address: 'h:1'}}", 30 * time.Second, 5 * time.Second},
		{"short interval caps timeout", "{name: a, interval: 2s, tcp: {address: 'h:1'}}", 2 * time.Second, 2 * time.Second},
		{"explicit", "{name: a, interval: 1m, timeout: 10s, tcp: {address: 'h:1'}}", time.Minute, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte("probes:\n  - "+tc.yaml+"\n"), filepath.Join(t.TempDir(), "p.yml"), noEnv)
			if err != nil {
				t.Fatal(err)
			}
			p := cfg.Probes[0]
			if p.Interval.D() != tc.interval || p.Timeout.D() != tc.timeout {
				t.Errorf("interval, timeout = %s, %s; want %s, %s", p.Interval, p.Timeout, tc.interval, tc.timeout)
			}
		})
	}
}

// FuzzProbes: probe configs never panic, an accepted probe has exactly one kind and its
// firing_when compiles, and errors carry the file name.
func FuzzProbes(f *testing.F) {
	for _, s := range []string{
		"- {name: a, tcp: {address: 'h:1'}}",
		"- {name: d, disk: {path: /}, firing_when: value < 0.1}",
		"- {name: p, postgres: {dsn: 'postgres://u:pw@h/db'}}",
		"- {name: h, http: {url: 'http://a/', body_regexp: 'x+', headers: {X-A: b}}}",
		"- {name: t, tls: {address: 'a:443'}, failures_to_fire: 2}",
		"- {name: q, prometheus: {url: 'http://p', query: up}}",
		"- {name: b, backup: {max_age: 1h, glob: '/b/*.dump'}}",
		"- {name: u, backup: {max_age: 1d, url: 'https://b/x', headers: {X-A: b}}}",
		"- {name: s, backup: {max_age: 1h, sql: {dsn: 'postgres://u@h/db'}}}",
		"- {name: v, http: {url: 'http://v/', status_map: {200: ok, 503: failing}}}",
		"- {name: l, redis: {address: 'r:1', llen: celery, db: 2}}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, probes string) {
		cfg, err := Parse([]byte("probes:\n"+probes+"\n"), "fuzz.yml", noEnv, withReadFile(func(string) ([]byte, error) { return []byte("x"), nil }))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, p := range cfg.Probes {
			if p.Kind() == "" || p.Interval <= 0 || p.Timeout <= 0 || p.Timeout > p.Interval || p.FailuresToFire < 1 {
				t.Fatalf("accepted an invalid probe %+v", p)
			}
			if p.Backup != nil && (p.Backup.Source() == "" || p.Backup.MaxAge <= 0) {
				t.Fatalf("accepted an invalid backup probe %+v", p.Backup)
			}
			if p.FiringWhen != "" {
				if err := CompileFiringWhen(p.FiringWhen); err != nil {
					t.Fatalf("accepted firing_when %q: %v", p.FiringWhen, err)
				}
			}
		}
	})
}
