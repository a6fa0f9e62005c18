package config

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// validate fills the defaults (defaults.go), then checks every section, collecting the errors in
// ch. Each section's checks are their own function, in the order of the file's sections.
func (c *Config) validate(ch *checker) {
	c.fillDefaults()
	c.validateProbes(ch)
	c.validateSlack(ch)
	c.validateKubernetes(ch)
	c.validatePostgres(ch)
	c.validateLimits(ch)
	c.validateDatabase(ch)
	c.validateWebhook(ch)
	c.validateAPI(ch)
	c.validateNamedTokens(ch)
	c.validateWeb(ch)
	c.validateRuleFiles(ch)
	c.validateHTTPHandler(ch)
	c.validatePage(ch)
	positive(ch, "approvals.ttl", c.Approvals.TTL)
	c.validateSafety(ch)
	c.validateBudgets(ch)
	c.validateBus(ch)
	c.validateDrills(ch)
}

// validateDatabase checks database.
func (c *Config) validateDatabase(ch *checker) {
	if c.Database.MaxConns < 1 {
		ch.errorf("database.max_conns", "must be at least 1, got %d", c.Database.MaxConns)
	}
}

// validateWebhook checks webhook: at most two tokens, a positive body bound.
func (c *Config) validateWebhook(ch *checker) {
	if n := len(c.Webhook.BearerToken); n > maxWebhookTokens {
		key := "webhook.bearer_token"
		if c.Webhook.BearerTokenFile != "" {
			key = "webhook.bearer_token_file"
		}
		ch.errorf(key, "%d tokens; at most %d (the current one and the next, for rotation)", n, maxWebhookTokens)
	}
	if c.Webhook.MaxBodyBytes <= 0 {
		ch.errorf("webhook.max_body_bytes", "must be positive, got %s", c.Webhook.MaxBodyBytes)
	}
}

// validateAPI checks api: the read token differs from the admin token.
func (c *Config) validateAPI(ch *checker) {
	if c.API.ReadToken != "" && c.API.ReadToken == c.API.Token {
		key := "api.read_token"
		if c.API.ReadTokenFile != "" {
			key = "api.read_token_file"
		}
		ch.errorf(key, "must differ from api.token (the read token may only read)")
	}
}

// validateRuleFiles checks that every rule_files entry is a non-empty, well-formed glob.
func (c *Config) validateRuleFiles(ch *checker) {
	for i, pat := range c.RuleFiles {
		key := fmt.Sprintf("rule_files[%d]", i)
		if strings.TrimSpace(pat) == "" {
			ch.errorf(key, "empty pattern")
			continue
		}
		if _, err := filepath.Match(pat, ""); err != nil {
			ch.wrapf(key, err, "pattern %q: %v", pat, err)
		}
	}
}

// validateHTTPHandler checks handlers.http.
func (c *Config) validateHTTPHandler(ch *checker) {
	h := c.Handlers.HTTP
	for i, host := range h.AllowedHosts {
		if err := checkHost(host); err != nil {
			ch.errorf(fmt.Sprintf("handlers.http.allowed_hosts[%d]", i), "%q: %v", host, err)
		}
	}
	positive(ch, "handlers.http.timeout", h.Timeout)
	if h.Retries != nil && *h.Retries < 0 {
		ch.errorf("handlers.http.retries", "must not be negative, got %d", *h.Retries)
	}
}

// validateSafety checks safety (its budgets: validateBudgets).
func (c *Config) validateSafety(ch *checker) {
	s := c.Safety
	positive(ch, "safety.max_alert_age", s.MaxAlertAge)
	positive(ch, "safety.retention", s.Retention)
	positive(ch, "safety.action_timeout", s.ActionTimeout)
	positive(ch, "safety.lease_duration", s.LeaseDuration)
	if s.MaxConcurrentActions < 1 {
		ch.errorf("safety.max_concurrent_actions", "must be at least 1, got %d", s.MaxConcurrentActions)
	}
	positive(ch, "safety.storm_guard.window", s.StormGuard.Window)
	if s.StormGuard.MaxTargets < 0 {
		ch.errorf("safety.storm_guard.max_targets", "must not be negative (0 turns the storm guard off), got %d", s.StormGuard.MaxTargets)
	}
	if f := s.StormGuard.MaxWorkloadFraction; f < 0 || f > 1 {
		ch.errorf("safety.storm_guard.max_workload_fraction", "must be between 0 and 1, got %v", f)
	}
	if s.Breaker.Failures < 1 {
		ch.errorf("safety.breaker.failures", "must be at least 1, got %d", s.Breaker.Failures)
	}
	positive(ch, "safety.breaker.open_for", s.Breaker.OpenFor)
}

// validateBudgets checks safety.budgets: named once each, a handler glob, a known per, a
// positive max and window.
func (c *Config) validateBudgets(ch *checker) {
	seen := map[string]bool{}
	for i, b := range c.Safety.Budgets {
		key := fmt.Sprintf("safety.budgets[%d]", i)
		switch {
		case b.Name == "":
			ch.errorf(key+".name", "a budget needs a name")
		case seen[b.Name]:
			ch.errorf(key+".name", "budget %q is defined twice", b.Name)
		case b.Name == DrillBudgetName:
			ch.errorf(key+".name", "budget name %q is the drills' own budget (drills.budget)", b.Name)
		}
		seen[b.Name] = true
		if _, err := filepath.Match(b.Match, ""); err != nil || b.Match == "" {
			ch.errorf(key+".match", "match must be a handler glob like \"k8s.*\", got %q", b.Match)
		}
		switch b.Per {
		case "namespace", "cluster", "global":
		default:
			ch.errorf(key+".per", "per must be namespace, cluster or global, got %q", b.Per)
		}
		if b.Max < 1 {
			ch.errorf(key+".max", "must be at least 1, got %d", b.Max)
		}
		positive(ch, key+".window", b.Window)
	}
}

// validateBus checks bus: the stream's name and bounds, the duplicate window against
// MinDuplicateWindow and max_age, ack_wait, consumers and replicas.
func (c *Config) validateBus(ch *checker) {
	b := c.Bus
	if err := checkStreamName(b.Stream); err != nil {
		ch.errorf("bus.stream", "%v", err)
	}
	if b.MaxBytes <= 0 {
		ch.errorf("bus.max_bytes", "must be positive, got %s", b.MaxBytes)
	}
	if b.MaxMsgs <= 0 {
		ch.errorf("bus.max_msgs", "must be positive, got %d", b.MaxMsgs)
	}
	if b.MaxAge < 0 {
		ch.errorf("bus.max_age", "must not be negative (0 means no age limit), got %s", b.MaxAge)
	}
	if b.DuplicateWindow.D() < MinDuplicateWindow {
		ch.errorf("bus.duplicate_window", "must be at least %s, got %s", Duration(MinDuplicateWindow), b.DuplicateWindow)
	} else if b.MaxAge > 0 && b.DuplicateWindow > b.MaxAge {
		ch.errorf("bus.duplicate_window", "%s is longer than bus.max_age %s", b.DuplicateWindow, b.MaxAge)
	}
	if b.AckWait.D() < time.Second {
		ch.errorf("bus.ack_wait", "must be at least 1s, got %s", b.AckWait)
	}
	if b.Consumers < 1 || b.Consumers > 64 {
		ch.errorf("bus.consumers", "must be between 1 and 64, got %d", b.Consumers)
	}
	if b.Replicas < 1 || b.Replicas > 5 {
		ch.errorf("bus.replicas", "must be between 1 and 5, got %d", b.Replicas)
	} else if b.Replicas > 1 && c.NATS.URL == "" {
		ch.errorf("bus.replicas", "%d replicas need an external JetStream cluster (nats.url); the embedded server keeps 1", b.Replicas)
	}
}

func positive(c *checker, key string, d Duration) {
	if d <= 0 {
		c.errorf(key, "must be positive, got %s", d)
	}
}

// checkHost accepts "host", "host:port", an IP, "[v6]" or "[v6]:port"; no scheme, path or userinfo.
func checkHost(s string) error {
	if s == "" {
		return fmt.Errorf("empty host")
	}
	if strings.Contains(s, "://") {
		return fmt.Errorf("want host or host:port, without a scheme")
	}
	if strings.ContainsAny(s, "/?#@ \t") {
		return fmt.Errorf("want host or host:port, without a path, query or userinfo")
	}
	host := s
	switch {
	case strings.HasPrefix(s, "["): // [v6] or [v6]:port
		return checkBracketedIPv6(s)
	case strings.Count(s, ":") > 1: // bare v6
		if net.ParseIP(s) == nil {
			return fmt.Errorf("want host or host:port")
		}
		return nil
	case strings.Contains(s, ":"):
		h, err := splitHostPort(s)
		if err != nil {
			return err
		}
		host = h
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	return checkHostName(host)
}

// checkBracketedIPv6 accepts "[v6]" and "[v6]:port".
func checkBracketedIPv6(s string) error {
	host := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if !strings.HasSuffix(s, "]") {
		h, err := splitHostPort(s)
		if err != nil {
			return err
		}
		host = h
	}
	if !strings.Contains(host, ":") || net.ParseIP(host) == nil {
		return fmt.Errorf("want [ipv6] or [ipv6]:port")
	}
	return nil
}

// checkHostName accepts dot-separated labels of 1 to 63 letters, digits, '-' and '_'.
func checkHostName(host string) error {
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("invalid host name")
		}
		for _, r := range label {
			if !isAlnum(r) && r != '-' && r != '_' {
				return fmt.Errorf("invalid character %q in host name", r)
			}
		}
	}
	return nil
}

func splitHostPort(s string) (string, error) {
	h, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("want host or host:port: %w", err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return h, nil
}

// checkStreamName applies JetStream's rules for stream names.
func checkStreamName(s string) error {
	if s == "" {
		return fmt.Errorf("empty stream name")
	}
	if len(s) > 255 {
		return fmt.Errorf("stream name longer than 255 characters")
	}
	if strings.ContainsAny(s, " \t\r\n.*>/\\") {
		return fmt.Errorf("stream name %q may not contain whitespace, '.', '*', '>', '/' or '\\'", s)
	}
	return nil
}

// isAlnum reports whether r is an ASCII letter or digit.
func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}
