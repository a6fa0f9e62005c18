package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNamedSecrets(t *testing.T) {
	cfg := mustLoad(t, "conf.secrets.yml")
	s := cfg.SecretFiles()
	if got := s.Names(); !cmp.Equal(got, []string{"airflow_token"}) {
		t.Errorf("Names() = %q", got)
	}
	v, err := s.Secret(context.Background(), "airflow_token")
	if err != nil || v != "SECRET-named-token" {
		t.Errorf("Secret(airflow_token) = %q, %v", v, err)
	}
	if _, err := s.Secret(context.Background(), "nope"); !errors.Is(err, ErrUnknownSecret) {
		t.Errorf("Secret(nope) = %v, want ErrUnknownSecret", err)
	}
	// The fence header keeps the reference: the value is read when the fence is called.
	if h := cfg.Handlers.Postgres.Clusters["legacy"].Fence.Headers["Authorization"].Value(); h != `Bearer {{ secret("airflow_token") }}` {
		t.Errorf("fence header = %q", h)
	}
	if got := cfg.Handlers.HTTP.SecretPathHosts; !cmp.Equal(got, []string{"hooks.example.org", "*.hooks.example.net"}) {
		t.Errorf("secret_path_hosts = %q", got)
	}

	// Rotation: the file is read at each call.
	dir := t.TempDir()
	file := filepath.Join(dir, "tok")
	if err := os.WriteFile(file, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = Parse([]byte("secrets: {tok: {file: tok}}\n"), filepath.Join(dir, "r.yml"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := cfg.SecretFiles().Secret(context.Background(), "tok"); v != "two" || err != nil {
		t.Errorf("after rotation Secret(tok) = %q, %v", v, err)
	}
}

func TestNamedSecretsErrors(t *testing.T) {
	_, err := load(t, "conf.bad-named-secrets.yml")
	if err == nil {
		t.Fatal("loaded")
	}
	for _, w := range []string{
		`conf.bad-named-secrets.yml:2: secrets.token.file: open `,
		`conf.bad-named-secrets.yml:3: secrets.bad name: secret name "bad name": want a letter or digit`,
		`conf.bad-named-secrets.yml:4: secrets.empty.file: `,
		`conf.bad-named-secrets.yml:5: secrets.nofile.file: a secret needs a file`,
		`conf.bad-named-secrets.yml:8: handlers.http.secret_path_hosts[0]: "hooks.example.org/path": want host or host:port`,
		`conf.bad-named-secrets.yml:17: handlers.postgres.clusters.legacy.fence.headers.Authorization: unknown secret "tokn" (secrets: bad name, empty, nofile, token)`,
		`conf.bad-named-secrets.yml:18: handlers.postgres.clusters.legacy.fence.headers.X-Other: only {{ secret("NAME") }} may be templated here`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error\n  %v\nlacks\n  %s", err, w)
		}
	}
}

func TestFindSecretRefs(t *testing.T) {
	s := `a {{ secret("one") }} b {{secret('two')}} c {{ secret(three) }} {{ secret("four") + "x" }} ` + SecretRef("five")
	var names []string
	for _, m := range FindSecretRefs(s) {
		names = append(names, m.Name)
		if got := FindSecretRefs(s[m.Start:m.End]); len(got) != 1 || got[0].Name != m.Name {
			t.Errorf("match %q does not stand alone", s[m.Start:m.End])
		}
	}
	if !cmp.Equal(names, []string{"one", "two", "five"}) {
		t.Errorf("names = %q", names)
	}
	if !ContainsSecretRef(map[string]any{"a": []any{1, SecretRef("x")}}) || ContainsSecretRef(map[string]any{"a": "{{ x }}"}) {
		t.Error("ContainsSecretRef is wrong")
	}
}
