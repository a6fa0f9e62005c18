package config

import (
	"path/filepath"
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

	resolveProbeSecrets(cfg, c, o)
	resolveSlackSecrets(cfg, c, o)
	resolvePostgresSecrets(cfg, c, o)

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
