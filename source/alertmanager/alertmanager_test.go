package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/bus"
	"github.com/responder-sre/responder/bus/bustest"
)

const (
	tokenA = "first-token"
	tokenB = "rotated-token"
)

// env is a webhook handler publishing to a real JetStream server.
type env struct {
	srv     *bustest.Server
	bus     *bus.Bus
	reg     *prometheus.Registry
	url     string
	mu      sync.Mutex
	rejects []*alert.InvalidError
	// rejected are the alerts passed to OnReject, in order.
	rejected []alert.Alert
}

func newEnv(t *testing.T, maxMsgs int64) *env {
	t.Helper()
	return newEnvWith(t, maxMsgs, nil)
}

// newEnvWith is newEnv with the handler's options changed by opts (nil: none) and the server's
// by srvOpts.
func newEnvWith(t *testing.T, maxMsgs int64, opts func(*Options), srvOpts ...bustest.Option) *env {
	t.Helper()
	e := &env{srv: bustest.Start(t, srvOpts...), reg: prometheus.NewRegistry()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{URL: e.srv.URL(), SigningKey: []byte("0123456789abcdef0123456789abcdef-test-key"), MaxMsgs: maxMsgs, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	e.bus = b
	o := Options{
		Tokens:       []string{tokenA, tokenB},
		MaxBodyBytes: 64 << 10,
		Emit: func(ctx context.Context, alerts []alert.Alert) error {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			return b.Publish(ctx, alerts)
		},
		OnReject: func(_ context.Context, a alert.Alert, err *alert.InvalidError) {
			e.mu.Lock()
			e.rejects = append(e.rejects, err)
			e.rejected = append(e.rejected, a)
			e.mu.Unlock()
		},
		Now:        func() time.Time { return fixedNow },
		Registerer: e.reg,
	}
	if opts != nil {
		opts(&o)
	}
	h, err := NewHandler(o)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	e.url = hs.URL + Path
	return e
}

// stored returns the alert groups in the stream, read with a separate client.
func (e *env) stored(t *testing.T) [][]alert.Alert {
	t.Helper()
	nc, err := nats.Connect(e.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, bus.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]alert.Alert
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var g []alert.Alert
		if err := json.Unmarshal(m.Data, &g); err != nil {
			t.Fatal(err)
		}
		out = append(out, g)
	}
	return out
}

func post(t *testing.T, url, method, token string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestStatusCodes(t *testing.T) {
	files := fixtures(t)
	valid := files["alertmanager-kube-pod-crashlooping.json"]
	mixed := files["alertmanager-invalid-alert-among-valid.json"]
	oversized := bytes.Replace(valid, []byte(`"summary": "Pod is crash looping."`),
		[]byte(`"summary": "`+strings.Repeat("x", 70<<10)+`"`), 1)
	allInvalid := `{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"job":"x"},"startsAt":"2026-11-21T00:00:00Z"}]}`

	for _, tc := range []struct {
		name       string
		method     string
		token      string
		body       func() io.Reader
		maxMsgs    int64
		before     func(t *testing.T, e *env)
		code       int
		bodyHas    string
		published  []int // alerts per stored message
		rejections int
	}{
		{name: "valid", token: tokenA, body: bytesOf(valid), code: 200, bodyHas: `"accepted":1,"rejected":0`, published: []int{1}},
		{name: "second rotation token", token: tokenB, body: bytesOf(valid), code: 200, published: []int{1}},
		{name: "one invalid alert among valid ones", token: tokenA, body: bytesOf(mixed), code: 200, bodyHas: `"accepted":2,"rejected":1`, published: []int{2}, rejections: 1},
		{name: "all alerts invalid", token: tokenA, body: stringOf(allInvalid), code: 200, bodyHas: `"accepted":0,"rejected":1`, rejections: 1},
		{name: "empty group", token: tokenA, body: stringOf(`{"version":"4","alerts":[]}`), code: 200, bodyHas: `"accepted":0`},
		{name: "undecodable", token: tokenA, body: stringOf(`{"version":"4","alerts":[`), code: 400, bodyHas: "undecodable"},
		{name: "version 3", token: tokenA, body: stringOf(strings.Replace(string(valid), `"version": "4"`, `"version": "3"`, 1)), code: 400, bodyHas: "version"},
		{name: "no token", body: bytesOf(valid), code: 401},
		{name: "wrong token", token: "first-token-but-longer", body: bytesOf(valid), code: 401},
		{name: "GET", method: http.MethodGet, token: tokenA, body: stringOf(""), code: 405},
		{name: "oversized", token: tokenA, body: bytesOf(oversized), code: 413},
		{name: "oversized chunked", token: tokenA, body: func() io.Reader { return io.MultiReader(bytes.NewReader(oversized)) }, code: 413},
		{name: "bus down", token: tokenA, body: bytesOf(valid), code: 503,
			before: func(t *testing.T, e *env) { e.srv.Shutdown() }},
		{name: "stream full", token: tokenA, body: bytesOf(valid), code: 503, maxMsgs: 1, published: []int{1},
			before: func(t *testing.T, e *env) {
				if err := e.bus.Publish(context.Background(), otherGroup()); err != nil {
					t.Fatal(err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.maxMsgs)
			if tc.before != nil {
				tc.before(t, e)
			}
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			resp, body := post(t, e.url, method, tc.token, tc.body())
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, tc.code, body)
			}
			if !strings.Contains(body, tc.bodyHas) {
				t.Errorf("body %s does not contain %s", body, tc.bodyHas)
			}
			switch tc.code {
			case 401:
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
				}
			case 405:
				if resp.Header.Get("Allow") != http.MethodPost {
					t.Errorf("Allow %q", resp.Header.Get("Allow"))
				}
			case 503:
				if resp.Header.Get("Retry-After") == "" {
					t.Errorf("503 without Retry-After")
				}
			}
			if got := testutil.ToFloat64(mustVec(t, e.reg, "responder_webhook_requests_total", fmt.Sprint(tc.code))); got != 1 {
				t.Errorf("webhook_requests_total{code=%d} = %v", tc.code, got)
			}
			e.mu.Lock()
			if len(e.rejects) != tc.rejections {
				t.Errorf("OnReject called %d times, want %d", len(e.rejects), tc.rejections)
			}
			e.mu.Unlock()

			if tc.name == "bus down" {
				e.srv.Restart()
			}
			groups := e.stored(t)
			if len(groups) != len(tc.published) {
				t.Fatalf("%d messages stored, want %d", len(groups), len(tc.published))
			}
			for i, g := range groups {
				if len(g) != tc.published[i] {
					t.Errorf("message %d has %d alerts, want %d", i, len(g), tc.published[i])
				}
				if tc.code != 200 {
					continue
				}
				for _, a := range g {
					if a.Source != alert.SourceAlertmanager || !a.ReceivedAt.Equal(fixedNow) || a.Name == "" || a.Fingerprint != alert.Fingerprint(a.Labels) {
						t.Errorf("stored alert %+v", a)
					}
				}
			}
		})
	}
}

func TestMetricsPreinitialised(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewHandler(Options{NoAuth: true, Emit: func(context.Context, []alert.Alert) error { return nil }, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"responder_webhook_requests_total":           len(codes),
		"responder_webhook_request_duration_seconds": len(codes),
		"responder_alerts_rejected_total":            len(alert.RejectReasons),
		"responder_alerts_received_total":            2,
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if n, ok := want[mf.GetName()]; ok {
			if len(mf.GetMetric()) != n {
				t.Errorf("%s has %d series, want %d", mf.GetName(), len(mf.GetMetric()), n)
			}
			delete(want, mf.GetName())
		}
	}
	if len(want) != 0 {
		t.Errorf("metrics missing: %v", want)
	}
}

func TestNewHandlerRequiresAuth(t *testing.T) {
	emit := func(context.Context, []alert.Alert) error { return nil }
	for _, o := range []Options{{Emit: emit}, {Emit: emit, Tokens: []string{""}}, {Tokens: []string{"t"}}} {
		if _, err := NewHandler(o); err == nil {
			t.Errorf("NewHandler(%+v) succeeded", o)
		}
	}
}

// TestSend posts a fixture with Send to a handler, the way `responder send` does.
func TestSend(t *testing.T) {
	var got []alert.Alert
	h, err := NewHandler(Options{Tokens: []string{tokenA}, Emit: func(_ context.Context, a []alert.Alert) error { got = a; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	defer hs.Close()
	body := fixtures(t)["alertmanager-group-of-5.json"]
	for _, tc := range []struct {
		url, token string
		code       int
	}{
		{hs.URL, tokenA, 200},
		{hs.URL + "/", tokenA, 200},
		{hs.URL + Path, tokenA, 200},
		{hs.URL, "nope", 401},
	} {
		got = nil
		code, resp, err := Send(context.Background(), hs.Client(), tc.url, tc.token, body)
		if err != nil || code != tc.code {
			t.Fatalf("Send(%s): %d %s %v; want %d", tc.url, code, resp, err, tc.code)
		}
		if tc.code == 200 && (len(got) != 5 || !strings.Contains(string(resp), `"accepted":5`)) {
			t.Fatalf("Send(%s): emitted %d alerts, answer %s", tc.url, len(got), resp)
		}
	}
	if _, _, err := Send(context.Background(), nil, "http://127.0.0.1:1", "", body); err == nil {
		t.Fatal("Send to a closed port succeeded")
	}
}

func mustVec(t *testing.T, reg *prometheus.Registry, name, code string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == code {
					return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return m.GetCounter().GetValue() })
				}
			}
		}
	}
	t.Fatalf("no series %s{code=%s}", name, code)
	return nil
}

func bytesOf(b []byte) func() io.Reader  { return func() io.Reader { return bytes.NewReader(b) } }
func stringOf(s string) func() io.Reader { return func() io.Reader { return strings.NewReader(s) } }

func otherGroup() []alert.Alert {
	labels := map[string]string{"alertname": "Other"}
	return []alert.Alert{{Name: "Other", Source: alert.SourceAlertmanager, Status: alert.StatusFiring, Labels: labels,
		StartsAt: fixedNow, Fingerprint: alert.Fingerprint(labels), ReceivedAt: fixedNow}}
}
