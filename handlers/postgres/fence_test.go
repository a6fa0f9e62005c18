package postgres

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// fenceAction builds postgres.promote for a streaming cluster whose fence URL is fenceURL and whose
// Authorization header is a named secret, as serve wires it (config.Parse, cfg.SecretFiles()).
func fenceAction(t *testing.T, fenceURL, secret string) *PromoteAction {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fence-token"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `
secrets: {fence: {file: fence-token}}
handlers:
  postgres:
    clusters:
      legacy:
        primary: {dsn: "postgres://postgres@127.0.0.1:1/postgres"}
        standbys: [{name: standby-1, dsn: "postgres://postgres@127.0.0.1:2/postgres"}]
        fence:
          url: "` + fenceURL + `"
          headers: {Authorization: 'Bearer {{ secret("fence") }}'}
`
	cfg, err := config.Parse([]byte(src), filepath.Join(dir, "responder.yml"), config.WithGetenv(func(string) string { return "" }))
	if err != nil {
		t.Fatal(err)
	}
	hs, err := New(cfg.Handlers.Postgres, Options{Secrets: cfg.SecretFiles()})
	if err != nil {
		t.Fatal(err)
	}
	act, err := handlerNamed(t, hs, PromoteName).Build(handlers.Params{"cluster": "legacy"})
	if err != nil {
		t.Fatal(err)
	}
	return act.(*PromoteAction)
}

// A fence header holding {{ secret("NAME") }} is sent with the secret's value, read when the fence
// is called; errors show neither the value nor the fence URL's query or userinfo.
func TestFenceHeaderSecret(t *testing.T) {
	const secret = "fence-s3cr3t-77"
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	a := fenceAction(t, srv.URL+"/fence?token=XXXXQUERY", secret)
	if err := a.fenceHTTP(t.Context(), a.cfg.Fence, "responder-action-1"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(got) != 1 || got[0] != "Bearer "+secret {
		t.Errorf("the fence got Authorization %q, want the secret's value", got)
	}
	mu.Unlock()
	if v := a.cfg.Fence.Headers["Authorization"].Value(); strings.Contains(v, secret) {
		t.Errorf("the configured header holds the value %q; want the reference", v)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	a = fenceAction(t, "http://admin:XXXXPASS@"+closed+"/fence?token=XXXXQUERY", secret)
	err = a.fenceHTTP(t.Context(), a.cfg.Fence, "responder-action-1")
	if err == nil || handlers.ReasonOf(err) != vocab.ReasonServerError {
		t.Fatalf("err = %v, want server_error", err)
	}
	for _, s := range []string{"XXXX", secret} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q holds %q", err, s)
		}
	}
	if !strings.Contains(err.Error(), closed+"/fence") {
		t.Errorf("error %q does not say which fence failed", err)
	}
}
