package bus

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/responder-sre/responder/config"
)

// Bus security: the credentials and TLS of the connection, and the HMAC every message carries.
//
// Anyone who can publish to the alert subject could otherwise bypass the webhook's token, forge
// `source: probe` alerts and, with them, a probe fence that silences every real probe. So every
// message the Bus publishes (Publish, group commit, Republish) carries SignatureHeader, an
// HMAC-SHA256 keyed by Options.SigningKey over the subject, the headers that matter (Nats-Msg-Id
// and every Responder-* header but the signature) and the body. Consume verifies it (hmac.Equal)
// before it decodes anything: an unsigned or badly signed message is dead-lettered at once with
// the reason bad_signature, and nothing it says (its source, its probe fence) is ever read.

// SignatureHeader is the header holding a message's HMAC: "v1=" and the hex HMAC-SHA256.
const SignatureHeader = "Responder-Signature"

const (
	signatureVersion = "v1="
	// msgIDHeader is JetStream's deduplication header (jetstream.MsgIDHeader).
	msgIDHeader = "Nats-Msg-Id"
	// signedHeaderPrefix: every header with this prefix (but the signature) is signed.
	signedHeaderPrefix = "Responder-"
	// MinSigningKeyBytes is the shortest key Open accepts.
	MinSigningKeyBytes = 32
	badSignaturePrefix = "bad_signature: "
)

// errBadSignature is the error of a message whose signature is missing or wrong.
var errBadSignature = errors.New("bad signature")

// Sign sets m's SignatureHeader for key, over m's subject, its signed headers and its data. Set
// the message id (Nats-Msg-Id) and any Responder-* header before signing.
func Sign(key []byte, m *nats.Msg) {
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	m.Header.Set(SignatureHeader, signatureVersion+hex.EncodeToString(mac(key, m.Subject, m.Header, m.Data)))
}

// signed is the message holding data on the alert subject under id (Nats-Msg-Id, the
// deduplication key), signed with the Bus's key.
func (b *Bus) signed(id string, data []byte) *nats.Msg {
	m := &nats.Msg{Subject: b.o.Subject, Data: data, Header: nats.Header{msgIDHeader: []string{id}}}
	Sign(b.o.SigningKey, m)
	return m
}

// verify checks a received message's signature against key.
func verify(key []byte, subject string, h nats.Header, data []byte) error {
	v := h.Values(SignatureHeader)
	switch {
	case len(v) == 0:
		return fmt.Errorf("%w: the message is not signed", errBadSignature)
	case len(v) > 1:
		return fmt.Errorf("%w: the message has %d signatures", errBadSignature, len(v))
	}
	hexSig, ok := strings.CutPrefix(v[0], signatureVersion)
	if !ok {
		return fmt.Errorf("%w: unknown signature version", errBadSignature)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return fmt.Errorf("%w: the signature is not hex", errBadSignature)
	}
	if !hmac.Equal(got, mac(key, subject, h, data)) {
		return fmt.Errorf("%w: the signature does not match (signed with another key, or altered)", errBadSignature)
	}
	return nil
}

// mac is the HMAC-SHA256 of a message: each part length-prefixed, so no two different messages
// write the same bytes.
func mac(key []byte, subject string, h nats.Header, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	part := func(s string) {
		fmt.Fprintf(m, "%d:", len(s))
		m.Write([]byte(s))
	}
	part("responder-bus-v1")
	part(subject)
	names := []string{msgIDHeader}
	for name := range h {
		if strings.HasPrefix(name, signedHeaderPrefix) && name != SignatureHeader {
			names = append(names, name)
		}
	}
	slices.Sort(names[1:])
	for _, name := range names {
		vals := h.Values(name)
		part(name)
		part(fmt.Sprint(len(vals)))
		for _, v := range vals {
			part(v)
		}
	}
	fmt.Fprintf(m, "%d:", len(data))
	m.Write(data)
	return m.Sum(nil)
}

// randomSecret returns n random bytes, hex-encoded.
func randomSecret(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("bus: random secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// setSigningKey checks the security options and sets the signing key: the embedded server's,
// when none is given, is private to its store, generated once and kept beside it, so the messages
// a previous process left unprocessed still verify after a restart.
func (o *Options) setSigningKey() error {
	if err := o.checkSecurity(); err != nil {
		return err
	}
	if len(o.SigningKey) == 0 {
		key, err := embeddedSigningKey(o.StoreDir)
		if err != nil {
			return err
		}
		o.SigningKey = key
	}
	o.SigningKey = slices.Clone(o.SigningKey)
	return nil
}

// embeddedSigningKeyFile is where the embedded server's store keeps its signing key.
const embeddedSigningKeyFile = "responder-signing-key"

// embeddedSigningKey returns the signing key of the embedded server's store in dir, generating
// it (random, mode 0600) the first time.
func embeddedSigningKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, embeddedSigningKeyFile)
	if b, err := os.ReadFile(path); err == nil && len(b) >= MinSigningKeyBytes {
		return b, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bus: signing key: %w", err)
	}
	key, err := randomSecret(32)
	if err != nil {
		return nil, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(key), 0o600); err != nil {
		return nil, fmt.Errorf("bus: signing key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("bus: signing key: %w", err)
	}
	return []byte(key), nil
}

// TLSOptions is the TLS of the connection to an external server; the files are PEM.
type TLSOptions struct {
	CAFile     string // the CA of the server's certificate ("" = the system's roots)
	CertFile   string // a client certificate, when the server asks for one (with KeyFile)
	KeyFile    string
	ServerName string // the name the server's certificate must hold ("" = the URL's host)
}

func (t *TLSOptions) enabled() bool {
	return t != nil && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "")
}

// authMethod names the credentials of o, for errors (never their values).
func (o *Options) authMethod() string {
	switch {
	case o.User != "":
		return fmt.Sprintf("user %q and its password", o.User)
	case o.Token != "":
		return "a token"
	case o.CredsFile != "":
		return "the credentials file " + o.CredsFile
	case o.NkeySeedFile != "":
		return "the NKey seed file " + o.NkeySeedFile
	}
	return "no credentials"
}

// checkSecurity checks the credentials, TLS and signing key of o (after setDefaults).
func (o *Options) checkSecurity() error {
	n := 0
	for _, set := range []bool{o.User != "" || o.Password != "", o.Token != "", o.CredsFile != "", o.NkeySeedFile != ""} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return errors.New("bus: set at most one kind of credentials (user and password, token, credentials file or NKey seed file)")
	case (o.User == "") != (o.Password == ""):
		return errors.New("bus: a user needs a password, and a password a user")
	case o.URL == "" && (n > 0 || o.TLS.enabled()):
		return errors.New("bus: credentials and TLS are for an external server (URL); the embedded server generates its own token")
	case o.TLS != nil && (o.TLS.CertFile == "") != (o.TLS.KeyFile == ""):
		return errors.New("bus: a TLS client certificate needs its key, and a key its certificate")
	case o.URL != "" && len(o.SigningKey) == 0:
		return errors.New("bus: an external server needs a signing key (bus.signing_key_file), the same for every replica")
	case len(o.SigningKey) > 0 && len(o.SigningKey) < MinSigningKeyBytes:
		return fmt.Errorf("bus: the signing key has %d bytes; want at least %d", len(o.SigningKey), MinSigningKeyBytes)
	}
	return nil
}

// connectOptions are the nats.Connect options of o's credentials and TLS. token is the embedded
// server's (empty with a URL).
func (o *Options) connectOptions(token string) []nats.Option {
	var opts []nats.Option
	switch {
	case token != "":
		opts = append(opts, nats.Token(token))
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	case o.CredsFile != "":
		opts = append(opts, credsFromFile(o.CredsFile))
	case o.NkeySeedFile != "":
		// The public key is read once, at Open; the seed is read again to sign at each
		// (re)connect. A rotated seed (a new key pair) therefore needs a restart: until then the
		// process would sign with the new seed under the old public key, and reconnects fail.
		opts = append(opts, nkeyFromSeedFile(o.NkeySeedFile))
	}
	if o.TLS.enabled() {
		opts = append(opts, nats.Secure(&tls.Config{ServerName: o.TLS.ServerName, MinVersion: tls.VersionTLS12}))
		if o.TLS.CAFile != "" {
			opts = append(opts, nats.RootCAs(o.TLS.CAFile))
		}
		if o.TLS.CertFile != "" {
			opts = append(opts, nats.ClientCert(o.TLS.CertFile, o.TLS.KeyFile))
		}
	}
	return opts
}

// nkeyFromSeedFile is nats.NkeyOptionFromSeed, whose error would otherwise be lost by Connect.
func nkeyFromSeedFile(path string) nats.Option {
	opt, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		return func(*nats.Options) error { return fmt.Errorf("NKey seed file %s: %w", path, err) }
	}
	return opt
}

// credsFromFile is nats.UserCredentials (the file read at each (re)connect) but for the user JWT
// it sends: nats.go sends a file without a JWT framed as nsc frames it whole, seed included, as
// the JWT. Only what has a JWT's form is sent, and the errors name the file.
func credsFromFile(path string) nats.Option {
	creds := nats.UserCredentials(path)
	return func(o *nats.Options) error {
		if err := creds(o); err != nil {
			return fmt.Errorf("credentials file %s: %w", path, err)
		}
		userJWT := o.UserJWT
		o.UserJWT = func() (string, error) {
			s, err := userJWT()
			switch {
			case err != nil:
				return "", fmt.Errorf("credentials file %s: %w", path, err)
			case !config.IsJWT(s):
				return "", fmt.Errorf("credentials file %s holds no user JWT (want a .creds file as nsc writes it)", path)
			}
			return s, nil
		}
		return nil
	}
}

// connectError explains a failed connect: a refusal of the credentials says so, naming which
// credentials (never their values).
func (o *Options) connectError(url string, err error) error {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
		return fmt.Errorf("bus: connect %s: the server refused %s (authorization violation; check nats.user, nats.password_file, nats.token_file, nats.creds_file or nats.nkey_seed_file): %w: %w",
			RedactURL(url), o.authMethod(), ErrUnavailable, err)
	}
	return fmt.Errorf("bus: connect %s: %w: %w", RedactURL(url), ErrUnavailable, err)
}
