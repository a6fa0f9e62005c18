package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// noEnv keeps the process environment (a CI runner may set RESPONDER_DATABASE_URL) out of tests.
var noEnv = WithGetenv(func(string) string { return "" })

func load(t *testing.T, name string, opts ...Option) (*Config, error) {
	t.Helper()
	return Load(filepath.Join("testdata", name), append([]Option{noEnv}, opts...)...)
}

func mustLoad(t *testing.T, name string, opts ...Option) *Config {
	t.Helper()
	cfg, err := load(t, name, opts...)
	if err != nil {
		t.Fatalf("Load(%s): %v", name, err)
	}
	return cfg
}

func TestLoadMinimal(t *testing.T) {
	cfg := mustLoad(t, "conf.minimal.yml")

	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.File = filepath.Join("testdata", "conf.minimal.yml")
	want.Dir = dir
	want.Database.URL = "postgres://postgres@127.0.0.1:5433/responder?sslmode=disable"
	want.Webhook.BearerToken = Secrets{"change-me"}
	want.API.Token = "change-me-too"
	want.RuleFiles = []string{"rules/*.yml"}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("minimal config (-want +got):\n%s", diff)
	}
	if got := cfg.WebhookTokens(); !cmp.Equal(got, []string{"change-me"}) {
		t.Errorf("WebhookTokens() = %q", got)
	}
	if cfg.APIToken() != "change-me-too" || cfg.APIReadToken() != "" {
		t.Errorf("APIToken() = %q, APIReadToken() = %q", cfg.APIToken(), cfg.APIReadToken())
	}
	if cfg.DatabaseURL() != "postgres://postgres@127.0.0.1:5433/responder?sslmode=disable" {
		t.Errorf("DatabaseURL() = %q", cfg.DatabaseURL())
	}
}

func TestDefaults(t *testing.T) {
	for _, name := range []string{"conf.empty.yml", "conf.minimal.yml"} {
		t.Run(name, func(t *testing.T) {
			cfg := mustLoad(t, name)
			checks := []struct {
				key       string
				got, want any
			}{
				{"webhook.max_body_bytes", cfg.Webhook.MaxBodyBytes, Bytes(8 << 20)},
				{"approvals.ttl", cfg.Approvals.TTL.D(), 15 * time.Minute},
				{"safety.max_alert_age", cfg.Safety.MaxAlertAge.D(), 15 * time.Minute},
				{"safety.retention", cfg.Safety.Retention.D(), 90 * 24 * time.Hour},
				{"safety.max_concurrent_actions", cfg.Safety.MaxConcurrentActions, 8},
				{"safety.action_timeout", cfg.Safety.ActionTimeout.D(), 5 * time.Minute},
				{"handlers.http.timeout", cfg.Handlers.HTTP.Timeout.D(), 10 * time.Second},
				{"handlers.http.retries", *cfg.Handlers.HTTP.Retries, 2},
				{"database.max_conns", cfg.Database.MaxConns, int32(10)},
				{"bus.stream", cfg.Bus.Stream, "RESPONDER_ALERTS"},
				{"bus.max_bytes", cfg.Bus.MaxBytes, Bytes(1 << 30)},
				{"bus.max_msgs", cfg.Bus.MaxMsgs, int64(1_000_000)},
				{"bus.max_age", cfg.Bus.MaxAge.D(), time.Duration(0)},
				{"bus.duplicate_window", cfg.Bus.DuplicateWindow.D(), 20 * time.Minute},
				{"bus.replicas", cfg.Bus.Replicas, 1},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %v, want %v", c.key, c.got, c.want)
				}
			}
		})
	}
	d := Default()
	if len(d.RuleFiles) != 0 || len(d.WebhookTokens()) != 0 || d.APIToken() != "" || d.File != "" {
		t.Errorf("Default() has rule files, tokens or a file: %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
	// Default returns a fresh value each time: changing one must not change the next.
	*d.Handlers.HTTP.Retries = 7
	if got := *Default().Handlers.HTTP.Retries; got != 2 {
		t.Errorf("Default() shares Retries: got %d", got)
	}
}

func TestLoadFull(t *testing.T) {
	cfg := mustLoad(t, "conf.full.yml")
	checks := []struct {
		key       string
		got, want any
	}{
		{"nats.url", cfg.NATS.URL, "nats://127.0.0.1:4222"},
		{"nats.user", cfg.NATS.User, "responder"},
		{"nats.password_file", cfg.NATS.Password.Value(), "SECRET-nats-password"},
		{"nats.tls.ca_file", cfg.FilePath(cfg.NATS.TLS.CAFile), filepath.Join(cfg.Dir, "secrets/nats-ca.pem")},
		{"nats.tls.cert_file", cfg.NATS.TLS.CertFile, "secrets/nats-client.pem"},
		{"nats.tls.key_file", cfg.NATS.TLS.KeyFile, "secrets/nats-client.key"},
		{"nats.tls.server_name", cfg.NATS.TLS.ServerName, "nats.internal"},
		{"bus.signing_key_file", cfg.Bus.SigningKey.Value(), "0123456789abcdef0123456789abcdef-SECRET-signing"},
		{"database.max_conns", cfg.Database.MaxConns, int32(20)},
		{"webhook.max_body_bytes", cfg.Webhook.MaxBodyBytes, Bytes(512_000)},
		{"handlers.http.timeout", cfg.Handlers.HTTP.Timeout.D(), 1500 * time.Millisecond},
		{"handlers.http.retries", *cfg.Handlers.HTTP.Retries, 0},
		{"approvals.ttl", cfg.Approvals.TTL.D(), time.Hour},
		{"safety.paused", cfg.Safety.Paused, true},
		{"safety.dry_run", cfg.Safety.DryRun, true},
		{"safety.retention", cfg.Safety.Retention.D(), 14 * 24 * time.Hour},
		{"safety.max_concurrent_actions", cfg.Safety.MaxConcurrentActions, 4},
		{"safety.action_timeout", cfg.Safety.ActionTimeout.D(), 90 * time.Second},
		{"bus.stream", cfg.Bus.Stream, "ALERTS"},
		{"bus.max_bytes", cfg.Bus.MaxBytes, Bytes(2 << 30)},
		{"bus.max_msgs", cfg.Bus.MaxMsgs, int64(5000)},
		{"bus.max_age", cfg.Bus.MaxAge.D(), 72 * time.Hour},
		{"bus.duplicate_window", cfg.Bus.DuplicateWindow.D(), time.Hour},
		{"bus.replicas", cfg.Bus.Replicas, 3},
		{"api.read_token", cfg.APIReadToken(), "SECRET-api-read"},
		{"len(probes)", len(cfg.Probes), 1},
		{"len(safety.budgets)", len(cfg.Safety.Budgets), 1},
		{"slack.channel", cfg.Slack.Channel, "#incidents"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.key, c.got, c.want)
		}
	}
	if want := []string{"airflow.internal:8080", "status.example.com", "10.0.0.1", "[::1]:9999"}; !cmp.Equal(cfg.Handlers.HTTP.AllowedHosts, want) {
		t.Errorf("allowed_hosts = %q, want %q", cfg.Handlers.HTTP.AllowedHosts, want)
	}
	if want := []string{"SECRET-webhook-old", "SECRET-webhook-new"}; !cmp.Equal(cfg.WebhookTokens(), want) {
		t.Errorf("WebhookTokens() = %q, want %q", cfg.WebhookTokens(), want)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string // substrings of the error, each "file:line: message"
	}{
		{"bad-unknown-key", []string{`conf.bad-unknown-key.yml:5: unknown key "bearer_tokn" in webhook`}},
		{"bad-unknown-top", []string{`conf.bad-unknown-top.yml:3: unknown key "rules_files"`}},
		{"bad-duration", []string{`conf.bad-duration.yml:2: approvals.ttl: invalid duration "15 minutes"`}},
		{"bad-duration-unitless", []string{`conf.bad-duration-unitless.yml:2: safety.max_alert_age: invalid duration "900"`}},
		{"bad-duration-negative", []string{`conf.bad-duration-negative.yml:3: handlers.http.timeout: negative duration "-5s"`}},
		{"bad-bytes", []string{`conf.bad-bytes.yml:2: webhook.max_body_bytes: invalid size "8 megabytes"`}},
		{"bad-bytes-float", []string{`conf.bad-bytes-float.yml:2: bus.max_bytes: invalid size "1.5GiB"`}},
		{"bad-both-secret", []string{`conf.bad-both-secret.yml:3: api.token_file: set either api.token or api.token_file, not both`}},
		{"bad-both-webhook", []string{`conf.bad-both-webhook.yml:3: webhook.bearer_token_file: set either`}},
		{"bad-three-tokens", []string{`conf.bad-three-tokens.yml:3: webhook.bearer_token: 3 tokens; at most 2`}},
		{"bad-three-tokens-file", []string{`conf.bad-three-tokens-file.yml:2: webhook.bearer_token_file: 3 tokens; at most 2`}},
		{"bad-dup-window", []string{`conf.bad-dup-window.yml:2: bus.duplicate_window: must be at least 10m, got 1m`}},
		{"bad-dup-window-over-age", []string{`conf.bad-dup-window-over-age.yml:3: bus.duplicate_window: 20m is longer than bus.max_age 15m`}},
		{"bad-concurrency", []string{`conf.bad-concurrency.yml:2: safety.max_concurrent_actions: must be at least 1, got 0`}},
		{"bad-same-read-token", []string{`conf.bad-same-read-token.yml:3: api.read_token: must differ from api.token`}},
		{"bad-glob", []string{`conf.bad-glob.yml:3: rule_files[1]: pattern "rules/[a-.yml": syntax error in pattern`}},
		{"bad-host-scheme", []string{`conf.bad-host-scheme.yml:5: handlers.http.allowed_hosts[1]: "https://status.example.com": want host or host:port, without a scheme`}},
		{"bad-host-path", []string{`conf.bad-host-path.yml:3: handlers.http.allowed_hosts[0]: "status.example.com/api": want host or host:port, without a path`}},
		{"bad-host-port", []string{`conf.bad-host-port.yml:3: handlers.http.allowed_hosts[0]: "airflow.internal:http": port "http" is not a number`}},
		{"bad-missing-file", []string{`conf.bad-missing-file.yml:2: api.token_file: open `, `secrets/does-not-exist: no such file or directory`}},
		{"bad-empty-file", []string{`conf.bad-empty-file.yml:2: api.token_file: `, `secrets/empty is empty`}},
		{"bad-secret-type", []string{`conf.bad-secret-type.yml:2: api.token: want a string`}},
		{"bad-secrets-type", []string{`conf.bad-secrets-type.yml:2: webhook.bearer_token: want a string`}},
		{"bad-int", []string{"conf.bad-int.yml:2: database.max_conns: cannot unmarshal !!str `ten` into int32"}},
		{"bad-syntax", []string{`conf.bad-syntax.yml:2: did not find expected key`}},
		{"bad-not-mapping", []string{`conf.bad-not-mapping.yml:1: cannot unmarshal !!seq into a mapping`}},
		{"bad-section-type", []string{`conf.bad-section-type.yml:2: handlers.http: cannot unmarshal !!seq into a mapping`}},
		{"bad-duplicate-key", []string{`conf.bad-duplicate-key.yml:3: api.token: mapping key "token" already defined at line 2`}},
		{"bad-two-docs", []string{`conf.bad-two-docs.yml:3: want one YAML document, found more`}},
		{"bad-replicas", []string{`conf.bad-replicas.yml:2: bus.replicas: must be between 1 and 5, got 7`}},
		{"bad-stream", []string{`conf.bad-stream.yml:2: bus.stream: stream name "responder.alerts" may not contain`}},
		{"nats-bad-two-auth", []string{`conf.nats-bad-two-auth.yml:4: nats.nkey_seed_file: set at most one of`, `nats.token_file is set too`}},
		{"nats-bad-password-no-user", []string{`conf.nats-bad-password-no-user.yml:3: nats.password_file: nats.password_file needs nats.user`}},
		{"nats-bad-missing-file", []string{`conf.nats-bad-missing-file.yml:4: nats.password_file: open `, `secrets/does-not-exist: no such file`}},
		{"nats-bad-cert-no-key", []string{`conf.nats-bad-cert-no-key.yml:4: nats.tls.cert_file: nats.tls.cert_file needs nats.tls.key_file`}},
		{"nats-bad-key", []string{`conf.nats-bad-key.yml:4: nats.tls.cert_file: `, `secrets/nats-token: tls: `}},
		{"nats-bad-ca", []string{`conf.nats-bad-ca.yml:4: nats.tls.ca_file: `, `secrets/nats-token holds no PEM certificate`}},
		{"nats-bad-seed", []string{`conf.nats-bad-seed.yml:3: nats.nkey_seed_file: `, `secrets/nats-token holds no NKey seed`}},
		{"nats-bad-creds", []string{`conf.nats-bad-creds.yml:3: nats.creds_file: `, `secrets/nats-token holds no user JWT`}},
		{"nats-bad-creds-unframed", []string{`conf.nats-bad-creds-unframed.yml:3: nats.creds_file: `, `secrets/nats-creds-unframed holds no user JWT`}},
		{"nats-bad-no-signing-key", []string{`conf.nats-bad-no-signing-key.yml:2: nats.url: an external bus needs bus.signing_key_file`}},
		{"nats-bad-short-signing-key", []string{`conf.nats-bad-short-signing-key.yml:4: bus.signing_key_file: `, `holds 5 bytes; want at least 32`}},
		{"nats-bad-embedded-auth", []string{`conf.nats-bad-embedded-auth.yml:2: nats.token_file: credentials are for an external server`}},
		{"bad-many", []string{ // every problem is reported, not only the first
			`conf.bad-many.yml:2: database.max_conns: must be at least 1, got 0`,
			`conf.bad-many.yml:4: safety.max_concurrent_actions: must be at least 1, got -1`,
			`conf.bad-many.yml:6: bus.duplicate_window: must be at least 10m, got 5m`,
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			name := "conf." + tc.file + ".yml"
			cfg, err := load(t, name)
			if err == nil {
				t.Fatalf("Load(%s) = %+v, want an error", name, cfg)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n  %v\nlacks\n  %s", err, w)
				}
			}
			if strings.Contains(err.Error(), "SECRET-") {
				t.Errorf("error quotes a secret: %v", err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yml"), noEnv)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
}

// The credentials other than a password, and TLS with a CA only.
func TestLoadNATSCredentials(t *testing.T) {
	cfg := mustLoad(t, "conf.nats-token.yml")
	if cfg.NATS.Token.Value() != "SECRET-nats-token" || cfg.NATS.TLS.ServerName != "nats.internal" || !cfg.NATS.TLS.Enabled() {
		t.Errorf("token config: %+v", cfg.NATS)
	}
	cfg = mustLoad(t, "conf.nats-nkey.yml")
	if got, want := cfg.FilePath(cfg.NATS.NkeySeedFile), filepath.Join(cfg.Dir, "secrets", "nats-nkey-seed"); got != want {
		t.Errorf("nkey seed path = %q, want %q", got, want)
	}
	if cfg.NATS.TLS.Enabled() {
		t.Errorf("TLS enabled without a nats.tls key")
	}
}

func TestSecretFiles(t *testing.T) {
	cfg := mustLoad(t, "conf.files.yml")
	if !filepath.IsAbs(cfg.Dir) || filepath.Base(cfg.Dir) != "testdata" {
		t.Errorf("Dir = %q, want the absolute testdata directory", cfg.Dir)
	}
	// Resolved against the config's directory: from the package directory (the test's cwd),
	// "secrets/api-token" does not exist, so a cwd-relative read would have failed to load.
	if _, err := os.Stat("secrets/api-token"); err == nil {
		t.Fatal("secrets/api-token exists relative to the cwd; the test proves nothing")
	}
	for _, c := range []struct{ what, got, want string }{
		{"DatabaseURL", cfg.DatabaseURL(), "postgres://responder:SECRET-file-db@db.internal:5432/responder"},
		{"APIToken", cfg.APIToken(), "SECRET-file-api"},
		{"APIReadToken", cfg.APIReadToken(), "SECRET-file-read"},
	} {
		if c.got != c.want {
			t.Errorf("%s() = %q, want %q", c.what, c.got, c.want)
		}
	}
	if want := []string{"SECRET-file-webhook-1", "SECRET-file-webhook-2"}; !cmp.Equal(cfg.WebhookTokens(), want) {
		t.Errorf("WebhookTokens() = %q, want %q", cfg.WebhookTokens(), want)
	}

	// An absolute *_file path is used as is.
	abs := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(abs, []byte("abs-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte("api: {token_file: "+abs+"}\n"), filepath.Join(t.TempDir(), "r.yml"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.APIToken() != "abs-token" {
		t.Errorf("APIToken() = %q, want abs-token", cfg.APIToken())
	}
}

func TestDatabaseURLEnv(t *testing.T) {
	env := func(v string) Option {
		return WithGetenv(func(k string) string {
			if k == EnvDatabaseURL {
				return v
			}
			return ""
		})
	}
	const override = "postgres://env@db:5432/responder"
	for _, tc := range []struct {
		name, yaml, env, want string
	}{
		{"env overrides url", "database: {url: postgres://file@db/x}\n", override, override},
		{"env overrides url_file, which is not read", "database: {url_file: secrets/missing}\n", override, override},
		{"env trimmed", "{}\n", " " + override + "\n", override},
		{"empty env keeps url", "database: {url: postgres://file@db/x}\n", "", "postgres://file@db/x"},
		{"nothing set", "{}\n", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml), filepath.Join(t.TempDir(), "r.yml"), env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.DatabaseURL(); got != tc.want {
				t.Errorf("DatabaseURL() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSecretsNeverPrint loads every secret inline and from files and looks for them in every
// way a config gets printed.
func TestSecretsNeverPrint(t *testing.T) {
	for _, name := range []string{"conf.full.yml", "conf.files.yml"} {
		t.Run(name, func(t *testing.T) {
			cfg := mustLoad(t, name)
			secrets := append(cfg.WebhookTokens(), cfg.APIToken(), cfg.APIReadToken(), cfg.DatabaseURL())
			if name == "conf.full.yml" {
				secrets = append(secrets, cfg.NATS.Password.Value(), cfg.Bus.SigningKey.Value())
			}
			for _, tok := range cfg.APITokens() {
				secrets = append(secrets, tok.Secret)
			}
			for _, s := range secrets {
				if !strings.Contains(s, "SECRET-") {
					t.Fatalf("fixture secret %q lacks the SECRET- marker", s)
				}
			}

			var outs []string
			outs = append(outs, fmt.Sprintf("%v %+v %#v %s %q %x %d", cfg, cfg, cfg, cfg.API.Token, cfg.API.Token, cfg.API.Token, cfg.API.Token))
			outs = append(outs, fmt.Sprintf("%v %+v %#v %q", *cfg, *cfg, cfg.Webhook.BearerToken, cfg.Webhook.BearerToken))
			outs = append(outs, fmt.Sprint(cfg.Database.URL), cfg.Database.URL.String())
			y, err := yaml.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			j, err := json.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			outs = append(outs, string(y), string(j))
			var logs bytes.Buffer
			for _, h := range []slog.Handler{slog.NewTextHandler(&logs, nil), slog.NewJSONHandler(&logs, nil)} {
				slog.New(h).Info("loaded", "config", cfg, "token", cfg.API.Token, "tokens", cfg.Webhook.BearerToken, "url", cfg.Database.URL)
			}
			outs = append(outs, logs.String())

			all := strings.Join(outs, "\n")
			if strings.Contains(all, "SECRET-") {
				t.Errorf("a secret was printed:\n%s", all)
			}
			if !strings.Contains(string(y), "token: <secret>") || !strings.Contains(string(j), `"Token":"\u003csecret\u003e"`) {
				t.Errorf("marshalled config does not show <secret>:\n%s\n%s", y, j)
			}
		})
	}
	if got := fmt.Sprintf("%v|%s", Secret(""), Secret("")); got != "|" {
		t.Errorf("empty secret prints %q, want empty", got)
	}
}

func TestRuleFilePaths(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"rules/b.yml", "rules/a.yml", "rules/notes.txt", "other/c.yml", "rules/sub.yml/x.yml"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte("rules: []\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	abs := filepath.Join(dir, "other", "c.yml")
	j := func(p string) string { return filepath.Join(dir, p) }
	for _, tc := range []struct {
		name     string
		patterns []string
		want     []string
		wantErr  string
	}{
		{"glob relative to Dir", []string{"rules/*.yml"}, []string{j("rules/a.yml"), j("rules/b.yml")}, ""},
		{"deduplicated and sorted", []string{"rules/b.yml", "rules/*.yml", "rules/a.yml"}, []string{j("rules/a.yml"), j("rules/b.yml")}, ""},
		{"absolute path", []string{abs}, []string{abs}, ""},
		{"glob matching nothing", []string{"missing/*.yml"}, nil, ""},
		{"none", nil, nil, ""},
		{"literal missing", []string{"rules/nope.yml"}, nil, "nope.yml: no such file or directory"},
		{"literal directory", []string{"rules"}, nil, "is a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			cfg.Dir, cfg.RuleFiles = dir, tc.patterns
			got, err := cfg.RuleFilePaths()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("RuleFilePaths() error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("RuleFilePaths() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestExample keeps examples/responder.yml (what `make run` loads) valid.
func TestExample(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "examples", "responder.yml"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(cfg.WebhookTokens(), []string{"dev-webhook-token"}) || cfg.APIToken() != "dev-api-token" {
		t.Errorf("example tokens = %q, %q", cfg.WebhookTokens(), cfg.APIToken())
	}
	if cfg.DatabaseURL() != "postgres://postgres@127.0.0.1:5433/responder?sslmode=disable" {
		t.Errorf("example database URL = %q", cfg.DatabaseURL())
	}
	// The documented console users log in with the passwords README states.
	for _, u := range []struct{ name, password, role string }{{"alice", "alice-dev-password", "admin"}, {"bob", "bob-dev-password", "read"}} {
		got := cfg.Web.Users[u.name]
		if err := bcrypt.CompareHashAndPassword([]byte(got.PasswordHash.Value()), []byte(u.password)); err != nil || got.Role != u.role {
			t.Errorf("example user %s: role %q, password: %v", u.name, got.Role, err)
		}
	}
	if !cmp.Equal(cfg.Approvals.Approvers.Web, []string{"alice"}) {
		t.Errorf("example approvals.approvers.web = %q", cfg.Approvals.Approvers.Web)
	}
	paths, err := cfg.RuleFilePaths()
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 2 {
		t.Errorf("example rule files = %q, want at least 2", paths)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Rules []map[string]any `yaml:"rules"`
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&doc); err != nil || len(doc.Rules) == 0 {
			t.Errorf("%s: not a rule file (%v)", p, err)
		}
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"90s", 90 * time.Second, false},
		{"15m", 15 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"90d", 90 * 24 * time.Hour, false},
		{"2w", 14 * 24 * time.Hour, false},
		{"1.5h", 90 * time.Minute, false},
		{"250ms", 250 * time.Millisecond, false},
		{"0", 0, false},
		{"", 0, true},
		{"15", 0, true},
		{"-5m", 0, true},
		{"15 minutes", 0, true},
		{"1y1y", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var d Duration
			err := yaml.Unmarshal([]byte("v: "+quote(tc.in)), &struct {
				V *Duration `yaml:"v"`
			}{&d})
			if (err != nil) != tc.wantErr || d.D() != tc.want {
				t.Fatalf("%q: got %v, %v; want %v, error %v", tc.in, d.D(), err, tc.want, tc.wantErr)
			}
			if err == nil { // String round-trips
				back, err := ParseDuration(d.String())
				if err != nil || back != d {
					t.Errorf("ParseDuration(%q) = %v, %v; want %v", d.String(), back, err, d)
				}
			}
		})
	}
}

func TestBytes(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"8388608", 8 << 20, false},
		{"8MiB", 8 << 20, false},
		{"512KB", 512_000, false},
		{"512KiB", 512 << 10, false},
		{"1GiB", 1 << 30, false},
		{"2GB", 2_000_000_000, false},
		{"3MB", 3_000_000, false},
		{"100B", 100, false},
		{"8 MiB", 8 << 20, false},
		{"0", 0, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"-1", 0, true},
		{"+5", 0, true},
		{"1.5GiB", 0, true},
		{"8mb", 0, true},
		{"8TiB", 0, true},
		{"9223372036854775807GiB", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var b Bytes
			err := yaml.Unmarshal([]byte("v: "+quote(tc.in)), &struct {
				V *Bytes `yaml:"v"`
			}{&b})
			if (err != nil) != tc.wantErr || int64(b) != tc.want {
				t.Fatalf("%q: got %d, %v; want %d, error %v", tc.in, b, err, tc.want, tc.wantErr)
			}
			if err == nil {
				back, err := ParseBytes(b.String())
				if err != nil || back != b {
					t.Errorf("ParseBytes(%q) = %v, %v; want %v", b.String(), back, err, b)
				}
			}
		})
	}
	// A YAML integer, not only a string.
	var v struct {
		B Bytes `yaml:"b"`
	}
	if err := yaml.Unmarshal([]byte("b: 1024\n"), &v); err != nil || v.B != 1024 {
		t.Errorf("b: 1024 → %d, %v", v.B, err)
	}
}

func TestSecretsYAML(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{`one`, []string{"one"}, false},
		{`[old, new]`, []string{"old", "new"}, false},
		{`12345`, []string{"12345"}, false},
		{`""`, []string{}, false},
		{`[]`, []string{}, false},
		{`[a, ""]`, nil, true},
		{`{a: b}`, nil, true},
		{`[a, [b]]`, nil, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var v struct {
				S Secrets `yaml:"s"`
			}
			err := yaml.Unmarshal([]byte("s: "+tc.in), &v)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && !cmp.Equal(v.S.Values(), tc.want) {
				t.Errorf("got %q, want %q", v.S.Values(), tc.want)
			}
		})
	}
}

func TestHosts(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"airflow.internal", true},
		{"airflow.internal:8080", true},
		{"127.0.0.1:9999", true},
		{"10.0.0.1", true},
		{"::1", true},
		{"[::1]", true},
		{"[::1]:9999", true},
		{"my_host.local", true},
		{"", false},
		{"http://airflow.internal", false},
		{"airflow.internal/api", false},
		{"user@airflow.internal", false},
		{"airflow.internal:0", false},
		{"airflow.internal:65536", false},
		{"airflow.internal:", false},
		{"airflow..internal", false},
		{"*.example.com", false},
		{"[airflow.internal]:80", false},
		{"[::1", false},
	} {
		t.Run(tc.host, func(t *testing.T) {
			if err := checkHost(tc.host); (err == nil) != tc.ok {
				t.Errorf("checkHost(%q) = %v, want ok %v", tc.host, err, tc.ok)
			}
		})
	}
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

// FuzzParse: Parse must never panic, and what it accepts must be valid and print no secret
// read from a file.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "conf.*.yml"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds: %v", err)
	}
	seeds = append(seeds, filepath.Join("..", "examples", "responder.yml"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	const fileSecret = "fuzz-file-secret-7f3a"
	read := withReadFile(func(path string) ([]byte, error) {
		if strings.Contains(path, "missing") {
			return nil, fs.ErrNotExist
		}
		return []byte(fileSecret + "\n"), nil
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.yml", noEnv, read)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted a config Validate rejects: %v", err)
		}
		out := fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg)
		if y, err := yaml.Marshal(cfg); err == nil {
			out += string(y)
		}
		if strings.Contains(out, fileSecret) && !bytes.Contains(data, []byte(fileSecret)) {
			t.Fatalf("secret printed: %s", out)
		}
	})
}

func TestBudgets(t *testing.T) {
	good := "safety:\n  budgets:\n    - {name: k8s-per-namespace, match: \"k8s.*\", per: namespace, max: 3, window: 10m}\n"
	cfg, err := Parse([]byte(good), "b.yml")
	if err != nil {
		t.Fatal(err)
	}
	if b := cfg.Safety.Budgets[0]; b.Name != "k8s-per-namespace" || b.Max != 3 || b.Window.D() != 10*time.Minute || b.Per != "namespace" {
		t.Fatalf("budget = %+v", b)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"    - {name: a, match: \"k8s.*\", per: pod, max: 3, window: 10m}\n", "b.yml:3: safety.budgets[0].per: per must be namespace, cluster or global"},
		{"    - {name: a, match: \"[\", per: global, max: 3, window: 10m}\n", "safety.budgets[0].match"},
		{"    - {name: a, match: \"*\", per: global, max: 0, window: 10m}\n", "safety.budgets[0].max: must be at least 1"},
		{"    - {name: a, match: \"*\", per: global, max: 1, window: 10m}\n    - {name: a, match: \"*\", per: global, max: 1, window: 10m}\n", "budget \"a\" is defined twice"},
		{"    - {name: a, match: \"*\", per: global, max: 1, window: 10m, burst: 2}\n", "burst"},
	} {
		_, err := Parse([]byte("safety:\n  budgets:\n"+tc.yaml), "b.yml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
