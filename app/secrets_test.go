package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/bus/bustest"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

const appSecret = "s3cr3t-Value-42"

// lockedBuffer collects log lines written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// rawCall is what the echoing sink received.
type rawCall struct{ uri, auth, body string }

// echoSink answers 400 and echoes the Authorization header and the body back, as a confused
// downstream might: the action fails and its error would carry the secret.
func echoSink(t *testing.T) (*sink, func() []rawCall) {
	var mu sync.Mutex
	var calls []rawCall
	s := &sink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls = append(calls, rawCall{uri: r.RequestURI, auth: r.Header.Get("Authorization"), body: string(b)})
		mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "bad token %s in %s", r.Header.Get("Authorization"), b)
	}))
	t.Cleanup(s.Close)
	return s, func() []rawCall {
		mu.Lock()
		defer mu.Unlock()
		return append([]rawCall(nil), calls...)
	}
}

func dagPayload(dag string) []byte {
	b, _ := json.Marshal(map[string]any{"version": "4", "groupKey": "{}:{alertname=\"DagStuck\"}", "status": "firing",
		"receiver": "responder", "groupLabels": map[string]string{}, "commonLabels": map[string]string{},
		"commonAnnotations": map[string]string{}, "externalURL": "http://alertmanager:9093",
		"alerts": []map[string]any{{"status": "firing", "startsAt": time.Now().Add(-time.Minute),
			"labels": map[string]string{"alertname": "DagStuck", "dag": dag}, "annotations": map[string]string{}}}})
	return b
}

// A rule's secret("token") reaches the downstream and nothing else: not the stored params, the
// API, the audit trail, the logs or the error of the failed call. A label rendered into the URL
// path arrives escaped. A nats.url with credentials is not logged either, nor the bus signing key.
func TestSecretsNeverLeaveTheirFiles(t *testing.T) {
	secretDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(secretDir, "token"), []byte(appSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	nats := bustest.Start(t) // without authorization it accepts any credentials
	s, calls := echoSink(t)
	var logs lockedBuffer
	dbURL := pgtest.NewDatabase(t)
	f := startApp(t, fixtureOpts{
		natsURL: strings.Replace(nats.URL(), "nats://", "nats://responder:XXXXNATSPASS@", 1),
		dbURL:   dbURL, sink: s, logger: slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}),
		extra: fmt.Sprintf("secrets: {token: {file: %q}}\n", filepath.Join(secretDir, "token")),
		rules: func(s *sink) string {
			return fmt.Sprintf(`
rules:
  - name: retrigger-dag
    when: alert.name == "DagStuck"
    actions:
      - handler: http.request
        params:
          url: "http://%s/api/v1/dags/{{ alert.labels.dag }}/dagRuns"
          headers: {Authorization: 'Bearer {{ secret("token") }}'}
          body: '{"dag": "{{ alert.labels.dag }}", "token": "{{ secret("token") }}"}'
`, s.HostPort())
		},
	})
	const dag = "x/../clearTaskInstances?dry_run=false#"
	if code := f.post(dagPayload(dag)); code != http.StatusOK {
		t.Fatalf("webhook answered %d", code)
	}
	testwait.Until(t, 30*time.Second, "the action fails", func() bool { return countState(f.actions(""), "failed") == 1 })

	got := calls()
	if len(got) != 1 {
		t.Fatalf("the sink got %d calls, want 1", len(got))
	}
	if got[0].auth != "Bearer "+appSecret || !strings.Contains(got[0].body, `"token": "`+appSecret+`"`) {
		t.Errorf("the sink got Authorization %q and body %q, want the secret's value in both", got[0].auth, got[0].body)
	}
	if want := "/api/v1/dags/x%2F..%2FclearTaskInstances%3Fdry_run=false%23/dagRuns"; got[0].uri != want {
		t.Errorf("the sink got %q, want the label escaped into one segment: %q", got[0].uri, want)
	}

	seen := map[string]string{"logs": logs.String()}
	for _, path := range []string{"/api/v1/actions", "/api/v1/audit", "/api/v1/incidents", "/api/v1/incidents/1"} {
		_, b := f.do(http.MethodGet, path, adminToken, nil)
		seen["GET "+path] = string(b)
	}
	seen["stored rows"] = dumpRows(t, dbURL, "actions", "audit", "incidents")
	for where, text := range seen {
		for _, leak := range []string{appSecret, "XXXXNATSPASS", busSigningKey} {
			if strings.Contains(text, leak) {
				t.Errorf("%s holds %q:\n%s", where, leak, text)
			}
		}
	}
	acts := f.actions("")
	params, _ := acts[0]["params"].(map[string]any)
	if body, _ := params["body"].(string); !strings.Contains(body, `"token": "{{ secret("token") }}"`) {
		t.Errorf("the API shows body %q, want the reference the stored params hold", body)
	}
	if e, _ := acts[0]["error"].(string); !strings.Contains(e, "bad token Bearer <secret token>") {
		t.Errorf("the action's error %q does not show the echoed secret as <secret token>", e)
	}
}

// dumpRows returns every row of the tables as text.
func dumpRows(t *testing.T, dbURL string, tables ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dbURL)
	must(t, err)
	defer c.Close(context.WithoutCancel(ctx))
	var sb strings.Builder
	for _, tbl := range tables {
		rows, err := c.Query(ctx, "SELECT t::text FROM "+tbl+" t")
		must(t, err)
		for rows.Next() {
			var s string
			must(t, rows.Scan(&s))
			sb.WriteString(tbl + ": " + s + "\n")
		}
		must(t, rows.Err())
	}
	return sb.String()
}
