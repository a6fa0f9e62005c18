package ruletest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rules test knows the secret names from --config.file, and the rendered params it compares hold
// the reference, never the value.
func TestSecretReferences(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"token": "s3cr3t-Value-42\n",
		"conf.yml": "secrets: {token: {file: token}}\n" +
			"handlers: {http: {allowed_hosts: [airflow.internal:8080]}}\n",
		"rules.yml": `rules:
  - name: retrigger
    when: alert.name == "Stale"
    actions:
      - handler: http.request
        params:
          url: "http://airflow.internal:8080/api/v1/dags/{{ alert.labels.dag }}/dagRuns"
          headers: {Authorization: 'Bearer {{ secret("token") }}'}
`,
		"secret_test.yml": `rule_files: [rules.yml]
now: 2026-11-22T10:00:00Z
tests:
  - name: the params keep the reference
    input_alerts:
      - labels: {alertname: Stale, dag: "a/b"}
    exp_actions:
      - rule: retrigger
        handler: http.request
        params:
          url: http://airflow.internal:8080/api/v1/dags/a%2Fb/dagRuns
          headers: {Authorization: 'Bearer {{ secret("token") }}'}
`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs := run(t, filepath.Join(dir, "conf.yml"), filepath.Join(dir, "secret_test.yml"))
	if code != 0 || strings.Contains(out+errs, "s3cr3t") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = run(t, "testdata/conf.yml", filepath.Join(dir, "secret_test.yml"))
	if code != 1 || !strings.Contains(out, `rules.yml:8: rule "retrigger": actions: http.request: param headers.Authorization: unknown secret "token"`) {
		t.Fatalf("without the secret in the config: exit %d\n%s", code, out)
	}
}
