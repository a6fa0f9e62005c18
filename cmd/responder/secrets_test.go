package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rules check learns the secret names from --config.file: a known name passes, an unknown one
// fails with file:line.
func TestRulesCheckKnowsSecretNames(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("token", "s3cr3t\n")
	cfg := write("responder.yml", "secrets: {token: {file: token}}\nhandlers: {http: {allowed_hosts: [airflow.internal]}}\n")
	rule := func(name string) string {
		return "rules:\n  - name: r\n    when: alert.name == \"X\"\n    actions:\n      - handler: http.request\n        params:\n" +
			"          url: http://airflow.internal/run\n          headers: {Authorization: 'Bearer {{ secret(\"" + name + "\") }}'}\n"
	}
	good, bad := write("good.yml", rule("token")), write("bad.yml", rule("tokn"))

	if out, code := run(t, "rules", "check", "--config.file="+cfg, good); code != 0 || !strings.Contains(out, "SUCCESS: 1 rules") {
		t.Errorf("rules check of a known secret: exit %d:\n%s", code, out)
	}
	out, code := run(t, "rules", "check", "--config.file="+cfg, bad)
	if code != 1 || !strings.Contains(out, bad+`:8: rule "r": actions: http.request: param headers.Authorization: unknown secret "tokn" (secrets: token)`) {
		t.Errorf("rules check of an unknown secret: exit %d:\n%s", code, out)
	}
	if out, code := run(t, "rules", "check", good); code != 1 || !strings.Contains(out, `unknown secret "token"`) {
		t.Errorf("rules check without a config: exit %d:\n%s", code, out)
	}
}
