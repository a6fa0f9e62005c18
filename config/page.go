package config

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strings"
)

// PageTeamsConfig is page.teams's endpoint: a Microsoft Teams Workflows webhook URL ("Post to a
// channel when a webhook request is received"), or a legacy Office 365 incoming-webhook URL. The
// URL is a secret (its signature or path is the credential); it has a *_file variant. The handler
// is configured when the URL is set.
type PageTeamsConfig struct {
	URL     Secret   `yaml:"url"`
	URLFile string   `yaml:"url_file"`
	Timeout Duration `yaml:"timeout"` // per attempt, default 10s
}

// Configured reports whether page.teams has an endpoint.
func (t PageTeamsConfig) Configured() bool { return t.URL != "" }

// PageEmailConfig is page.email's mail submission: the SMTP server, the sender and the default
// recipients. The handler is configured when any of smtp.host, from or to is set; a configured
// section needs all three.
type PageEmailConfig struct {
	SMTP SMTPConfig `yaml:"smtp"`
	// From is the sender, "Name <addr@example.com>" or a bare address; it is also the envelope
	// sender (MAIL FROM) and gives the Message-ID its domain.
	From string `yaml:"from"`
	// To are the default recipients; a rule's `to` param replaces them.
	To      []string `yaml:"to"`
	Timeout Duration `yaml:"timeout"` // per attempt (connection to QUIT), default 30s
}

// Configured reports whether the email section asks for page.email (see PageEmailConfig).
func (e PageEmailConfig) Configured() bool {
	return e.SMTP.Host != "" || e.From != "" || len(e.To) > 0
}

// SMTPConfig is how page.email reaches its mail server: mail submission with STARTTLS (required
// unless StartTLS is false, which only a loopback host may be) and AUTH PLAIN over it.
type SMTPConfig struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"` // default 587 (submission)
	// StartTLS upgrades the connection before anything else is sent, verifying the server's
	// certificate for Host (default true). Only a loopback host may turn it off.
	StartTLS bool `yaml:"starttls"`
	// CAFile is a PEM bundle to verify the server's certificate with instead of the system roots,
	// relative to the config file.
	CAFile string `yaml:"ca_file"`
	// Hello is the name given in EHLO (default: this machine's host name).
	Hello string `yaml:"hello"`
	// Username and Password authenticate with AUTH PLAIN (only over TLS, or to a loopback host).
	Username     string `yaml:"username"`
	Password     Secret `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// CA is the content of CAFile, read at load. Not YAML.
	CA []byte `yaml:"-"`
}

// smtpsPort is implicit TLS (SMTPS), which page.email does not speak.
const smtpsPort = 465

// resolvePageSecrets reads page.teams's url_file, page.email's password_file and its ca_file.
func resolvePageSecrets(cfg *Config, c *checker, o options) {
	p := &cfg.Handlers.Page
	readOne(cfg, c, o, "handlers.page.teams.url", &p.Teams.URL, p.Teams.URLFile)
	s := &p.Email.SMTP
	readOne(cfg, c, o, "handlers.page.email.smtp.password", &s.Password, s.PasswordFile)
	if s.CAFile != "" {
		s.CAFile = absPath(cfg.Dir, s.CAFile)
		if b, ok := readFile(cfg, c, o, "handlers.page.email.smtp.ca_file", s.CAFile); ok {
			s.CA = b
		}
	}
}

// validatePage checks handlers.page.teams and handlers.page.email (page.webhook's url is checked
// by its handler, which stays registered unconfigured).
func (c *Config) validatePage(ch *checker) {
	t := c.Handlers.Page.Teams
	if t.URL != "" {
		key := "handlers.page.teams.url"
		if t.URLFile != "" {
			key += "_file"
		}
		// The URL is a secret: the errors never quote it.
		u, err := url.Parse(strings.TrimSpace(t.URL.Value()))
		switch {
		case err != nil:
			ch.errorf(key, "is not a valid URL")
		case u.Scheme != "https" && u.Scheme != "http":
			ch.errorf(key, "scheme %q is not https or http", u.Scheme)
		case u.Hostname() == "":
			ch.errorf(key, "has no host")
		case u.User != nil:
			ch.errorf(key, "may not hold userinfo")
		}
	}
	if e := c.Handlers.Page.Email; e.Configured() {
		validateEmail(ch, e)
	}
}

// validateEmail checks a configured handlers.page.email.
func validateEmail(ch *checker, e PageEmailConfig) {
	validateSMTP(ch, e.SMTP)
	validateMailAddresses(ch, e)
}

// validateSMTP checks handlers.page.email.smtp.
func validateSMTP(ch *checker, s SMTPConfig) {
	const key = "handlers.page.email"
	switch {
	case strings.TrimSpace(s.Host) == "":
		ch.errorf(key+".smtp.host", "required when page.email is configured")
	case checkHost(s.Host) != nil || strings.Contains(s.Host, ":") && !strings.HasPrefix(s.Host, "["):
		ch.errorf(key+".smtp.host", "%q is not a host name or IP address (the port goes in smtp.port)", s.Host)
	}
	switch {
	case s.Port < 1 || s.Port > 65535:
		ch.errorf(key+".smtp.port", "must be between 1 and 65535, got %d", s.Port)
	case s.Port == smtpsPort && s.StartTLS:
		ch.errorf(key+".smtp.port", "465 is implicit TLS (SMTPS), which page.email does not speak; use the submission port 587 with STARTTLS")
	}
	if !s.StartTLS && s.Host != "" && !IsLoopbackHost(s.Host) {
		ch.errorf(key+".smtp.starttls", "may be false only for a loopback host (localhost, 127.0.0.1, ::1), not %q: mail and its password would cross the network in clear", s.Host)
	}
	if s.CA != nil {
		checkCA(ch, key+".smtp.ca_file", s.CA)
	}
	if s.Hello != "" && checkHostName(s.Hello) != nil {
		ch.errorf(key+".smtp.hello", "%q is not a host name", s.Hello)
	}
	validateSMTPAuth(ch, s)
}

// validateSMTPAuth checks that username and password go together.
func validateSMTPAuth(ch *checker, s SMTPConfig) {
	const key = "handlers.page.email.smtp"
	switch {
	case s.Username != "" && s.Password == "" && s.PasswordFile == "": // an unreadable file is reported already
		ch.errorf(key+".username", "needs smtp.password or smtp.password_file")
	case s.Username == "" && s.Password != "":
		pkey := key + ".password"
		if s.PasswordFile != "" {
			pkey += "_file"
		}
		ch.errorf(pkey, "needs smtp.username")
	}
}

// validateMailAddresses checks handlers.page.email's from and to.
func validateMailAddresses(ch *checker, e PageEmailConfig) {
	const key = "handlers.page.email"
	switch a, err := mail.ParseAddress(e.From); {
	case strings.TrimSpace(e.From) == "":
		ch.errorf(key+".from", "required when page.email is configured")
	case err != nil:
		ch.errorf(key+".from", "%q is not an email address: %v", e.From, err)
	case !strings.Contains(a.Address, "@"):
		ch.errorf(key+".from", "%q has no domain", e.From)
	}
	if len(e.To) == 0 {
		ch.errorf(key+".to", "required when page.email is configured (a rule's to param may replace it, but a default is needed)")
	}
	for i, to := range e.To {
		if err := CheckMailbox(to); err != nil {
			ch.errorf(sliceKey(key+".to", i), "%v", err)
		}
	}
}

// CheckMailbox checks one recipient: "Name <addr@example.com>" or a bare address, one of them.
// page.email checks its `to` param with it.
func CheckMailbox(s string) error {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return fmt.Errorf("%q is not an email address: %w", s, err)
	}
	if !strings.Contains(a.Address, "@") {
		return fmt.Errorf("%q has no domain", s)
	}
	return nil
}

// IsLoopbackHost reports whether host (no port) names this machine: localhost or a loopback IP.
func IsLoopbackHost(host string) bool {
	h := strings.TrimSuffix(strings.TrimPrefix(strings.ToLower(host), "["), "]")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
