package bus_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/bus"
	"github.com/responder-sre/responder/bus/bustest"
	"github.com/responder-sre/responder/internal/testwait"
)

// tryOpen opens a bus and closes it at the end of the test; it returns Open's error.
func tryOpen(t *testing.T, o bus.Options) (*bus.Bus, error) {
	t.Helper()
	if o.URL != "" && o.SigningKey == nil {
		o.SigningKey = testKey
	}
	o.Registerer = prometheus.NewRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, o)
	if err == nil {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = b.Close(ctx)
		})
	}
	return b, err
}

// roundTrip publishes one group on b and waits until a consumer processed it.
func roundTrip(t *testing.T, b *bus.Bus) {
	t.Helper()
	rec := newRecorder()
	consume(t, b, rec)
	publish(t, b, group("RoundTrip", 1))
	testwait.Until(t, settle, "the group processed", func() bool { n, _ := rec.count(); return n == 1 })
}

func TestUserAndPassword(t *testing.T) {
	srv := bustest.Start(t, func(o *server.Options) { o.Username, o.Password = "responder", "XXXXPASSWORD" })
	b, err := tryOpen(t, bus.Options{URL: srv.URL(), User: "responder", Password: "XXXXPASSWORD"})
	if err != nil {
		t.Fatalf("open with the right password: %v", err)
	}
	roundTrip(t, b)

	_, err = tryOpen(t, bus.Options{URL: srv.URL(), User: "responder", Password: "XXXXWRONG"})
	if err == nil || !strings.Contains(err.Error(), "authorization violation") ||
		!strings.Contains(err.Error(), `refused user "responder" and its password`) || !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("open with a wrong password: %v", err)
	}
	if strings.Contains(err.Error(), "XXXX") {
		t.Errorf("the error holds the password: %v", err)
	}
	if _, err := tryOpen(t, bus.Options{URL: srv.URL()}); err == nil || !strings.Contains(err.Error(), "authorization violation") {
		t.Fatalf("open without credentials: %v", err)
	}
}

func TestToken(t *testing.T) {
	srv := bustest.Start(t, func(o *server.Options) { o.Authorization = "XXXXTOKEN" })
	b, err := tryOpen(t, bus.Options{URL: srv.URL(), Token: "XXXXTOKEN"})
	if err != nil {
		t.Fatalf("open with the token: %v", err)
	}
	roundTrip(t, b)
	_, err = tryOpen(t, bus.Options{URL: srv.URL(), Token: "XXXXOTHER"})
	if err == nil || !strings.Contains(err.Error(), "refused a token") || strings.Contains(err.Error(), "XXXX") {
		t.Fatalf("open with a wrong token: %v", err)
	}
	if _, err := tryOpen(t, bus.Options{URL: srv.URL()}); err == nil {
		t.Fatal("open without the token succeeded")
	}
}

// newKeyPair creates a key pair with create (nkeys.CreateUser, CreateAccount, CreateOperator)
// and returns it with its public key.
func newKeyPair(t *testing.T, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return kp, pub
}

func TestNkeySeedFile(t *testing.T) {
	kp, pub := newKeyPair(t, nkeys.CreateUser)
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	seedFile := filepath.Join(t.TempDir(), "seed")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := bustest.Start(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })
	b, err := tryOpen(t, bus.Options{URL: srv.URL(), NkeySeedFile: seedFile})
	if err != nil {
		t.Fatalf("open with the seed: %v", err)
	}
	roundTrip(t, b)
	other, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	otherSeed, _ := other.Seed()
	if err := os.WriteFile(seedFile, otherSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tryOpen(t, bus.Options{URL: srv.URL(), NkeySeedFile: seedFile}); err == nil || !strings.Contains(err.Error(), "refused the NKey seed file") {
		t.Fatalf("open with another seed: %v", err)
	}
	if _, err := tryOpen(t, bus.Options{URL: srv.URL(), NkeySeedFile: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Fatal("open with a missing seed file succeeded")
	}
}

func TestOptionsRefused(t *testing.T) {
	for name, o := range map[string]bus.Options{
		"two kinds":            {URL: "nats://127.0.0.1:1", SigningKey: testKey, Token: "t", User: "u", Password: "p"},
		"user alone":           {URL: "nats://127.0.0.1:1", SigningKey: testKey, User: "u"},
		"external without key": {URL: "nats://127.0.0.1:1"},
		"short key":            {URL: "nats://127.0.0.1:1", SigningKey: []byte("short")},
		"embedded credentials": {StoreDir: t.TempDir(), Token: "t"},
		"cert without key":     {URL: "nats://127.0.0.1:1", SigningKey: testKey, TLS: &bus.TLSOptions{CertFile: "c.pem"}},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if b, err := bus.Open(ctx, o); err == nil {
				_ = b.Close(ctx)
				t.Fatal("Open accepted the options")
			}
		})
	}
}

// The embedded server listens on loopback and requires the token only its Bus knows.
func TestEmbeddedRequiresItsToken(t *testing.T) {
	b, _ := open(t, bus.Options{StoreDir: t.TempDir()})
	if !strings.HasPrefix(b.ClientURL(), "nats://127.0.0.1:") || len(b.EmbeddedToken()) < 32 {
		t.Fatalf("client url %q, token of %d bytes", b.ClientURL(), len(b.EmbeddedToken()))
	}
	if nc, err := nats.Connect(b.ClientURL()); err == nil || !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("connect without the token: %v", err)
	}
	nc, err := nats.Connect(b.ClientURL(), nats.Token(b.EmbeddedToken()))
	if err != nil {
		t.Fatalf("connect with the token: %v", err)
	}
	nc.Close()
	roundTrip(t, b)
	other, _ := open(t, bus.Options{StoreDir: t.TempDir()})
	if other.EmbeddedToken() == b.EmbeddedToken() {
		t.Error("two starts share a token")
	}
}

// certs is a CA and the certificates it signed, written as PEM files in dir.
type certs struct {
	dir                      string
	ca                       *x509.Certificate
	caKey                    *ecdsa.PrivateKey
	caFile                   string
	serverCert               tls.Certificate
	clientCertFile, clientKy string
}

func newCerts(t *testing.T) *certs {
	t.Helper()
	c := &certs{dir: t.TempDir()}
	var caDER []byte
	c.caKey, caDER = makeCert(t, nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	})
	var err error
	if c.ca, err = x509.ParseCertificate(caDER); err != nil {
		t.Fatal(err)
	}
	c.caFile = c.write(t, "ca.pem", "CERTIFICATE", caDER)
	srvKey, srvDER := makeCert(t, c.ca, c.caKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "nats.test"}, DNSNames: []string{"nats.test"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	c.serverCert = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
	cliKey, cliDER := makeCert(t, c.ca, c.caKey, &x509.Certificate{
		Subject:  pkix.Name{CommonName: "responder"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	c.clientCertFile = c.write(t, "client.pem", "CERTIFICATE", cliDER)
	keyDER, err := x509.MarshalECPrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	c.clientKy = c.write(t, "client.key", "EC PRIVATE KEY", keyDER)
	return c
}

var serial int64

func makeCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func (c *certs) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TLS with a CA of the test's own: the server's certificate is checked against the CA and
// server_name, and the server checks the client's certificate.
func TestTLS(t *testing.T) {
	c := newCerts(t)
	pool := x509.NewCertPool()
	pool.AddCert(c.ca)
	srv := bustest.Start(t, func(o *server.Options) {
		o.TLS, o.TLSVerify, o.TLSTimeout = true, true, 5
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{c.serverCert}, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	})
	good := &bus.TLSOptions{CAFile: c.caFile, CertFile: c.clientCertFile, KeyFile: c.clientKy, ServerName: "nats.test"}
	b, err := tryOpen(t, bus.Options{URL: srv.URL(), TLS: good})
	if err != nil {
		t.Fatalf("open over TLS: %v", err)
	}
	roundTrip(t, b)

	for name, o := range map[string]*bus.TLSOptions{
		"another server name": {CAFile: c.caFile, CertFile: c.clientCertFile, KeyFile: c.clientKy, ServerName: "other.test"},
		"the system's CAs":    {CertFile: c.clientCertFile, KeyFile: c.clientKy, ServerName: "nats.test"},
		"no client cert":      {CAFile: c.caFile, ServerName: "nats.test"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := tryOpen(t, bus.Options{URL: srv.URL(), TLS: o}); err == nil {
				t.Fatal("open succeeded")
			}
		})
	}
	t.Run("plain", func(t *testing.T) {
		if _, err := tryOpen(t, bus.Options{URL: srv.URL()}); err == nil {
			t.Fatal("open without TLS succeeded")
		}
	})
}

// rawPublish stores a message on the alert stream as any client of the server could.
func rawPublish(t *testing.T, url string, msg *nats.Msg) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.RequestMsg(msg, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// Every message is signed; one that is not, or is signed with another key, or was altered after
// signing, is dead-lettered with bad_signature and never processed.
func TestBadSignaturesAreDeadLettered(t *testing.T) {
	srv := bustest.Start(t)
	b, reg := open(t, bus.Options{URL: srv.URL()})
	data, err := alertJSON(group("Forged", 1))
	if err != nil {
		t.Fatal(err)
	}
	msg := func(id string) *nats.Msg {
		return &nats.Msg{Subject: bus.DefaultSubject, Data: data, Header: nats.Header{"Nats-Msg-Id": {id}}}
	}
	unsigned := msg("unsigned")
	wrongKey := msg("wrong-key")
	bus.Sign([]byte("another key, 32 bytes or more, not the bus's"), wrongKey)
	altered := msg("altered")
	bus.Sign(testKey, altered)
	altered.Data = append([]byte(nil), data...)
	altered.Data[len(altered.Data)-2] = ' '
	renamed := msg("renamed-before")
	bus.Sign(testKey, renamed)
	renamed.Header.Set("Nats-Msg-Id", "renamed")
	garbled := msg("garbled")
	garbled.Header.Set(bus.SignatureHeader, "v1=zz")
	for _, m := range []*nats.Msg{unsigned, wrongKey, altered, renamed, garbled} {
		rawPublish(t, srv.URL(), m)
	}
	signed := msg("signed")
	bus.Sign(testKey, signed)
	rawPublish(t, srv.URL(), signed)
	publish(t, b, group("Real", 1))

	rec := newRecorder()
	consume(t, b, rec)
	testwait.Until(t, settle, "5 dead letters", func() bool { _, d := rec.count(); return d == 5 })
	testwait.Until(t, settle, "2 processed", func() bool { n, _ := rec.count(); return n == 2 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, id := range []string{"unsigned", "wrong-key", "altered", "renamed", "garbled"} {
		if r := rec.dead[id]; !strings.HasPrefix(r, "bad_signature: ") {
			t.Errorf("dead letter %s: reason %q", id, r)
		}
		if len(rec.processed[id]) != 0 {
			t.Errorf("%s was processed", id)
		}
	}
	if !strings.Contains(rec.dead["unsigned"], "not signed") || !strings.Contains(rec.dead["wrong-key"], "does not match") {
		t.Errorf("reasons: %v", rec.dead)
	}
	if len(rec.processed["signed"]) != 1 {
		t.Errorf("the message signed with the bus's key was not processed: %v", rec.processed)
	}
	if got := metricValue(t, reg, "responder_bus_terminated_total"); got != 5 {
		t.Errorf("terminated = %v, want 5", got)
	}
}

// A replay (Republish) is signed: it is processed.
func TestRepublishIsSigned(t *testing.T) {
	srv := bustest.Start(t)
	b, _ := open(t, bus.Options{URL: srv.URL()})
	data, err := alertJSON(group("Replayed", 1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.Republish(ctx, "replay-1", data); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	consume(t, b, rec)
	testwait.Until(t, settle, "the replay processed", func() bool { n, _ := rec.count(); return n == 1 })
	if _, d := rec.count(); d != 0 {
		t.Errorf("dead letters: %v", rec.dead)
	}
}

func alertJSON(alerts []alert.Alert) ([]byte, error) { return alert.AppendListJSON(nil, alerts) }

// The embedded server's signing key is kept with its store: what a closed (or crashed) process
// left in the stream still verifies after a restart, and is processed, not dead-lettered.
func TestEmbeddedKeyOutlivesTheProcess(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, err := bus.Open(ctx, bus.Options{StoreDir: dir, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, first, group("Left", 2))
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, "responder-signing-key"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the key file: %v %v", info, err)
	}
	second, _ := open(t, bus.Options{StoreDir: dir})
	rec := newRecorder()
	consume(t, second, rec)
	testwait.Until(t, settle, "the message left by the first process", func() bool { n, _ := rec.count(); return n == 1 })
	if _, d := rec.count(); d != 0 {
		t.Errorf("dead letters: %v", rec.dead)
	}
}

// jwtOperator is an operator's key with its self-signed claims.
type jwtOperator struct {
	kp     nkeys.KeyPair
	claims *jwt.OperatorClaims
}

func newJWTOperator(t *testing.T) *jwtOperator {
	t.Helper()
	kp, pub := newKeyPair(t, nkeys.CreateOperator)
	encoded, err := jwt.NewOperatorClaims(pub).Encode(kp)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := jwt.DecodeOperatorClaims(encoded)
	if err != nil {
		t.Fatal(err)
	}
	return &jwtOperator{kp: kp, claims: claims}
}

// account creates an account signed by the operator, with JetStream (no limits) when js; it
// returns the account's key and JWT.
func (op *jwtOperator) account(t *testing.T, js bool) (nkeys.KeyPair, string) {
	t.Helper()
	kp, pub := newKeyPair(t, nkeys.CreateAccount)
	claims := jwt.NewAccountClaims(pub)
	if js {
		claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	}
	encoded, err := claims.Encode(op.kp)
	if err != nil {
		t.Fatal(err)
	}
	return kp, encoded
}

// userCreds writes the creds file (as nsc writes it) of a new user of the account whose key is
// issuer; edit, when not nil, changes the user's claims before they are signed. It returns the
// file's path, the user's JWT and its seed.
func userCreds(t *testing.T, issuer nkeys.KeyPair, edit func(*jwt.UserClaims)) (path, userJWT, seed string) {
	t.Helper()
	kp, pub := newKeyPair(t, nkeys.CreateUser)
	s, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.NewUserClaims(pub)
	claims.Name = "responder"
	if edit != nil {
		edit(claims)
	}
	userJWT, err = claims.Encode(issuer)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(userJWT, s)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "responder.creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, userJWT, string(s)
}

// A server in operator (JWT) mode: the bus connects with a user's creds file and runs JetStream
// in that user's account. The creds file of a user of another operator's account or of an account
// the server does not know, an expired one, or one whose seed is not the JWT's, is refused with an
// error naming the creds file and holding neither the seed nor the JWT; a missing or malformed
// file fails naming it.
func TestCredsFileOperatorMode(t *testing.T) {
	op := newJWTOperator(t)
	sysKP, sysJWT := op.account(t, false)
	sysPub, _ := sysKP.PublicKey()
	accKP, accJWT := op.account(t, true)
	accPub, _ := accKP.PublicKey()
	resolver := &server.MemAccResolver{}
	for pub, encoded := range map[string]string{sysPub: sysJWT, accPub: accJWT} {
		if err := resolver.Store(pub, encoded); err != nil {
			t.Fatal(err)
		}
	}
	// An account of another operator, known to the resolver: only the operator's trust refuses it.
	foreignKP, foreignJWT := newJWTOperator(t).account(t, true)
	foreignPub, _ := foreignKP.PublicKey()
	if err := resolver.Store(foreignPub, foreignJWT); err != nil {
		t.Fatal(err)
	}
	// An account of this operator the server was never told about.
	unknownKP, _ := op.account(t, true)

	srv := bustest.Start(t, func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{op.claims}
		o.AccountResolver = resolver
		o.SystemAccount = sysPub
	})

	credsFile, _, _ := userCreds(t, accKP, nil)
	b, err := tryOpen(t, bus.Options{URL: srv.URL(), Replicas: 1, CredsFile: credsFile})
	if err != nil {
		t.Fatalf("open with the account's user creds file: %v", err)
	}
	roundTrip(t, b)

	// The stream is in the user's account: a connection with the same creds sees it.
	nc, err := nats.Connect(srv.URL(), nats.UserCredentials(credsFile))
	if err != nil {
		t.Fatalf("raw connect with the creds file: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := js.AccountInfo(ctx)
	if err != nil {
		t.Fatalf("account info: %v", err)
	}
	if info.Streams != 1 || info.Consumers < 1 {
		t.Fatalf("the user's account holds %d streams and %d consumers; want the bus's stream and its consumer", info.Streams, info.Consumers)
	}
	t.Logf("account %s: %d stream, %d consumers, %d bytes stored", accPub, info.Streams, info.Consumers, info.Store)

	// The server is in operator mode: no credentials, no connection.
	if _, err := tryOpen(t, bus.Options{URL: srv.URL(), Replicas: 1}); err == nil || !strings.Contains(err.Error(), "authorization violation") {
		t.Fatalf("open without credentials: got %v; want an authorization violation", err)
	}

	_, otherJWT, otherSeed := userCreds(t, accKP, nil)
	refused := map[string]func(t *testing.T) (path, userJWT, seed string){
		"another operator's account": func(t *testing.T) (string, string, string) { return userCreds(t, foreignKP, nil) },
		"an unknown account":         func(t *testing.T) (string, string, string) { return userCreds(t, unknownKP, nil) },
		"expired": func(t *testing.T) (string, string, string) {
			return userCreds(t, accKP, func(c *jwt.UserClaims) { c.Expires = time.Now().Add(-time.Hour).Unix() })
		},
		// The account's user JWT with the seed of another user of the account.
		"seed not the JWT's": func(t *testing.T) (string, string, string) {
			// FormatUserConfig refuses a seed that is not the JWT's: swap it in the file.
			path, userJWT, seed := userCreds(t, accKP, nil)
			creds, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			swapped := strings.Replace(string(creds), seed, otherSeed, 1)
			if swapped == string(creds) {
				t.Fatalf("the creds file does not hold its seed:\n%s", creds)
			}
			if err := os.WriteFile(path, []byte(swapped), 0o600); err != nil {
				t.Fatal(err)
			}
			return path, userJWT, otherSeed
		},
	}
	for name, creds := range refused {
		t.Run(name, func(t *testing.T) {
			path, userJWT, seed := creds(t)
			_, err := tryOpen(t, bus.Options{URL: srv.URL(), Replicas: 1, CredsFile: path})
			if err == nil {
				t.Fatal("Open accepted the creds file")
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), "refused the credentials file "+path) || !errors.Is(err, bus.ErrUnavailable) {
				t.Errorf("error %q; want the server's refusal of the credentials file %s", err, path)
			}
			for what, secret := range map[string]string{"seed": seed, "JWT": userJWT, "other JWT": otherJWT} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error holds the %s: %v", what, err)
				}
			}
		})
	}

	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.creds")
	if err := os.WriteFile(garbage, []byte("not a creds file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{
		"missing":   filepath.Join(dir, "missing.creds"),
		"malformed": garbage,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tryOpen(t, bus.Options{URL: srv.URL(), Replicas: 1, CredsFile: path})
			if err == nil {
				t.Fatal("Open accepted the creds file")
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q; want one naming the creds file %s", err, path)
			}
			if strings.Contains(err.Error(), otherSeed) {
				t.Errorf("the error holds the seed: %v", err)
			}
		})
	}
}

// jwtRecorder accepts every client and records the user JWT of each CONNECT.
type jwtRecorder struct {
	mu   sync.Mutex
	jwts []string
}

func (r *jwtRecorder) Check(c server.ClientAuthentication) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.jwts = append(r.jwts, c.GetOpts().JWT)
	return true
}

func (r *jwtRecorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.jwts)
}

// A creds file holding no JWT framed as nsc frames it is refused before anything is sent: nats.go
// alone would send the file whole, the seed with it, as the user JWT.
func TestCredsFileWithoutJWTSendsNoSeed(t *testing.T) {
	// Operator mode, or the server discards the JWT before authentication sees it; the recorder
	// stands in for the operator's checks.
	op := newJWTOperator(t)
	sysKP, sysJWT := op.account(t, false)
	sysPub, _ := sysKP.PublicKey()
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(sysPub, sysJWT); err != nil {
		t.Fatal(err)
	}
	rec := &jwtRecorder{}
	srv := bustest.Start(t, func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{op.claims}
		o.AccountResolver = resolver
		o.SystemAccount = sysPub
		o.CustomClientAuthentication = rec
	})
	accKP, _ := op.account(t, true)

	// The recorder sees what a client sends: the JWT of a good creds file.
	good, goodJWT, seed := userCreds(t, accKP, nil)
	nc, err := nats.Connect(srv.URL(), nats.UserCredentials(good))
	if err != nil {
		t.Fatalf("raw connect with a creds file: %v", err)
	}
	nc.Close()
	if seen := rec.seen(); len(seen) != 1 || seen[0] != goodJWT {
		t.Fatalf("the server saw the JWTs %q; want the creds file's alone", seen)
	}

	dir := t.TempDir()
	for name, content := range map[string]string{
		"seed only":             seed + "\n",
		"undecorated JWT, seed": goodJWT + "\n" + seed + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".creds")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := tryOpen(t, bus.Options{URL: srv.URL(), Replicas: 1, CredsFile: path})
			if err == nil || !strings.Contains(err.Error(), "credentials file "+path+" holds no user JWT") {
				t.Fatalf("open: got %v; want the credentials file %s refused for holding no user JWT", err, path)
			}
			t.Logf("refused: %v", err)
			if strings.Contains(err.Error(), seed) {
				t.Errorf("the error holds the seed: %v", err)
			}
		})
	}
	seen := rec.seen()
	for i, j := range seen {
		if strings.Contains(j, seed) {
			t.Errorf("CONNECT %d carried the seed in its JWT", i+1)
		}
	}
	t.Logf("CONNECTs the server saw: %d (1 with the good creds file; want none from the files without a JWT)", len(seen))
	if len(seen) != 1 {
		t.Errorf("the server saw %d CONNECTs; want 1 (the good creds file's)", len(seen))
	}
}
