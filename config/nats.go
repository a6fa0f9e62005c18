package config

import (
	"crypto/tls"
	"crypto/x509"
	"regexp"
	"strings"

	"github.com/nats-io/nkeys"
)

// MinSigningKeyBytes is the shortest bus.signing_key_file content accepted (after trimming white
// space): 32 bytes, the HMAC-SHA256 block's half, as `openssl rand -hex 32` gives twice over.
const MinSigningKeyBytes = 32

// resolveNATSSecrets reads and checks nats: (credentials and TLS files) and bus.signing_key_file.
// At most one kind of credentials; user and password_file go together; every file is read at
// load, so a typo or an unreadable file fails here, naming the key's line, and not at the first
// reconnect. File contents are never echoed.
func resolveNATSSecrets(cfg *Config, c *checker, o options) {
	n := &cfg.NATS
	external := strings.TrimSpace(n.URL) != ""
	var methods []string
	if n.User != "" || n.PasswordFile != "" {
		methods = append(methods, "nats.user")
	}
	for _, m := range []struct{ key, file string }{
		{"nats.token_file", n.TokenFile}, {"nats.creds_file", n.CredsFile}, {"nats.nkey_seed_file", n.NkeySeedFile},
	} {
		if m.file != "" {
			methods = append(methods, m.key)
		}
	}
	if len(methods) > 1 {
		c.errorf(methods[1], "set at most one of nats.user (with nats.password_file), nats.token_file, nats.creds_file and nats.nkey_seed_file; %s is set too", methods[0])
	}
	if len(methods) > 0 && !external {
		c.errorf(methods[0], "credentials are for an external server (nats.url); the embedded server generates its own token at each start")
	}
	if n.TLS.Enabled() && !external {
		c.errorf("nats.tls", "TLS is for an external server (nats.url); the embedded server listens on loopback only")
	}
	switch {
	case n.User != "" && n.PasswordFile == "":
		c.errorf("nats.user", "nats.user needs nats.password_file")
	case n.User == "" && n.PasswordFile != "":
		c.errorf("nats.password_file", "nats.password_file needs nats.user")
	}
	readOne(cfg, c, o, "nats.password", &n.Password, n.PasswordFile)
	readOne(cfg, c, o, "nats.token", &n.Token, n.TokenFile)
	resolveNATSKeyFiles(cfg, c, o)
	resolveNATSTLS(cfg, c, o)
	resolveSigningKey(cfg, c, o, external)
}

// resolveNATSKeyFiles checks nats.creds_file and nats.nkey_seed_file: readable, and holding
// what they should.
func resolveNATSKeyFiles(cfg *Config, c *checker, o options) {
	n := &cfg.NATS
	if n.CredsFile != "" {
		if b, ok := readFile(cfg, c, o, "nats.creds_file", n.CredsFile); ok {
			// ParseDecoratedJWT returns a file without the JWT frame whole, seed included, and the
			// NATS client would send it as the JWT: a JWT is three base64url parts and nothing else.
			if jwt, err := nkeys.ParseDecoratedJWT(b); err != nil || !jwtForm.MatchString(jwt) {
				c.errorf("nats.creds_file", "%s holds no user JWT (want a .creds file as nsc writes it)", absPath(cfg.Dir, n.CredsFile))
			} else if _, err := nkeys.ParseDecoratedNKey(b); err != nil {
				c.errorf("nats.creds_file", "%s holds no NKey seed (want a .creds file as nsc writes it)", absPath(cfg.Dir, n.CredsFile))
			}
		}
	}
	if n.NkeySeedFile != "" {
		if b, ok := readFile(cfg, c, o, "nats.nkey_seed_file", n.NkeySeedFile); ok {
			if kp, err := nkeys.ParseDecoratedNKey(b); err != nil {
				c.errorf("nats.nkey_seed_file", "%s holds no NKey seed", absPath(cfg.Dir, n.NkeySeedFile))
			} else if _, err := kp.Seed(); err != nil {
				c.errorf("nats.nkey_seed_file", "%s holds a public key, not a seed", absPath(cfg.Dir, n.NkeySeedFile))
			}
		}
	}
}

// resolveNATSTLS checks nats.tls: the CA file holds certificates, the client certificate and
// its key go together and match.
func resolveNATSTLS(cfg *Config, c *checker, o options) {
	t := cfg.NATS.TLS
	if t.CAFile != "" {
		if b, ok := readFile(cfg, c, o, "nats.tls.ca_file", t.CAFile); ok && !x509.NewCertPool().AppendCertsFromPEM(b) {
			c.errorf("nats.tls.ca_file", "%s holds no PEM certificate", absPath(cfg.Dir, t.CAFile))
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		c.errorf("nats.tls.cert_file", "nats.tls.cert_file needs nats.tls.key_file")
	case t.CertFile == "" && t.KeyFile != "":
		c.errorf("nats.tls.key_file", "nats.tls.key_file needs nats.tls.cert_file")
	case t.CertFile != "":
		cert, ok1 := readFile(cfg, c, o, "nats.tls.cert_file", t.CertFile)
		key, ok2 := readFile(cfg, c, o, "nats.tls.key_file", t.KeyFile)
		if ok1 && ok2 {
			if _, err := tls.X509KeyPair(cert, key); err != nil {
				// The error of X509KeyPair names no key material.
				c.errorf("nats.tls.cert_file", "%s and %s: %v", absPath(cfg.Dir, t.CertFile), absPath(cfg.Dir, t.KeyFile), err)
			}
		}
	}
}

// resolveSigningKey reads bus.signing_key_file; an external bus needs it (every replica signs
// and verifies with the same key).
func resolveSigningKey(cfg *Config, c *checker, o options, external bool) {
	b := &cfg.Bus
	if b.SigningKeyFile == "" {
		if external {
			c.errorf("nats.url", "an external bus needs bus.signing_key_file (the key every replica signs and verifies bus messages with)")
		}
		return
	}
	readOne(cfg, c, o, "bus.signing_key", &b.SigningKey, b.SigningKeyFile)
	if b.SigningKey != "" && len(b.SigningKey) < MinSigningKeyBytes {
		c.errorf("bus.signing_key_file", "%s holds %d bytes; want at least %d (e.g. `openssl rand -hex 32`)",
			absPath(cfg.Dir, b.SigningKeyFile), len(b.SigningKey), MinSigningKeyBytes)
	}
}

// FilePath resolves a path of the config (a *_file key) against the config file's directory; ""
// stays "".
func (c *Config) FilePath(p string) string {
	if p == "" {
		return ""
	}
	return absPath(c.Dir, p)
}

// IsJWT reports whether s has the form of a JWT: three base64url parts and nothing else (a seed
// has no dot). The config checks nats.creds_file with it, and bus checks what it would send.
func IsJWT(s string) bool { return jwtForm.MatchString(s) }

var jwtForm = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`)
