package httpreq

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

const secretValue = "s3cr3t-Value-42"

// secretFiles writes a config with the named secret "token" and returns its resolver (the one app
// gives the handler) and the secret's file, for rotation.
func secretFiles(t *testing.T) (*config.SecretFiles, string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte(secretValue+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte("secrets: {token: {file: token}}\n"), filepath.Join(dir, "responder.yml"),
		config.WithGetenv(func(string) string { return "" }))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.SecretFiles(), file
}

// rawSink records the raw request line and headers of what it receives, and answers with
// status and an echo of the Authorization header (a downstream that echoes a secret back).
type rawSink struct {
	*httptest.Server
	mu     sync.Mutex
	uris   []string
	auth   []string
	bodies []string
}

func newRawSink(t *testing.T, status int) *rawSink {
	s := &rawSink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.uris, s.auth, s.bodies = append(s.uris, r.RequestURI), append(s.auth, r.Header.Get("Authorization")), append(s.bodies, string(b))
		s.mu.Unlock()
		w.WriteHeader(status)
		_, _ = io.WriteString(w, "you sent "+r.Header.Get("Authorization")+" and "+string(b))
	}))
	t.Cleanup(s.Close)
	return s
}

// got returns the request URIs, Authorization headers and bodies received so far.
func (s *rawSink) got() (uris, auth, bodies []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.uris...), append([]string(nil), s.auth...), append([]string(nil), s.bodies...)
}

func (s *rawSink) host() string { return strings.TrimPrefix(s.URL, "http://") }

func captureLog(o *Options) *bytes.Buffer {
	var buf bytes.Buffer
	o.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return &buf
}

// A secret reference is resolved when the request is sent (from the file as it is then), and the
// value never shows in the target, the result, an error or the logs, even when the downstream
// echoes it back.
func TestSecretResolvedAtCallTimeAndScrubbed(t *testing.T) {
	secrets, file := secretFiles(t)
	ok, bad := newRawSink(t, 200), newRawSink(t, 400)
	o := testOptions(ok.host(), bad.host())
	o.Secrets = secrets
	logs := captureLog(&o)
	h := New(o)
	params := func(s *rawSink) handlers.Params {
		return handlers.Params{"url": s.URL + `/hook?t={{ secret("token") }}`,
			"headers": map[string]any{"Authorization": `Bearer {{ secret("token") }}`},
			"body":    `{"token": "{{ secret("token") }}"}`}
	}
	a := mustBuild(t, h, params(ok))
	res, err := a.Do(t.Context(), keyInv("1"), alert.Alert{})
	if err != nil {
		t.Fatal(err)
	}
	uris, auth, bodies := ok.got()
	if auth[0] != "Bearer "+secretValue {
		t.Errorf("the sink got Authorization %q, want the secret's value", auth[0])
	}
	if uris[0] != "/hook?t="+secretValue || bodies[0] != `{"token": "`+secretValue+`"}` {
		t.Errorf("the sink got %q with body %q", uris[0], bodies[0])
	}
	if strings.Contains(res.Detail, secretValue) || !strings.Contains(res.Detail, "Bearer <secret token>") {
		t.Errorf("result detail %q: want the echoed secret scrubbed", res.Detail)
	}

	_, err = mustBuild(t, h, params(bad)).Do(t.Context(), keyInv("2"), alert.Alert{})
	if err == nil || handlers.ReasonOf(err) != vocab.ReasonClientError {
		t.Fatalf("err = %v (reason %q), want client_error", err, handlers.ReasonOf(err))
	}
	if strings.Contains(err.Error(), secretValue) || !strings.Contains(err.Error(), "<secret token>") {
		t.Errorf("error %q: want the echoed secret scrubbed", err)
	}
	for _, s := range []string{a.Target(), logs.String()} {
		if strings.Contains(s, secretValue) {
			t.Errorf("%q holds the secret", s)
		}
	}

	// Rotation: the file is read again for the next request.
	if err := os.WriteFile(file, []byte("rotated-"+secretValue), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Do(t.Context(), keyInv("3"), alert.Alert{}); err != nil {
		t.Fatal(err)
	}
	if _, auth, _ := ok.got(); auth[len(auth)-1] != "Bearer rotated-"+secretValue {
		t.Errorf("after rotation the sink got %q", auth[len(auth)-1])
	}
}

// A secret that cannot be read fails the action with bad_param, naming the secret only.
func TestSecretUnreadable(t *testing.T) {
	secrets, file := secretFiles(t)
	s := newRawSink(t, 200)
	o := testOptions(s.host())
	o.Secrets = secrets
	a := mustBuild(t, New(o), handlers.Params{"url": s.URL, "headers": map[string]any{"X-Token": `{{ secret("token") }}`}})
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	_, err := a.Do(t.Context(), keyInv("1"), alert.Alert{})
	if handlers.ReasonOf(err) != vocab.ReasonBadParam || !strings.Contains(err.Error(), `secret "token"`) {
		t.Fatalf("err = %v, want bad_param naming the secret", err)
	}
	if uris, _, _ := s.got(); len(uris) != 0 {
		t.Errorf("the sink got %d requests", len(uris))
	}
}

// Targets, errors and logs never carry a URL's query or userinfo, nor the path of a
// secret-bearing host (Slack, Teams and Discord incoming webhooks).
func TestURLRedactedInTargetsErrorsAndLogs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens: every request fails in the transport
	o := testOptions(closed, "hooks.slack.com", "airflow.internal:8080", "hooks.example.org")
	o.Retries = -1
	o.SecretPathHosts = []string{"hooks.example.org"}
	logs := captureLog(&o)
	h := New(o)

	for _, tc := range []struct{ url, target string }{
		{"https://hooks.slack.com/services/T000/B000/XXXXSECRETPATH", "POST hooks.slack.com" + handlers.RedactedPath},
		{"https://hooks.example.org/XXXXSECRETPATH/x", "POST hooks.example.org" + handlers.RedactedPath},
		{"http://airflow.internal:8080/api?token=XXXXSECRETQUERY", "POST airflow.internal:8080/api"},
	} {
		a := mustBuild(t, h, handlers.Params{"url": tc.url})
		if a.Target() != tc.target {
			t.Errorf("Target(%s) = %q, want %q", tc.url, a.Target(), tc.target)
		}
	}
	var errs []string
	for _, u := range []string{
		"http://evil.example.com/x?token=XXXXSECRETQUERY",
		"http://user:XXXXSECRETPASS@airflow.internal:8080/x",
		"https://hooks.slack.com/services/../XXXXSECRETPATH",
	} {
		_, err := h.Build(handlers.Params{"url": u})
		if err == nil {
			t.Fatalf("Build(%s) accepted", u)
		}
		errs = append(errs, err.Error())
	}
	_, err = mustBuild(t, h, handlers.Params{"url": "http://" + closed + "/x?token=XXXXSECRETQUERY"}).Do(t.Context(), keyInv("1"), alert.Alert{})
	if err == nil {
		t.Fatal("a request to a closed port succeeded")
	}
	errs = append(errs, err.Error(), logs.String())
	for _, s := range errs {
		if strings.Contains(s, "XXXXSECRET") {
			t.Errorf("%q holds a secret", s)
		}
	}
	if !strings.Contains(err.Error(), closed+"/x") {
		t.Errorf("transport error %q no longer says where it went", err)
	}
}

// A label rendered into the path arrives escaped: it cannot climb out of its segment, add a query
// or cut the URL with a fragment.
func TestEscapedPathReachesTheSink(t *testing.T) {
	s := newRawSink(t, 200)
	a := mustBuild(t, New(testOptions(s.host())), handlers.Params{
		"url": s.URL + "/api/v1/dags/x%2F..%2FclearTaskInstances%3Fdry_run=false%23/dagRuns"})
	if _, err := a.Do(t.Context(), keyInv("1"), alert.Alert{}); err != nil {
		t.Fatal(err)
	}
	if uris, _, _ := s.got(); uris[0] != "/api/v1/dags/x%2F..%2FclearTaskInstances%3Fdry_run=false%23/dagRuns" {
		t.Errorf("the sink got %q", uris[0])
	}
	for _, u := range []string{"/api/%2e%2e/admin", "/api/..%5Cadmin", "/api/..\\admin", "/api/../admin"} {
		if _, err := New(testOptions(s.host())).Build(handlers.Params{"url": s.URL + u}); err == nil {
			t.Errorf("Build(%s) accepted a .. segment", u)
		}
	}
}
