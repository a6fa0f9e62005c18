package page

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// The credentials the test mail server accepts.
const (
	smtpUser     = "responder"
	smtpPassword = "Pa55-w0rd-secret-0123456789"
)

// mailRecord is one mail transaction the server saw, whether it took the message or not.
type mailRecord struct {
	TLS      bool   // the session ran over STARTTLS
	User     string // the authenticated user ("" = none)
	Hello    string // the EHLO name
	From     string
	To       []string
	Data     []byte // every byte of DATA as received (dot-unstuffed, CRLF line ends)
	Accepted bool   // the server answered 250 at the end of DATA
}

// mailScript makes the server refuse parts of a transaction.
type mailScript struct {
	rcpt      map[string]*smtp.SMTPError // refused recipients
	rcptTimes int                        // refuse only this many times (0: always)
	data      []*smtp.SMTPError          // the answers at the end of DATA, in turn (nil: 250); the last repeats
}

// mailServer is a real SMTP server on loopback (github.com/emersion/go-smtp) with STARTTLS (a
// certificate made for the test, for 127.0.0.1 and localhost) and AUTH PLAIN, only over TLS.
type mailServer struct {
	srv  *smtp.Server
	host string
	port int
	CA   *x509.CertPool
	PEM  []byte // the certificate, to trust it through a CA file

	mu      sync.Mutex
	script  mailScript
	conns   int // connections accepted
	refused int // recipients refused
	records []mailRecord
}

type mailServerOptions struct {
	noTLS     bool // no STARTTLS offered
	clearAuth bool // AUTH offered without TLS
	noAuth    bool // no AUTH offered: every sender accepted
	script    mailScript
}

func newMailServer(t *testing.T, o mailServerOptions) *mailServer {
	t.Helper()
	m := &mailServer{script: o.script}
	cert, pemBytes := testCertificate(t)
	m.PEM = pemBytes
	m.CA = x509.NewCertPool()
	m.CA.AppendCertsFromPEM(pemBytes)
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &mailSession{m: m, conn: c, noAuth: o.noAuth}, nil
	}))
	s.Domain = "mail.test"
	s.ErrorLog = log.New(io.Discard, "", 0) // a client that hangs up is no news here
	s.AllowInsecureAuth = o.clearAuth
	s.ReadTimeout = 10 * time.Second
	s.WriteTimeout = 10 * time.Second
	s.MaxRecipients = 50
	s.MaxMessageBytes = 1 << 20
	if !o.noTLS {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.srv = s
	m.host = "127.0.0.1"
	m.port = ln.Addr().(*net.TCPAddr).Port
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Serve(countingListener{ln, m}); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			t.Errorf("smtp server: %v", err)
		}
	}()
	t.Cleanup(func() { _ = s.Close(); <-done })
	return m
}

func (m *mailServer) addr() string { return net.JoinHostPort(m.host, strconv.Itoa(m.port)) }

// got returns the transactions so far and how many connections there were.
func (m *mailServer) got() ([]mailRecord, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]mailRecord(nil), m.records...), m.conns
}

// countingListener counts the server's connections.
type countingListener struct {
	net.Listener
	m *mailServer
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.m.mu.Lock()
		l.m.conns++
		l.m.mu.Unlock()
	}
	return c, err
}

type mailSession struct {
	m      *mailServer
	conn   *smtp.Conn
	noAuth bool
	rec    *mailRecord
	user   string
}

func (s *mailSession) AuthMechanisms() []string {
	if s.noAuth {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *mailSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username || username != smtpUser || password != smtpPassword {
			return smtp.ErrAuthFailed
		}
		s.user = username
		return nil
	}), nil
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.user == "" && !s.noAuth {
		return smtp.ErrAuthRequired
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.rec = &mailRecord{TLS: isTLS, User: s.user, Hello: s.conn.Hostname(), From: from}
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.m.mu.Lock()
	refuse := s.m.script.rcpt[to]
	if refuse != nil && (s.m.script.rcptTimes == 0 || s.m.refused < s.m.script.rcptTimes) {
		s.m.refused++
		s.m.mu.Unlock()
		return refuse
	}
	s.m.mu.Unlock()
	s.rec.To = append(s.rec.To, to)
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.rec.Data = b
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	var answer *smtp.SMTPError
	if d := s.m.script.data; len(d) > 0 {
		answer = d[min(len(s.m.records), len(d)-1)]
	}
	s.rec.Accepted = answer == nil
	s.m.records = append(s.m.records, *s.rec)
	if answer != nil {
		return answer
	}
	return nil
}

func (s *mailSession) Reset()        { s.rec = nil }
func (s *mailSession) Logout() error { return nil }

// testCertificate makes a self-signed server certificate for 127.0.0.1, ::1 and localhost.
func testCertificate(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mail.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
