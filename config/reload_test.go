package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// reloadBase is a config with a key of every reloadable section and of the restart-only ones.
const reloadBase = `
nats: {url: ""}
database: {url: "postgres://postgres@127.0.0.1:5433/responder", max_conns: 10}
webhook: {bearer_token_file: hook-token, max_body_bytes: 8MiB}
api:
  token_file: api-token
  tokens: [{name: ci, token_file: ci-token, role: read}]
rule_files: [rules/*.yml]
probes:
  - {name: api, interval: 30s, http: {url: "http://api.internal/healthz"}}
  - {name: db, tcp: {address: "db.internal:5432"}}
secrets: {pager: {file: pager-key}}
handlers:
  http: {allowed_hosts: [airflow.internal]}
  page: {webhook: {url: "https://events.example.com/v2/enqueue", routing_key_file: pager-key}}
slack:
  bot_token_file: bot-token
  signing_secret_file: signing-secret
  channel: "#incidents"
  approvers: {users: [U012AB3CD]}
web:
  users: {alice: {password_hash_file: alice-hash, role: admin}}
approvals: {ttl: 15m, approvers: {web: [alice]}}
safety:
  max_concurrent_actions: 8
  budgets: [{name: k8s, match: "k8s.*", per: namespace, max: 3, window: 10m}]
limits: {max_params_bytes: 64KiB}
`

// writeReloadFiles writes reloadBase's files into dir, with files overriding some contents.
func writeReloadFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	contents := map[string]string{
		"hook-token": "hook-1", "api-token": "admin-1", "ci-token": "ci-1", "pager-key": "pager-1",
		"bot-token": "xoxb-1", "signing-secret": "signing-1",
		"alice-hash": "$2y$04$0G5f/kMbGz4/Io7d3uyrnOBlJv0jRE1f2ovZBD0A.uD1TbkbDTRXS",
	}
	for k, v := range files {
		contents[k] = v
	}
	for name, c := range contents {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(c+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func parseIn(t *testing.T, dir, yml string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(yml), filepath.Join(dir, "responder.yml"), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

// TestChanges: each edit of the config names the keys it changed, and whether a reload may apply
// them; a rotated *_file shows as its key's value changing; values never appear.
func TestChanges(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(string) string
		files   map[string]string
		changed []string
		restart []string
	}{
		{name: "nothing", edit: func(s string) string { return s }},
		{name: "an allowed host", edit: replace("[airflow.internal]", "[airflow.internal, status.example.com]"),
			changed: []string{"handlers.http.allowed_hosts"}},
		{name: "a probe changed", edit: replace("interval: 30s", "interval: 10s"), changed: []string{"probes[0].interval"}},
		{name: "a probe's status map", edit: replace(`http: {url: "http://api.internal/healthz"}`,
			`http: {url: "http://api.internal/healthz", status_map: {200: ok, 503: failing}}`),
			changed: []string{"probes[0].http.expect_status", "probes[0].http.status_map.200", "probes[0].http.status_map.503"}},
		{name: "a probe added", edit: replace("probes:\n", "probes:\n  - {name: redis, tcp: {address: \"redis:6379\"}}\n"),
			changed: []string{"probes"}},
		{name: "a budget", edit: replace("max: 3", "max: 5"), changed: []string{"safety.budgets[0].max"}},
		{name: "a secret added", edit: replace("secrets: {pager: {file: pager-key}}", "secrets: {pager: {file: pager-key}, db: {file: ci-token}}"),
			changed: []string{"secrets.db"}},
		{name: "a rotated secret file", files: map[string]string{"pager-key": "pager-2"}, edit: func(s string) string { return s },
			changed: []string{"handlers.page.webhook.routing_key"}},
		{name: "a rotated api token", files: map[string]string{"ci-token": "ci-2"}, edit: func(s string) string { return s },
			changed: []string{"api.tokens[0].token"}},
		{name: "a rotated webhook token", files: map[string]string{"hook-token": "hook-1\nhook-2"}, edit: func(s string) string { return s },
			changed: []string{"webhook.bearer_token"}},
		{name: "an approver", edit: replace("users: [U012AB3CD]", "users: [U012AB3CD, U999]"), changed: []string{"slack.approvers.users"}},
		{name: "a web user added", edit: replace("role: admin}}", "role: admin}, bob: {password_hash_file: alice-hash}}"),
			changed: []string{"web.users.bob"}},
		{name: "the database", edit: replace("127.0.0.1:5433", "db.internal:5432"),
			changed: []string{"database.url"}, restart: []string{"database.url: changed; needs a restart"}},
		{name: "the bus and a limit", edit: replace("max_params_bytes: 64KiB}", "max_params_bytes: 32KiB}\nbus: {max_bytes: 2GiB}"),
			changed: []string{"bus.max_bytes", "limits.max_params_bytes"},
			restart: []string{"bus.max_bytes: changed; needs a restart", "limits.max_params_bytes: changed; needs a restart"}},
		{name: "the slack bot token", files: map[string]string{"bot-token": "xoxb-2"}, edit: func(s string) string { return s },
			changed: []string{"slack.bot_token"}, restart: []string{"slack.bot_token: changed; needs a restart"}},
		{name: "the execution slots beside a rule file", edit: replace("max_concurrent_actions: 8", "max_concurrent_actions: 4").then(replace("[rules/*.yml]", "[rules/*.yaml]")),
			changed: []string{"rule_files[0]", "safety.max_concurrent_actions"}, restart: []string{"safety.max_concurrent_actions: changed; needs a restart"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeReloadFiles(t, dir, nil)
			old := parseIn(t, dir, reloadBase)
			writeReloadFiles(t, dir, tc.files)
			next := parseIn(t, dir, tc.edit(reloadBase))
			got := old.Changes(next)
			if diff := cmp.Diff(tc.changed, got); diff != "" {
				t.Errorf("Changes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.restart, NeedsRestart(got)); diff != "" {
				t.Errorf("NeedsRestart (-want +got):\n%s", diff)
			}
			for _, secret := range []string{"hook-2", "pager-2", "ci-2", "xoxb-2", "db.internal"} {
				if slices.ContainsFunc(got, func(k string) bool { return strings.Contains(k, secret) }) {
					t.Errorf("a changed key holds the value %q: %v", secret, got)
				}
			}
		})
	}
}

type edit func(string) string

func replace(old, with string) edit {
	return func(s string) string {
		if !strings.Contains(s, old) {
			panic("no " + old)
		}
		return strings.Replace(s, old, with, 1)
	}
}

func (e edit) then(f edit) edit { return func(s string) string { return f(e(s)) } }

// TestEveryKeyIsClassified lists the keys that need a restart: a key added to the config needs
// one until a reload applies it and config.reloadable lists it, and this list says so.
func TestEveryKeyIsClassified(t *testing.T) {
	var restart []string
	for _, k := range configKeys("", reflect.TypeFor[Config]()) {
		if !Reloadable(k) {
			restart = append(restart, k)
		}
	}
	want := []string{
		"bus.ack_wait", "bus.consumers", "bus.duplicate_window", "bus.max_age", "bus.max_bytes", "bus.max_msgs",
		"bus.replicas", "bus.signing_key", "bus.signing_key_file", "bus.stream",
		"database.max_conns", "database.url", "database.url_file",
		"limits.max_alerts_per_request", "limits.max_annotations_bytes", "limits.max_label_name_bytes",
		"limits.max_label_value_bytes", "limits.max_labels_per_alert", "limits.max_params_bytes",
		"nats.creds_file", "nats.nkey_seed_file", "nats.password", "nats.password_file",
		"nats.tls.ca_file", "nats.tls.cert_file", "nats.tls.key_file", "nats.tls.server_name",
		"nats.token", "nats.token_file", "nats.url", "nats.user",
		"safety.lease_duration", "safety.max_concurrent_actions",
		"slack.api_url", "slack.app_token", "slack.app_token_file", "slack.bot_token", "slack.bot_token_file", "slack.socket_mode",
		"webhook.max_body_bytes",
	}
	slices.Sort(restart)
	if diff := cmp.Diff(want, restart); diff != "" {
		t.Errorf("keys that need a restart (-want +got):\n%s", diff)
	}
}

// configKeys lists the keys of t down to lists, maps and values.
func configKeys(path string, t reflect.Type) []string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeFor[Duration]() {
		return []string{path}
	}
	var out []string
	for i := range t.NumField() {
		if name := fieldKey(t, t.Field(i)); name != "" {
			out = append(out, configKeys(joinKey(path, name), t.Field(i).Type)...)
		}
	}
	return out
}

func TestSnakeCase(t *testing.T) {
	for in, want := range map[string]string{"BotToken": "bot_token", "CA": "ca", "Token": "token", "SigningSecret": "signing_secret"} {
		if got := snakeCase(in); got != want {
			t.Errorf("snakeCase(%q) = %q, want %q", in, got, want)
		}
	}
}
