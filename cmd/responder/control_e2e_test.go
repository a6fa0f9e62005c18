package main_test

// End-to-end tests of the control features of the built binary (issue 3): the TLS listener
// configured through --web.config.file, and lease expiry across two replicas sharing one external
// JetStream and one database.

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/responder-sre/responder/bus/bustest"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

// testCA writes a CA and a server certificate for 127.0.0.1 signed by it into dir (ca.crt,
// server.crt, server.key) and returns a pool trusting only the CA.
func testCA(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "responder e2e test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "responder"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"ca.crt":     {Type: "CERTIFICATE", Bytes: caDER},
		"server.crt": {Type: "CERTIFICATE", Bytes: srvDER},
		"server.key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}

// startResponder starts `responder serve` with the given extra flags and returns it without
// waiting for readiness (the caller polls the way its listener needs).
func startResponder(t *testing.T, dir, storage, base, addr string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "--config.file=" + filepath.Join(dir, "responder.yml"),
		"--web.listen-address=" + addr, "--storage.path=" + storage, "--log.level=info"}, args...)...)
	p := &proc{cmd: cmd, base: base, log: &bytes.Buffer{}, mu: &sync.Mutex{}}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}
		pw.Close()
		if t.Failed() {
			p.mu.Lock()
			t.Logf("responder (pid %d) log:\n%s", cmd.Process.Pid, p.log.String())
			p.mu.Unlock()
		}
	})
	return p
}

func TestTLSListenerWithTestCA(t *testing.T) {
	dir := setup(t, newSink(t, 0), pgtest.NewDatabase(t), "")
	// The certificates and the web config live in their own directory: relative paths in the web
	// config resolve against the web config file's directory, not the working directory.
	webDir := t.TempDir()
	pool := testCA(t, webDir)
	webConfig := filepath.Join(webDir, "web.yml")
	if err := os.WriteFile(webConfig, []byte("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	p := startResponder(t, dir, t.TempDir(), "https://"+addr, addr, "--web.config.file="+webConfig)

	trusting := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(c *http.Client, url, token string) (int, error) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	testwait.Until(t, 60*time.Second, "responder https /readyz", func() bool {
		if p.cmd.ProcessState != nil {
			t.Fatalf("responder exited: %v", p.cmd.ProcessState)
		}
		code, err := get(trusting, p.base+"/readyz", "")
		return err == nil && code == 200
	})

	t.Run("plain HTTP on the TLS port gets no 200", func(t *testing.T) {
		code, err := get(&http.Client{Timeout: 5 * time.Second}, "http://"+addr+"/readyz", "")
		if err == nil && code == 200 {
			t.Fatal("plain HTTP /readyz answered 200 on the TLS listener")
		}
		t.Logf("plain HTTP: code %d, err %v", code, err)
	})
	t.Run("a client that does not trust the CA refuses the certificate", func(t *testing.T) {
		untrusting := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x509.NewCertPool()}}}
		_, err := get(untrusting, p.base+"/readyz", "")
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Fatalf("err = %v, want a certificate signed by unknown authority", err)
		}
	})
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"status without a token", "", 401},
		{"status with a wrong token", "not-" + adminToken, 401},
		{"status with the admin token", adminToken, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, err := get(trusting, p.base+"/api/v1/status", tc.token)
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.want {
				t.Fatalf("GET /api/v1/status over TLS: %d, want %d", code, tc.want)
			}
		})
	}
	t.Run("401s are counted", func(t *testing.T) {
		resp, err := trusting.Get(p.base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), "\nresponder_api_unauthorized_total 2\n") {
			t.Fatalf("metrics lack responder_api_unauthorized_total 2:\n%s", grepLines(string(b), "unauthorized"))
		}
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// blockingSink holds every call to the path block until release is closed (or the caller goes
// away) and answers every other call at once; it counts calls per path on arrival.
type blockingSink struct {
	*httptest.Server
	release chan struct{}
	mu      sync.Mutex
	calls   map[string]int
}

func newBlockingSink(t *testing.T, block string) *blockingSink {
	s := &blockingSink{release: make(chan struct{}), calls: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls[r.URL.Path]++
		s.mu.Unlock()
		if r.URL.Path == block {
			select {
			case <-s.release:
			case <-r.Context().Done():
			}
		}
	}))
	// Cleanups run last-in first-out: release the held handlers before the server closes.
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(s.release) })
	return s
}

func (s *blockingSink) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[path]
}

type ctlAction struct {
	ID     int64          `json:"id"`
	Phase  string         `json:"phase"`
	State  string         `json:"state"`
	Reason string         `json:"reason"`
	Owner  string         `json:"owner"`
	Params map[string]any `json:"params"`
}

func ctlActions(t *testing.T, p *proc) []ctlAction {
	t.Helper()
	var l struct {
		Items      []ctlAction `json:"items"`
		NextCursor string      `json:"next_cursor"`
	}
	p.get(t, "/api/v1/actions?limit=1000", &l)
	if l.NextCursor != "" {
		t.Fatalf("more than 1000 actions")
	}
	return l.Items
}

// ownerPID extracts the pid from an owner string <host>-<pid>-<random> (the host may hold dashes).
func ownerPID(owner string) string {
	parts := strings.Split(owner, "-")
	if len(parts) < 3 {
		return ""
	}
	return parts[len(parts)-2]
}

func TestTwoReplicasKillOneMidActionOtherMarksUnknownOnce(t *testing.T) {
	nats := bustest.Start(t)
	const restartPath, escalatePath = "/hooks/restart/p1", "/hooks/escalate/p1"
	s := newBlockingSink(t, restartPath)
	dir := setup(t, &sink{Server: s.Server}, pgtest.NewDatabase(t),
		"nats:\n  url: "+nats.URL()+"\nbus:\n  replicas: 1\nsafety:\n  lease_duration: 2s\n")
	host := s.Listener.Addr().String()
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), []byte(fmt.Sprintf(`rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    actions:
      - handler: http.request
        params: {url: "http://%[1]s/hooks/restart/{{ alert.labels.pod }}"}
    escalate:
      - handler: http.request
        params: {url: "http://%[1]s/hooks/escalate/{{ alert.labels.pod }}", class: notify}
`, host)), 0o644); err != nil {
		t.Fatal(err)
	}
	a := serve(t, dir, t.TempDir(), freePort(t))
	b := serve(t, dir, t.TempDir(), freePort(t))

	post := func(p *proc, pod string) {
		t.Helper()
		starts := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
		body, _ := json.Marshal(map[string]any{"version": "4", "status": "firing", "receiver": "responder", "groupKey": pod,
			"alerts": []map[string]any{{"status": "firing", "startsAt": starts, "endsAt": time.Time{},
				"labels": map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": pod}}}})
		req, _ := http.NewRequest(http.MethodPost, p.base+"/webhook/alertmanager", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+hookToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("webhook for %s: %d", pod, resp.StatusCode)
		}
	}
	post(a, "p1")

	testwait.Until(t, 15*time.Second, "the restart call to reach the sink", func() bool { return s.count(restartPath) == 1 })
	var running ctlAction
	testwait.Until(t, 5*time.Second, "a running action with an owner", func() bool {
		for _, x := range ctlActions(t, a) {
			if x.State == "running" && x.Owner != "" {
				running = x
				return true
			}
		}
		return false
	})
	victim, survivor, name := a, b, "A (the one that received the webhook)"
	switch pid := ownerPID(running.Owner); pid {
	case fmt.Sprint(a.cmd.Process.Pid):
	case fmt.Sprint(b.cmd.Process.Pid):
		victim, survivor, name = b, a, "B (took the message from the shared consumer)"
	default:
		t.Fatalf("owner %q names neither replica (pids %d, %d)", running.Owner, a.cmd.Process.Pid, b.cmd.Process.Pid)
	}
	t.Logf("action %d runs on replica %s, pid %d (owner %s); killing it", running.ID, name, victim.cmd.Process.Pid, running.Owner)
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = victim.cmd.Wait()

	testwait.Until(t, 30*time.Second, "the action to become unknown and its escalation to succeed", func() bool {
		var unknown, escalated bool
		for _, x := range ctlActions(t, survivor) {
			switch {
			case x.ID == running.ID:
				unknown = x.State == "unknown"
			case x.Phase == "escalate":
				escalated = x.State == "succeeded"
			}
		}
		return unknown && escalated
	})
	// A barrier instead of a sleep: an alert for another pod whose action succeeds proves the
	// survivor ran further executor passes (each expires leases first) after the escalation.
	post(survivor, "p2")
	testwait.Until(t, 15*time.Second, "the p2 action to succeed", func() bool {
		for _, x := range ctlActions(t, survivor) {
			if x.State == "succeeded" && strings.HasSuffix(fmt.Sprint(x.Params["url"]), "/p2") {
				return true
			}
		}
		return false
	})

	acts := ctlActions(t, survivor)
	var escalations int
	for _, x := range acts {
		switch {
		case x.ID == running.ID:
			if x.State != "unknown" || x.Reason != "lease_expired" {
				t.Errorf("killed action: state %q reason %q, want unknown/lease_expired", x.State, x.Reason)
			}
		case x.Phase == "escalate":
			escalations++
			if !strings.HasSuffix(fmt.Sprint(x.Params["url"]), escalatePath) {
				t.Errorf("escalation %d for %v, want p1's", x.ID, x.Params["url"])
			}
			if x.State != "succeeded" {
				t.Errorf("escalation %d: state %q reason %q", x.ID, x.State, x.Reason)
			}
		case strings.HasSuffix(fmt.Sprint(x.Params["url"]), "/hooks/restart/p2"):
			if x.State != "succeeded" {
				t.Errorf("p2 action: state %q reason %q", x.State, x.Reason)
			}
		default:
			t.Errorf("unexpected action %+v", x)
		}
	}
	if escalations != 1 {
		t.Errorf("escalate actions = %d, want exactly 1: %+v", escalations, acts)
	}
	if n := s.count(escalatePath); n != 1 {
		t.Errorf("escalate calls at the sink = %d, want 1", n)
	}
	if n := s.count(restartPath); n != 1 {
		t.Errorf("restart calls at the sink = %d, want 1 (the killed one; nothing re-runs it)", n)
	}
}
