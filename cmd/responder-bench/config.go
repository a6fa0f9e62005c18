package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// token is the webhook bearer token of every responder under test.
const token = "bench-token"

// benchRule is the name of the rule every bench alert matches.
const benchRule = "restart-crashlooping-pod"

// blackhole is the host:port of the generated rules' actions (discard; they never match).
const blackhole = "127.0.0.1:9"

// responderConfig is what one phase's responder runs on.
type responderConfig struct {
	dbURL     string
	consumers int
	rules     int
	// actionURL is where the bench rule's http.request goes; notify makes it class notify (the
	// notify phase, which runs for real), otherwise it is the default class, disruptive (dry run).
	actionURL string
	notify    bool
	// allowedHosts are handlers.http.allowed_hosts besides blackhole.
	allowedHosts []string
	// external, if set, is the external JetStream cluster the responder uses instead of its
	// embedded server (the scaling phase).
	external *externalBus
}

// externalBus is an external JetStream cluster and what a replica needs to use it.
type externalBus struct {
	url      string // nats.url, without credentials
	user     string // nats.user
	password string // written to nats-password (nats.password_file)
	// signingKey is written to bus-signing-key (bus.signing_key_file), the same for every replica.
	signingKey string
	replicas   int // bus.replicas
}

// write writes responder.yml and rules.yml into dir and returns the config file's path.
func (c responderConfig) write(dir string) (string, error) {
	hosts := append([]string{blackhole}, c.allowedHosts...)
	cfg := fmt.Sprintf("database: {url: %q, max_conns: 16}\nwebhook: {bearer_token: %q}\napi: {token: admin}\n"+
		"rule_files: [rules.yml]\nhandlers: {http: {allowed_hosts: [%s]}}\n",
		c.dbURL, token, quoteList(hosts))
	if x := c.external; x != nil {
		pw, key := filepath.Join(dir, "nats-password"), filepath.Join(dir, "bus-signing-key")
		if err := os.WriteFile(pw, []byte(x.password+"\n"), 0o600); err != nil {
			return "", err
		}
		if err := os.WriteFile(key, []byte(x.signingKey+"\n"), 0o600); err != nil {
			return "", err
		}
		cfg += fmt.Sprintf("nats: {url: %q, user: %q, password_file: %q}\nbus: {consumers: %d, replicas: %d, signing_key_file: %q}\n",
			x.url, x.user, pw, c.consumers, x.replicas, key)
	} else {
		cfg += fmt.Sprintf("bus: {consumers: %d}\n", c.consumers)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), []byte(rulesYAML(c.rules, c.benchRule())), 0o644); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "responder.yml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// benchRule is the YAML of the one rule the bench alerts match: an http.request whose body names
// the alert's pod.
func (c responderConfig) benchRule() string {
	if c.notify {
		return fmt.Sprintf(`  - name: %s
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing" && alert.labels.severity == "critical"
    actions:
      - handler: http.request
        params:
          url: %q
          class: notify
          body: '{{ toJSON({pod: alert.labels.pod, namespace: alert.labels.namespace}) }}'
`, benchRule, c.actionURL)
	}
	return fmt.Sprintf(`  - name: %s
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing" && alert.labels.severity == "critical"
    cooldown: 15m
    actions:
      - handler: http.request
        params:
          url: %q
          body: '{{ toJSON({pod: alert.labels.pod, namespace: alert.labels.namespace}) }}'
`, benchRule, c.actionURL)
}

// rulesYAML is a rule file of n rules: the bench rule (last) and n-1 generated ones, shaped like a
// real pack. Of the generated rules 90% pin alert.name or alert.labels.service by equality, spread
// over 300 values (150 alert names, 150 services); one in 300 pins alert.name
// "KubePodCrashLooping" but another namespace (a near miss for the bench alerts); 10% pin nothing
// (the residual: a pod prefix), so only a full evaluation rules them out. None but the bench rule
// matches the bench alerts.
func rulesYAML(n int, bench string) string {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range n - 1 {
		var when string
		k := i % 300
		switch {
		case i%10 == 9:
			when = fmt.Sprintf(`alert.labels.pod startsWith "batch-%d-" && alert.status == "firing"`, i)
		case k == 0:
			when = fmt.Sprintf(`alert.name == "KubePodCrashLooping" && alert.labels.namespace == "team-%d"`, i/300)
		case k%2 == 0:
			when = fmt.Sprintf(`alert.name == "BenchAlert%03d" && alert.labels.severity == "critical"`, k/2)
		default:
			when = fmt.Sprintf(`alert.labels.service == "svc-%03d" && alert.status == "firing"`, k/2)
		}
		fmt.Fprintf(&b, "  - name: generated-%d\n    when: %s\n    actions:\n      - handler: http.request\n"+
			"        params: {url: \"http://%s/x\", body: '{{ alert.labels.pod }}'}\n", i, yamlQuote(when), blackhole)
	}
	b.WriteString(bench)
	return b.String()
}

// yamlQuote single-quotes s for YAML.
func yamlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
