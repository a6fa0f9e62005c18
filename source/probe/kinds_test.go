package probe

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHTTP(t *testing.T) {
	var status atomic.Int32
	var delay atomic.Int64
	var body atomic.Value
	status.Store(200)
	body.Store("status: ok")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(401)
			return
		}
		time.Sleep(time.Duration(delay.Load())) // the latency under test, not a wait for work
		w.WriteHeader(int(status.Load()))
		fmt.Fprint(w, body.Load())
	}))
	t.Cleanup(srv.Close)
	url := srv.URL + "/health?token=SECRET-q"
	r := newRunner(t, parseProbes(t, fmt.Sprintf(`
  - {name: plain, http: {url: %[1]q, headers: {Authorization: Bearer tok}}}
  - {name: body, http: {url: %[1]q, headers: {Authorization: Bearer tok}, body_regexp: "status: ok"}}
  - {name: maint, http: {url: %[1]q, headers: {Authorization: Bearer tok}, expect_status: [503]}}
  - {name: slow, http: {url: %[1]q, headers: {Authorization: Bearer tok}}, firing_when: value > 0.2}
  - {name: noauth, http: {url: %[1]q}}
`, url)), Options{})

	for _, tc := range []struct {
		name, probe string
		status      int
		body        string
		delay       time.Duration
		ok          bool
		reason      string
	}{
		{"up", "plain", 200, "status: ok", 0, true, ""},
		{"down", "plain", 503, "", 0, false, "status 503, want [200]"},
		{"body matches", "body", 200, "status: ok", 0, true, ""},
		{"body differs", "body", 200, "status: degraded", 0, false, `body does not match "status: ok"`},
		{"expected 503", "maint", 503, "", 0, true, ""},
		{"fast enough", "slow", 200, "", 0, true, ""},
		{"too slow", "slow", 200, "", 300 * time.Millisecond, false, "firing_when value > 0.2 holds"},
		{"headers sent", "noauth", 200, "", 0, false, "status 401"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status.Store(int32(tc.status))
			body.Store(tc.body)
			delay.Store(int64(tc.delay))
			res := runOnce(t, r, tc.probe)
			if res.Success != tc.ok || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("success %v reason %q; want %v, %q", res.Success, res.Reason, tc.ok, tc.reason)
			}
			if isNaN(res.Value) || res.Value < tc.delay.Seconds() || res.Value > 5 {
				t.Errorf("value = %v, want the latency in seconds (>= %v)", res.Value, tc.delay.Seconds())
			}
			if strings.Contains(res.Reason, "SECRET") || strings.Contains(res.Labels[LabelInstance], "SECRET") {
				t.Errorf("the URL's query leaks: reason %q, instance %q", res.Reason, res.Labels[LabelInstance])
			}
			if res.Labels[LabelInstance] != srv.URL+"/health" || res.Labels[LabelKind] != "http" {
				t.Errorf("labels = %v", res.Labels)
			}
		})
	}

	srv.Close()
	res := runOnce(t, r, "plain")
	if res.Success || !isNaN(res.Value) || !strings.Contains(res.Reason, "connect") {
		t.Errorf("server gone: success %v value %v reason %q; want a connection failure without value", res.Success, res.Value, res.Reason)
	}
}

func TestTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	r := newRunner(t, parseProbes(t, fmt.Sprintf("  - {name: tcp, tcp: {address: %q}}\n", addr)), Options{})
	if res := runOnce(t, r, "tcp"); !res.Success || isNaN(res.Value) || res.Value <= 0 || res.Labels[LabelInstance] != addr {
		t.Errorf("listening: %+v, want success with the connect latency", res)
	}
	ln.Close()
	if res := runOnce(t, r, "tcp"); res.Success || !strings.Contains(res.Reason, "connection refused") {
		t.Errorf("closed: %+v, want connection refused", res)
	}
}

func TestDisk(t *testing.T) {
	dir := t.TempDir()
	r := newRunner(t, parseProbes(t, fmt.Sprintf(`
  - {name: free, disk: {path: %[1]q}}
  - {name: always, disk: {path: %[1]q}, firing_when: value <= 1}
  - {name: never, disk: {path: %[1]q}, firing_when: value < 0}
  - {name: missing, disk: {path: %[2]q}}
`, dir, filepath.Join(dir, "nope"))), Options{})
	res := runOnce(t, r, "free")
	if !res.Success || res.Value <= 0 || res.Value > 1 {
		t.Errorf("free: %+v, want a free ratio in (0, 1]", res)
	}
	for _, tc := range []struct {
		probe  string
		ok     bool
		reason string
	}{
		{"always", false, "firing_when value <= 1 holds"},
		{"never", true, ""},
		{"missing", false, "no such file or directory"},
	} {
		t.Run(tc.probe, func(t *testing.T) {
			res := runOnce(t, r, tc.probe)
			if res.Success != tc.ok || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("%+v, want success %v reason %q", res, tc.ok, tc.reason)
			}
		})
	}
}

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "probe test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour * 365),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leaf issues a certificate for 127.0.0.1 and localhost valid from notBefore to notAfter.
func (ca *testCA) leaf(t *testing.T, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: notBefore, NotAfter: notAfter,
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func tlsServer(t *testing.T, cert tls.Certificate) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestTLS(t *testing.T) {
	ca := newCA(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	fresh := tlsServer(t, ca.leaf(t, now.Add(-time.Hour), now.Add(10*24*time.Hour)))
	expired := tlsServer(t, ca.leaf(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour)))
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "https://") }
	r := newRunner(t, parseProbes(t, fmt.Sprintf(`
  - {name: fresh, tls: {address: %[1]q, ca_file: %[3]q}}
  - {name: soon, tls: {address: %[1]q, ca_file: %[3]q}, firing_when: value < 14}
  - {name: untrusted, tls: {address: %[1]q}}
  - {name: wrong-name, tls: {address: %[1]q, ca_file: %[3]q, server_name: shop.example.com}}
  - {name: expired, tls: {address: %[2]q, ca_file: %[3]q}}
  - {name: https, http: {url: %[4]q, tls: {ca_file: %[3]q}}}
  - {name: https-untrusted, http: {url: %[4]q}}
`, addr(fresh), addr(expired), caFile, fresh.URL)), Options{})
	for _, tc := range []struct {
		probe      string
		ok         bool
		minV, maxV float64
		reason     string
	}{
		{"fresh", true, 9.9, 10, ""},
		{"soon", false, 9.9, 10, "firing_when value < 14 holds"},
		{"untrusted", false, 9.9, 10, "unknown authority"},
		{"wrong-name", false, 9.9, 10, "shop.example.com"},
		{"expired", false, -1.01, -0.99, "certificate expired at"},
	} {
		t.Run(tc.probe, func(t *testing.T) {
			res := runOnce(t, r, tc.probe)
			if res.Success != tc.ok || !strings.Contains(res.Reason, tc.reason) || res.Value < tc.minV || res.Value > tc.maxV {
				t.Errorf("success %v value %v reason %q; want %v, days in [%v, %v], %q", res.Success, res.Value, res.Reason, tc.ok, tc.minV, tc.maxV, tc.reason)
			}
		})
	}
	if res := runOnce(t, r, "https"); !res.Success {
		t.Errorf("https with ca_file: %+v", res)
	}
	if res := runOnce(t, r, "https-untrusted"); res.Success || !strings.Contains(res.Reason, "unknown authority") {
		t.Errorf("https without the CA: %+v, want a verification failure", res)
	}
}
