package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvDatabaseURL overrides database.url (and database.url_file) when set and non-empty.
const EnvDatabaseURL = "RESPONDER_DATABASE_URL"

// maxSecretFileBytes bounds what a *_file may hold.
const maxSecretFileBytes = 64 << 10

// Option changes how Load and Parse read the environment.
type Option func(*options)

type options struct {
	getenv   func(string) string
	readFile func(string) ([]byte, error)
}

// WithGetenv replaces os.Getenv for RESPONDER_DATABASE_URL (tests pass a map lookup).
func WithGetenv(getenv func(string) string) Option {
	return func(o *options) { o.getenv = getenv }
}

// withReadFile replaces how *_file secrets are read (the fuzz target must not read the disk).
func withReadFile(read func(string) ([]byte, error)) Option {
	return func(o *options) { o.readFile = read }
}

// Load reads, decodes (strictly), completes and validates the config file at path. Errors name
// the file and line. Secrets in *_file are read relative to the file's directory;
// RESPONDER_DATABASE_URL (os.Getenv unless WithGetenv) overrides database.url.
func Load(path string, opts ...Option) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return Parse(data, path, opts...)
}

// Parse is Load on bytes already read; filename names the file in errors and its directory is
// where relative paths resolve.
func Parse(data []byte, filename string, opts ...Option) (*Config, error) {
	o := options{getenv: os.Getenv, readFile: readSecretFile}
	for _, opt := range opts {
		opt(&o)
	}
	name := filename
	if name == "" {
		name = "<config>"
	}

	cfg := Default()
	cfg.Bus.Replicas = 0 // left out: fillDefaults picks 1 (embedded) or 3 (nats.url)
	root, err := decodeStrict(data, name, cfg)
	if err != nil {
		return nil, err
	}

	dir, err := filepath.Abs(filepath.Dir(filename))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cfg.File, cfg.Dir = filename, dir

	c := &checker{file: name, root: root}
	resolveSecrets(cfg, c, o)
	cfg.validate(c)
	if err := c.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// decodeStrict decodes the one YAML document in data into v, unknown keys being errors, and
// returns its node tree (for the lines of later errors). Errors name file and line.
func decodeStrict(data []byte, name string, v any) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return nil, decodeError(name, data, err)
	}
	for {
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, decodeError(name, data, err)
		}
		if len(extra.Content) > 0 && extra.Content[0].Tag != "!!null" {
			return nil, &posError{file: name, line: extra.Line, msg: "want one YAML document, found more"}
		}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil { // cannot fail after the decode above
		return nil, decodeError(name, data, err)
	}
	return &root, nil
}

// Validate checks a config built in code (Parse already validated what it returns). Its errors
// carry no line numbers.
func (c *Config) Validate() error {
	ch := &checker{file: c.File}
	if ch.file == "" {
		ch.file = "<config>"
	}
	c.validate(ch)
	return ch.err()
}

// WebhookTokens returns the accepted webhook bearer tokens (none, one, or two during rotation).
func (c *Config) WebhookTokens() []string { return c.Webhook.BearerToken.Values() }

// APIToken returns the admin API token ("" when unset).
func (c *Config) APIToken() string { return c.API.Token.Value() }

// APIReadToken returns the read-only API token ("" when unset).
func (c *Config) APIReadToken() string { return c.API.ReadToken.Value() }

// DatabaseURL returns the PostgreSQL URL, after the RESPONDER_DATABASE_URL override.
func (c *Config) DatabaseURL() string { return c.Database.URL.Value() }

// RuleFilePaths expands rule_files against Dir: globs (sorted, deduplicated, directories left
// out; matching nothing is fine) and literal paths, which must exist.
func (c *Config) RuleFilePaths() ([]string, error) {
	var out []string
	for _, pat := range c.RuleFiles {
		p := pat
		if !filepath.IsAbs(p) {
			p = filepath.Join(c.Dir, p)
		}
		if !strings.ContainsAny(pat, `*?[\`) {
			fi, err := os.Stat(p)
			if err != nil {
				return nil, fmt.Errorf("rule_files: %w", err)
			}
			if fi.IsDir() {
				return nil, fmt.Errorf("rule_files: %s is a directory (use %s)", p, filepath.Join(pat, "*.yml"))
			}
			out = append(out, p)
			continue
		}
		matches, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("rule_files: pattern %q: %w", pat, err)
		}
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && !fi.IsDir() {
				out = append(out, m)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxSecretFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxSecretFileBytes)
	}
	return b, nil
}
