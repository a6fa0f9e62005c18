package config

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// maxWebhookTokens is the current token and the next one, during a rotation.
const maxWebhookTokens = 2

// resolveSecrets reads every *_file into its secret field and applies RESPONDER_DATABASE_URL.
// A secret given both inline and as a file is an error; the files themselves are never echoed.
func resolveSecrets(cfg *Config, c *checker, o options) {
	if env := strings.TrimSpace(o.getenv(EnvDatabaseURL)); env != "" {
		if cfg.Database.URL != "" && cfg.Database.URLFile != "" {
			c.errorf("database.url_file", "set either database.url or database.url_file, not both")
		}
		cfg.Database.URL = Secret(env) // the override wins; url_file is not read
	} else {
		readOne(cfg, c, o, "database.url", &cfg.Database.URL, cfg.Database.URLFile)
	}
	readOne(cfg, c, o, "api.token", &cfg.API.Token, cfg.API.TokenFile)
	readOne(cfg, c, o, "api.read_token", &cfg.API.ReadToken, cfg.API.ReadTokenFile)
	readOne(cfg, c, o, "handlers.page.webhook.url", &cfg.Handlers.Page.Webhook.URL, cfg.Handlers.Page.Webhook.URLFile)
	readOne(cfg, c, o, "handlers.page.webhook.routing_key", &cfg.Handlers.Page.Webhook.RoutingKey, cfg.Handlers.Page.Webhook.RoutingKeyFile)

	resolveNamedSecrets(cfg, c, o)
	resolveProbeSecrets(cfg, c, o)
	resolveSlackSecrets(cfg, c, o)
	resolveWebSecrets(cfg, c, o)
	resolvePostgresSecrets(cfg, c, o)
	resolvePageSecrets(cfg, c, o)
	resolveNATSSecrets(cfg, c, o)

	w := &cfg.Webhook
	if w.BearerTokenFile != "" {
		if len(w.BearerToken) > 0 {
			c.errorf("webhook.bearer_token_file", "set either webhook.bearer_token or webhook.bearer_token_file, not both")
			return
		}
		b, ok := readFile(cfg, c, o, "webhook.bearer_token_file", w.BearerTokenFile)
		if !ok {
			return
		}
		for line := range strings.Lines(string(b)) {
			if t := strings.TrimSpace(line); t != "" {
				w.BearerToken = append(w.BearerToken, Secret(t))
			}
		}
		if len(w.BearerToken) == 0 {
			c.errorf("webhook.bearer_token_file", "%s holds no token", absPath(cfg.Dir, w.BearerTokenFile))
		}
	}
}

// readOne fills *dst from file when file is set.
func readOne(cfg *Config, c *checker, o options, key string, dst *Secret, file string) {
	if file == "" {
		return
	}
	if *dst != "" {
		c.errorf(key+"_file", "set either %s or %s_file, not both", key, key)
		return
	}
	b, ok := readFile(cfg, c, o, key+"_file", file)
	if !ok {
		return
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		c.errorf(key+"_file", "%s is empty", absPath(cfg.Dir, file))
		return
	}
	*dst = Secret(s)
}

func readFile(cfg *Config, c *checker, o options, key, file string) ([]byte, bool) {
	b, err := o.readFile(absPath(cfg.Dir, file))
	if err != nil {
		c.wrapf(key, err, "%v", err)
		return nil, false
	}
	return b, true
}

func absPath(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// SecretFile is one named secret (secrets.NAME): the file holding its value, relative to the
// config file. Only the name travels (rule params, fence headers, the API); the value is read from
// the file when a handler calls out.
type SecretFile struct {
	File string `yaml:"file"`
}

var (
	reSecretName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	// reSecretRef is one secret reference as rendered params and fence headers hold it. The
	// rules package renders secret("NAME") as SecretRef(NAME); a fence header is written by hand,
	// so single quotes and other spacing are accepted too.
	reSecretRef = regexp.MustCompile(`\{\{-?\s*secret\(\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\)\s*-?\}\}`)
)

// ValidSecretName reports whether name can name a secret: a letter or digit, then letters,
// digits, '_', '.' or '-', at most 63 in all (a Kubernetes Secret key fits).
func ValidSecretName(name string) bool { return reSecretName.MatchString(name) }

// SecretRef is the reference to the named secret that rendered params keep in place of its value:
// {{ secret("NAME") }}. Handlers replace it with the value only when they call out.
func SecretRef(name string) string { return `{{ secret("` + name + `") }}` }

// SecretRefMatch is one secret reference found in a string: s[Start:End] refers to Name.
type SecretRefMatch struct {
	Start, End int
	Name       string
}

// FindSecretRefs returns the secret references in s, in order.
func FindSecretRefs(s string) []SecretRefMatch {
	if !strings.Contains(s, "{{") {
		return nil
	}
	var out []SecretRefMatch
	for _, m := range reSecretRef.FindAllStringSubmatchIndex(s, -1) {
		name := ""
		switch {
		case m[2] >= 0:
			name = s[m[2]:m[3]]
		case m[4] >= 0:
			name = s[m[4]:m[5]]
		}
		out = append(out, SecretRefMatch{Start: m[0], End: m[1], Name: name})
	}
	return out
}

// ContainsSecretRef reports whether a param value (a string, or a list or map holding strings)
// holds a secret reference.
func ContainsSecretRef(v any) bool {
	switch v := v.(type) {
	case string:
		return len(FindSecretRefs(v)) > 0
	case []any:
		return slices.ContainsFunc(v, ContainsSecretRef)
	case map[string]any:
		for _, e := range v {
			if ContainsSecretRef(e) {
				return true
			}
		}
	}
	return false
}

// resolveNamedSecrets checks secrets: (names, files readable and not empty: a typo fails at load,
// not at 3 a.m.), secret_path_hosts, and the secret references in fence headers.
func resolveNamedSecrets(cfg *Config, c *checker, o options) {
	for _, name := range sortedKeys(cfg.Secrets) {
		key := "secrets." + name
		f := cfg.Secrets[name]
		switch {
		case !ValidSecretName(name):
			c.errorf(key, "secret name %q: want a letter or digit, then letters, digits, '_', '.' or '-' (at most 63)", name)
		case strings.TrimSpace(f.File) == "":
			c.errorf(key+".file", "a secret needs a file")
		default:
			if b, ok := readFile(cfg, c, o, key+".file", f.File); ok && strings.TrimSpace(string(b)) == "" {
				c.errorf(key+".file", "%s is empty", absPath(cfg.Dir, f.File))
			}
		}
	}
	for i, h := range cfg.Handlers.HTTP.SecretPathHosts {
		if err := checkHost(strings.TrimPrefix(h, "*.")); err != nil {
			c.errorf(fmt.Sprintf("handlers.http.secret_path_hosts[%d]", i), "%q: %v", h, err)
		}
	}
	for _, name := range sortedKeys(cfg.Handlers.Postgres.Clusters) {
		f := cfg.Handlers.Postgres.Clusters[name].Fence
		for _, h := range sortedKeys(f.Headers) {
			key := "handlers.postgres.clusters." + name + ".fence.headers." + h
			checkSecretRefs(cfg, c, key, f.Headers[h].Value())
		}
	}
}

// checkSecretRefs checks that every {{ }} in a config value is a reference to a defined secret.
func checkSecretRefs(cfg *Config, c *checker, key, v string) {
	rest := v
	for _, m := range slices.Backward(FindSecretRefs(v)) {
		if _, ok := cfg.Secrets[m.Name]; !ok {
			c.errorf(key, "unknown secret %q (secrets: %s)", m.Name, knownSecrets(cfg))
		}
		rest = rest[:m.Start] + rest[m.End:]
	}
	if strings.Contains(rest, "{{") {
		c.errorf(key, `only {{ secret("NAME") }} may be templated here`)
	}
}

func knownSecrets(cfg *Config) string {
	if len(cfg.Secrets) == 0 {
		return "none defined"
	}
	return strings.Join(sortedKeys(cfg.Secrets), ", ")
}

// SecretFiles resolves the named secrets of a config. It reads a secret's file each time it is
// asked, so a rotated file (a Kubernetes Secret update) takes effect without a reload; the files
// are small and read only when a handler calls out.
type SecretFiles struct {
	files map[string]string // name → absolute path
	read  func(string) ([]byte, error)
}

// SecretFiles returns the resolver of cfg's named secrets.
func (c *Config) SecretFiles() *SecretFiles {
	s := &SecretFiles{files: make(map[string]string, len(c.Secrets)), read: readSecretFile}
	for name, f := range c.Secrets {
		s.files[name] = absPath(c.Dir, f.File)
	}
	return s
}

// Names returns the secret names, sorted.
func (s *SecretFiles) Names() []string { return sortedKeys(s.files) }

// ErrUnknownSecret is matched by the error of Secret for a name that is not defined.
var ErrUnknownSecret = errors.New("unknown secret")

// Secret reads the named secret's file and returns its content without surrounding white space.
// Errors name the secret and its file, never the content.
func (s *SecretFiles) Secret(_ context.Context, name string) (string, error) {
	path, ok := s.files[name]
	if !ok {
		return "", fmt.Errorf("%w %q", ErrUnknownSecret, name)
	}
	b, err := s.read(path)
	if err != nil {
		return "", fmt.Errorf("secret %q: %w", name, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("secret %q: %s is empty", name, path)
	}
	return v, nil
}
