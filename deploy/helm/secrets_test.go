package helm_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/identity"
)

// Every secret the config references (named secrets, the pager routing key, the Patroni password,
// the DSNs, a fence header through a named secret) is in the Secret, mounted as a file and
// referenced by a *_file key; nothing secret is in the ConfigMap, and responder loads the result.
func TestSecretsMounted(t *testing.T) {
	t.Parallel()
	m := mustRender(t, "-f", values("values-secrets.yaml"))
	var sec corev1.Secret
	m.must(t, "Secret", fullname).decode(t, &sec)
	want := map[string]string{
		"secret-airflow-token":        "named-secret-airflow-0123456789",
		"secret-fence":                "named-secret-fence-0123456789",
		"pager-routing-key":           "pager-routing-key-0123456789",
		"pg-billing-patroni-password": "patroni-password-0123456789",
		"pg-legacy-primary-dsn":       "host=db-1.internal user=responder password=primary-dsn-password-0123456789",
		"pg-legacy-standby-1-dsn":     "host=db-2.internal user=responder password=standby-dsn-password-0123456789",
	}
	for k, v := range want {
		if got := string(sec.Data[k]); got != v {
			t.Errorf("Secret %s = %q, want %q", k, got, v)
		}
	}
	noSecretsInConfigMaps(t, m, sec)

	var sts appsv1.StatefulSet
	m.must(t, "StatefulSet", fullname).decode(t, &sts)
	files := projectedFiles(t, sts.Spec.Template.Spec)
	for k := range want {
		if !slices.Contains(files, "secrets/"+k) {
			t.Errorf("projected volume lacks secrets/%s: %v", k, files)
		}
	}
	cfg := configOf(t, m)
	for path, want := range map[string]string{
		"secrets.airflow-token.file":                               "/etc/responder/secrets/secret-airflow-token",
		"secrets.fence.file":                                       "/etc/responder/secrets/secret-fence",
		"handlers.page.webhook.routing_key_file":                   "/etc/responder/secrets/pager-routing-key",
		"handlers.postgres.clusters.billing.patroni_password_file": "/etc/responder/secrets/pg-billing-patroni-password",
		"handlers.postgres.clusters.legacy.primary.dsn_file":       "/etc/responder/secrets/pg-legacy-primary-dsn",
	} {
		if got := lookup(cfg, path); got != want {
			t.Errorf("responder.yml %s = %q, want %q", path, got, want)
		}
	}

	// responder loads the rendered config and rule file with the files where the pod has them.
	dir := t.TempDir()
	data := m.must(t, "ConfigMap", fullname).Raw["data"].(map[string]any)
	text := strings.ReplaceAll(data["responder.yml"].(string), "/etc/responder/secrets/", filepath.Join(dir, "secrets")+"/")
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"database-url", "webhook-token", "api-token"} {
		want[f] = string(sec.Data[f])
	}
	for k, v := range want {
		if err := os.WriteFile(filepath.Join(dir, "secrets", k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := config.Parse([]byte(text), filepath.Join(dir, "responder.yml"), config.WithGetenv(func(string) string { return "" }))
	if err != nil {
		t.Fatalf("responder rejects the rendered config: %v\n%s", err, text)
	}
	if got := c.SecretFiles().Names(); !slices.Equal(got, []string{"airflow-token", "fence"}) {
		t.Errorf("named secrets = %q", got)
	}
}

func TestInlineSecretsRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, set, want string }{
		{"routing key", "config.handlers.page.webhook.routing_key=abc", "set pager.routingKey"},
		{"patroni password", "config.handlers.postgres.clusters.billing.patroni_password=abc", "postgres.clusters.billing.patroniPassword"},
		{"fence header", "config.handlers.postgres.clusters.legacy.fence.headers.Authorization=Bearer abc", "reference a named secret"},
		{"empty named secret", "secrets.token=", "secrets.token is empty"},
		{"teams url", "config.handlers.page.teams.url=https://example.webhook.office.com/x", "set teams.webhookURL"},
		{"smtp password", "config.handlers.page.email.smtp.password=abc", "set email.smtpPassword"},
		{"console password hash", "config.web.users.alice.password_hash=$2y$10$x", "set web.users.alice.passwordHash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, chartDir, "-f", values("values-secrets.yaml"), "--set", tc.set)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// With existingSecret the named secrets and the routing key are mounted from the user's Secret.
func TestSecretsFromExistingSecret(t *testing.T) {
	t.Parallel()
	m := mustRender(t, "-f", values("values-existing-secret.yaml"), "--set", "secrets.token=", "--set", "secretKeys.pagerRoutingKey=pd-key")
	if got := m.ofKind("Secret"); len(got) != 0 {
		t.Fatalf("the chart rendered a Secret with existingSecret: %v", got)
	}
	var sts appsv1.StatefulSet
	m.must(t, "StatefulSet", fullname).decode(t, &sts)
	files := projectedFiles(t, sts.Spec.Template.Spec)
	for _, f := range []string{"secrets/secret-token", "secrets/pager-routing-key"} {
		if !slices.Contains(files, f) {
			t.Errorf("projected volume lacks %s: %v", f, files)
		}
	}
	cfg := configOf(t, m)
	if got := lookup(cfg, "secrets.token.file"); got != "/etc/responder/secrets/secret-token" {
		t.Errorf("secrets.token.file = %q", got)
	}
	if got := lookup(cfg, "handlers.page.webhook.routing_key_file"); got != "/etc/responder/secrets/pager-routing-key" {
		t.Errorf("routing_key_file = %q", got)
	}
}

// The console users' hashes, the named API tokens, the Teams URL and the SMTP password are in the
// Secret, mounted and referenced by *_file keys; the SMTP CA comes from the user's ConfigMap;
// web.auth and approvals.approvers.web pass through; and responder loads what the pod would see.
func TestIdentityAndNotifierSecrets(t *testing.T) {
	t.Parallel()
	m := mustRender(t, "-f", values("values-identity.yaml"))
	var sec corev1.Secret
	m.must(t, "Secret", fullname).decode(t, &sec)
	const (
		teamsURL  = "https://prod-00.westeurope.logic.azure.com/workflows/0123/triggers/manual/paths/invoke?sig=teams-signature-0123456789"
		aliceHash = "$2a$10$TROv6/QyKb.9Z8w.fglJxuhsXDdDf9YvmDyM.yl0NVf9soqGx3Q.u"
		bobHash   = "$2a$10$tlgQbW.xEUKRFWQn3DOfdeqNt2JjCs/CfJJaLwBrbuiJww7bRZrgu"
	)
	want := map[string]string{
		"teams-webhook-url":                         teamsURL,
		"smtp-password":                             "smtp-password-0123456789",
		"web-user-alice-password-hash":              aliceHash,
		"web-user-bob_at_example.com-password-hash": bobHash,
		"api-token-oncall-bot":                      "oncall-bot-token-0123456789",
	}
	for k, v := range want {
		if got := string(sec.Data[k]); got != v {
			t.Errorf("Secret %s = %q, want %q", k, got, v)
		}
	}
	if ci := sec.Data["api-token-ci"]; len(ci) < 32 {
		t.Errorf("Secret api-token-ci = %q: want a generated token", ci)
	}
	if _, ok := sec.Data["web-user-carol-password-hash"]; ok {
		t.Error("Secret holds a hash for carol, a proxy-only user")
	}
	noSecretsInConfigMaps(t, m, sec)

	var sts appsv1.StatefulSet
	m.must(t, "StatefulSet", fullname).decode(t, &sts)
	files := projectedFiles(t, sts.Spec.Template.Spec)
	for _, f := range []string{"secrets/teams-webhook-url", "secrets/smtp-password", "secrets/web-user-alice-password-hash",
		"secrets/web-user-bob_at_example.com-password-hash", "secrets/api-token-ci", "secrets/api-token-oncall-bot", "smtp-ca.pem"} {
		if !slices.Contains(files, f) {
			t.Errorf("projected volume lacks %s: %v", f, files)
		}
	}

	cfg := configOf(t, m)
	for path, want := range map[string]string{
		"handlers.page.teams.url_file":                 "/etc/responder/secrets/teams-webhook-url",
		"handlers.page.teams.timeout":                  "5s",
		"handlers.page.teams.url":                      "<missing>",
		"handlers.page.email.smtp.password_file":       "/etc/responder/secrets/smtp-password",
		"handlers.page.email.smtp.password":            "<missing>",
		"handlers.page.email.smtp.ca_file":             "/etc/responder/smtp-ca.pem",
		"web.users.alice.password_hash_file":           "/etc/responder/secrets/web-user-alice-password-hash",
		"web.users.alice.role":                         "admin",
		"web.users.alice.password_hash":                "<missing>",
		"web.users.carol":                              "map[role:admin]",
		"web.auth.proxy_header":                        "X-Forwarded-User",
		"approvals.approvers.web":                      "[alice carol]",
		"api.token_file":                               "/etc/responder/secrets/api-token",
		"api.tokens":                                   "[map[name:ci token_file:/etc/responder/secrets/api-token-ci] map[name:oncall-bot role:admin token_file:/etc/responder/secrets/api-token-oncall-bot]]",
		"web.users.bob@example.com.password_hash_file": "/etc/responder/secrets/web-user-bob_at_example.com-password-hash",
	} {
		if got := lookupUser(cfg, path); got != want {
			t.Errorf("responder.yml %s = %q, want %q", path, got, want)
		}
	}

	ca := testCAPEM(t)
	c := loadRendered(t, m, nil, map[string]map[string]string{"smtp-trust-bundle": {"bundle.pem": ca}})
	if got := c.Handlers.Page.Teams.URL.Value(); got != teamsURL {
		t.Errorf("page.teams URL = %q", got)
	}
	smtp := c.Handlers.Page.Email.SMTP
	if smtp.Password.Value() != "smtp-password-0123456789" || string(smtp.CA) != ca {
		t.Errorf("page.email smtp: password %q, CA read %v", smtp.Password.Value(), string(smtp.CA) == ca)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(c.Web.Users["alice"].PasswordHash.Value()), []byte("alice-chart-password")); err != nil {
		t.Errorf("alice's hash as responder reads it: %v", err)
	}
	users := map[string]string{}
	for name, u := range c.Web.Users {
		users[name] = u.Role + " " + u.PasswordHash.Value()
	}
	if diff := cmp.Diff(map[string]string{"alice": "admin " + aliceHash, "bob@example.com": "read " + bobHash, "carol": "admin "}, users); diff != "" {
		t.Errorf("web.users as responder reads them (-want +got):\n%s", diff)
	}
	var tokens []string
	for _, tok := range c.APITokens() {
		tokens = append(tokens, fmt.Sprintf("%s %s %s", tok.Name, tok.Role, tok.Secret))
	}
	wantTokens := []string{
		fmt.Sprintf("api %s %s", identity.RoleAdmin, sec.Data["api-token"]),
		fmt.Sprintf("ci %s %s", identity.RoleRead, sec.Data["api-token-ci"]),
		fmt.Sprintf("oncall-bot %s oncall-bot-token-0123456789", identity.RoleAdmin),
	}
	if diff := cmp.Diff(wantTokens, tokens); diff != "" {
		t.Errorf("API tokens as responder reads them (-want +got):\n%s", diff)
	}
	if !slices.Equal(c.Approvals.Approvers.Web, []string{"alice", "carol"}) || c.Web.Auth.ProxyHeader != "X-Forwarded-User" {
		t.Errorf("approvers.web = %v, web.auth = %+v", c.Approvals.Approvers.Web, c.Web.Auth)
	}
}

// email.smtpCA (the PEM text) goes in the chart's ConfigMap, mounted at the path ca_file names.
func TestSMTPCAFromValues(t *testing.T) {
	t.Parallel()
	ca := testCAPEM(t)
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, []byte(ca), 0o600); err != nil {
		t.Fatal(err)
	}
	m := mustRender(t, "-f", values("values-identity.yaml"), "--set", "email.smtpCAFrom=null", "--set-file", "email.smtpCA="+file)
	data := m.must(t, "ConfigMap", fullname).Raw["data"].(map[string]any)
	if got := fmt.Sprint(data["smtp-ca.pem"]); got != ca {
		t.Errorf("ConfigMap smtp-ca.pem = %q, want the CA", got)
	}
	var sts appsv1.StatefulSet
	m.must(t, "StatefulSet", fullname).decode(t, &sts)
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.ConfigMap != nil && s.ConfigMap.Name != fullname {
				t.Errorf("a ConfigMap other than the chart's is mounted: %+v", s.ConfigMap)
			}
		}
	}
	c := loadRendered(t, m, nil, nil)
	if string(c.Handlers.Page.Email.SMTP.CA) != ca {
		t.Errorf("responder read the CA %q", c.Handlers.Page.Email.SMTP.CA)
	}
}

// With existingSecret, the new secrets are mounted from the user's Secret under the keys
// secretKeys names (Teams, SMTP) or the chart derives (users, named tokens).
func TestIdentityFromExistingSecret(t *testing.T) {
	t.Parallel()
	extra := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(extra, []byte(`
secretKeys: {teamsWebhookURL: teams-url, smtpPassword: smtp-pass}
web:
  users:
    alice: {passwordHash: "", role: admin}
apiTokens: [{name: ci, role: read}]
config:
  handlers:
    page:
      email:
        smtp: {host: smtp.example.com, username: responder}
        from: responder@example.com
        to: [oncall@example.com]
  approvals: {approvers: {web: [alice]}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	m := mustRender(t, "-f", values("values-existing-secret.yaml"), "-f", extra)
	if got := m.ofKind("Secret"); len(got) != 0 {
		t.Fatalf("the chart rendered a Secret with existingSecret: %v", got)
	}
	var sts appsv1.StatefulSet
	m.must(t, "StatefulSet", fullname).decode(t, &sts)
	items := map[string]string{}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.Secret != nil {
				for _, it := range s.Secret.Items {
					items[it.Path] = it.Key
				}
			}
		}
	}
	for path, key := range map[string]string{
		"secrets/teams-webhook-url":            "teams-url",
		"secrets/smtp-password":                "smtp-pass",
		"secrets/web-user-alice-password-hash": "web-user-alice-password-hash",
		"secrets/api-token-ci":                 "api-token-ci",
	} {
		if items[path] != key {
			t.Errorf("%s mounts the key %q, want %q", path, items[path], key)
		}
	}
	user := map[string][]byte{
		"pg-url": []byte(dbURL), "webhook-token": []byte("webhook-token-0123456789"), "api-token": []byte("api-token-0123456789"),
		"api-read-token": []byte("api-read-token-0123456789"), "slack-bot-token": []byte("xoxb-0123456789"),
		"slack-signing-secret": []byte("signing-0123456789"), "teams-url": []byte("https://example.webhook.office.com/webhookb2/x"),
		"smtp-pass": []byte("smtp-0123456789"), "api-token-ci": []byte("ci-token-0123456789"),
		"web-user-alice-password-hash": []byte("$2a$10$TROv6/QyKb.9Z8w.fglJxuhsXDdDf9YvmDyM.yl0NVf9soqGx3Q.u"),
	}
	c := loadRendered(t, m, map[string]map[string][]byte{"responder-secrets": user}, nil)
	if c.Handlers.Page.Teams.URL.Value() != string(user["teams-url"]) || c.Handlers.Page.Email.SMTP.Password.Value() != "smtp-0123456789" ||
		c.Web.Users["alice"].PasswordHash.Value() != string(user["web-user-alice-password-hash"]) {
		t.Errorf("responder did not read the user's Secret: teams %q, smtp %q, alice %+v", c.Handlers.Page.Teams.URL.Value(),
			c.Handlers.Page.Email.SMTP.Password.Value(), c.Web.Users["alice"])
	}
	if toks := c.APITokens(); len(toks) != 3 || toks[2].Name != "ci" || toks[2].Secret != "ci-token-0123456789" {
		t.Errorf("API tokens = %+v", toks)
	}
}

func TestIdentityRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		sets []string
		want string
	}{
		{"a password instead of a hash", []string{"web.users.dave.passwordHash=hunter2"}, "web.users.dave.passwordHash is not a bcrypt hash"},
		{"empty hash", []string{"web.users.dave.passwordHash="}, "web.users.dave.passwordHash is empty"},
		{"user in both places", []string{"config.web.users.alice.role=admin"}, "alice is in both web.users and config.web.users"},
		{"reserved user name", []string{"web.users.api.role=read"}, "web.users: the name api is reserved"},
		{"reserved token name", []string{"apiTokens[0].name=api-read"}, "apiTokens: the name api-read is reserved"},
		{"token name twice", []string{"apiTokens[0].name=ci", "apiTokens[1].name=ci"}, "apiTokens: the name ci is given twice"},
		{"two keys alike", []string{"web.users.a@b.role=read", "web.users.a@b.passwordHash=$2a$10$TROv6/QyKb.9Z8w.fglJxuhsXDdDf9YvmDyM.yl0NVf9soqGx3Q.u",
			"web.users.a_at_b.passwordHash=$2a$10$TROv6/QyKb.9Z8w.fglJxuhsXDdDf9YvmDyM.yl0NVf9soqGx3Q.u"}, "two secrets would be mounted at secrets/web-user-a_at_b-password-hash"},
		{"bad role", []string{"web.users.dave.role=root"}, "value must be one of"},
		{"unknown user key", []string{"web.users.dave.password=x"}, "additional properties 'password' not allowed"},
		{"unknown config.web key", []string{"config.web.csrf_key=x"}, "additional properties 'csrf_key' not allowed"},
		{"smtp password without user", []string{"config.handlers.page.email.smtp.username="}, "email.smtpPassword needs config.handlers.page.email.smtp.username"},
		{"two CAs", []string{"email.smtpCA=x"}, "set email.smtpCA (the PEM text) or email.smtpCAFrom"},
		{"CA from nowhere", []string{"email.smtpCAFrom.configMap="}, "email.smtpCAFrom: name either a configMap or a secret"},
		{"CA from both", []string{"email.smtpCAFrom.secret=tls"}, "email.smtpCAFrom: name either a configMap or a secret"},
		{"CA twice", []string{"config.handlers.page.email.smtp.ca_file=/ca.pem"}, "config.handlers.page.email.smtp.ca_file is set by the chart"},
		{"CA text with existingConfigMap", []string{"email.smtpCAFrom=null", "email.smtpCA=x", "existingConfigMap=mine"}, "email.smtpCA goes in the chart's ConfigMap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := []string{"-f", values("values-identity.yaml")}
			for _, s := range tc.sets {
				args = append(args, "--set", s)
			}
			_, err := render(t, chartDir, args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("helm template %v: err = %v, want one containing %q", tc.sets, err, tc.want)
			}
			// The error names the value, never quotes it (the command line before "Error:" does).
			if _, msg, _ := strings.Cut(err.Error(), "Error:"); strings.Contains(msg, "$2a$") || strings.Contains(msg, "hunter2") {
				t.Errorf("the error quotes a secret: %s", msg)
			}
		})
	}
}

// Generated named tokens (like the webhook and API tokens) are read back from the release's Secret
// on upgrade: a copy of the chart whose lookup returns an old Secret keeps its tokens.
func TestGeneratedTokensKeptAcrossUpgrades(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "responder")
	copyDir(t, filepath.Join(repoRoot(t), chartDir), dir)
	path := filepath.Join(dir, "templates", "secret.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const call = `lookup "v1" "Secret" .Release.Namespace $name`
	if n := strings.Count(string(b), call); n != 1 {
		t.Fatalf("secret.yaml has %d calls %q, want 1 (update this test)", n, call)
	}
	old := map[string]string{"api-token-ci": "old-ci-token-0123456789", "webhook-token": "old-webhook-token-0123456789",
		"api-token": "old-api-token-0123456789"}
	stub := `(dict "data" (dict`
	for k, v := range old {
		stub += fmt.Sprintf(" %q %q", k, base64.StdEncoding.EncodeToString([]byte(v)))
	}
	stub += "))"
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), call, stub, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	extra := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(extra, []byte("apiTokens: [{name: ci}, {name: new}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := render(t, dir, "-f", values("values-identity.yaml"), "-f", extra)
	if err != nil {
		t.Fatal(err)
	}
	var sec corev1.Secret
	m.must(t, "Secret", fullname).decode(t, &sec)
	for k, v := range old {
		if got := string(sec.Data[k]); got != v {
			t.Errorf("Secret %s = %q after an upgrade, want the old %q", k, got, v)
		}
	}
	if n := sec.Data["api-token-new"]; len(n) < 32 || slices.Contains([]string{old["api-token-ci"], old["api-token"]}, string(n)) {
		t.Errorf("Secret api-token-new = %q: want a new generated token", n)
	}
}

// lookupUser is lookup for paths whose last segments may hold dots: web.users.NAME.KEY with a
// user name such as bob@example.com.
func lookupUser(cfg map[string]any, path string) string {
	const users = "web.users."
	rest, ok := strings.CutPrefix(path, users)
	if !ok {
		return lookup(cfg, path)
	}
	i := strings.LastIndex(rest, ".")
	if i < 0 || !strings.Contains(rest[:i], ".") {
		return lookup(cfg, path)
	}
	u, ok := cfg["web"].(map[string]any)["users"].(map[string]any)[rest[:i]].(map[string]any)
	if !ok {
		return "<missing>"
	}
	return fmt.Sprint(u[rest[i+1:]])
}

// loadRendered lays out /etc/responder as the pod would see it, from the StatefulSet's projected
// config volume: the chart's ConfigMap and Secret items, and the user's Secrets and ConfigMaps
// (secrets and configMaps by name, then key). responder's config.Parse then loads responder.yml
// there, reading every *_file it names; a file the config names but the pod lacks fails it.
func loadRendered(t *testing.T, m manifests, secrets map[string]map[string][]byte, configMaps map[string]map[string]string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	var sts appsv1.StatefulSet
	m.must(t, "StatefulSet", fullname).decode(t, &sts)
	chartCM := map[string]string{}
	if cm, ok := m.find("ConfigMap", fullname); ok {
		for k, v := range cm.Raw["data"].(map[string]any) {
			chartCM[k] = fmt.Sprint(v)
		}
	}
	var chartSecret corev1.Secret
	if s, ok := m.find("Secret", fullname); ok {
		s.decode(t, &chartSecret)
	}
	write := func(path string, b []byte, ok bool, what string) {
		if !ok {
			t.Fatalf("the pod would lack %s: %s", path, what)
		}
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name != "config" || v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			switch {
			case s.ConfigMap != nil:
				for _, it := range s.ConfigMap.Items {
					var val string
					var ok bool
					if s.ConfigMap.Name == fullname {
						val, ok = chartCM[it.Key]
					} else {
						val, ok = configMaps[s.ConfigMap.Name][it.Key]
					}
					write(it.Path, []byte(val), ok, "no key "+it.Key+" in the ConfigMap "+s.ConfigMap.Name)
				}
			case s.Secret != nil:
				for _, it := range s.Secret.Items {
					data := secrets[s.Secret.Name]
					if s.Secret.Name == fullname {
						data = chartSecret.Data
					}
					val, ok := data[it.Key]
					write(it.Path, val, ok, "no key "+it.Key+" in the Secret "+s.Secret.Name)
				}
			}
		}
	}
	text, err := os.ReadFile(filepath.Join(dir, "responder.yml"))
	if err != nil {
		t.Fatal(err)
	}
	yml := strings.ReplaceAll(string(text), "/etc/responder/", dir+"/")
	c, err := config.Parse([]byte(yml), filepath.Join(dir, "responder.yml"), config.WithGetenv(func(string) string { return "" }))
	if err != nil {
		t.Fatalf("responder rejects the rendered config: %v\n%s", err, yml)
	}
	return c
}

// testCAPEM returns a self-signed CA certificate in PEM.
func testCAPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "responder test SMTP CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestHAConfigLoads: the HA values render a config responder loads as the pod would see it: the
// bus credentials and TLS from the Secret, 3 stream replicas, and one bus signing key (generated,
// 64 characters) that every replica mounts from the same Secret.
func TestHAConfigLoads(t *testing.T) {
	t.Parallel()
	ca := filepath.Join(t.TempDir(), "ca.yaml")
	if err := os.WriteFile(ca, []byte("nats:\n  tls:\n    ca: |\n      "+strings.ReplaceAll(strings.TrimSpace(testCAPEM(t)), "\n", "\n      ")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := mustRender(t, "-f", values("values-ha.yaml"), "-f", ca)
	c := loadRendered(t, m, nil, nil)
	if c.NATS.User != "responder" || c.Bus.Replicas != 3 || len(c.Bus.SigningKey) != 64 || !strings.HasSuffix(c.Bus.SigningKeyFile, "bus-signing-key") {
		t.Fatalf("nats %+v, bus replicas %d, signing key %d bytes from %q", c.NATS, c.Bus.Replicas, len(c.Bus.SigningKey), c.Bus.SigningKeyFile)
	}
}
