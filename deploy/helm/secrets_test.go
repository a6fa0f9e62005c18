package helm_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/responder-sre/responder/config"
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
