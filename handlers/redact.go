package handlers

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
)

// DefaultSecretPathHosts are the hosts whose URL paths embed a secret: Slack, Teams and Discord
// incoming webhooks (https://hooks.slack.com/services/T…/B…/<token>). handlers.http.
// secret_path_hosts adds to them. "*.example.com" matches the subdomains of example.com.
var DefaultSecretPathHosts = []string{
	"hooks.slack.com",
	"*.webhook.office.com", "outlook.office.com", "outlook.office365.com",
	"discord.com", "*.discord.com", "discordapp.com", "*.discordapp.com",
}

// RedactedPath is what a redacted URL path shows.
const RedactedPath = "/<redacted>"

// URLRedactor turns URLs into text fit for targets, errors and logs: no userinfo, no query, no
// fragment, and no path on a secret-bearing host. The zero value knows only the default hosts.
type URLRedactor struct {
	exact    map[string]bool
	suffixes []string // ".example.com" for "*.example.com"
}

// NewURLRedactor returns a redactor for DefaultSecretPathHosts plus extra.
func NewURLRedactor(extra []string) URLRedactor {
	r := URLRedactor{exact: map[string]bool{}}
	for _, h := range append(append([]string(nil), DefaultSecretPathHosts...), extra...) {
		h = strings.ToLower(strings.TrimSpace(h))
		if s, ok := strings.CutPrefix(h, "*."); ok {
			r.suffixes = append(r.suffixes, "."+s)
			continue
		}
		r.exact[h] = true
	}
	return r
}

// SecretPath reports whether the paths of host (host or host:port) embed a secret.
func (r URLRedactor) SecretPath(host string) bool {
	if r.exact == nil {
		r = NewURLRedactor(nil)
	}
	h := strings.ToLower(host)
	if r.exact[h] {
		return true
	}
	if name, _, ok := strings.Cut(h, ":"); ok && !strings.HasPrefix(h, "[") {
		h = name
	}
	if r.exact[h] {
		return true
	}
	for _, s := range r.suffixes {
		if strings.HasSuffix(h, s) {
			return true
		}
	}
	return false
}

// Path returns the (escaped) path as targets show it: RedactedPath on a secret-bearing host.
func (r URLRedactor) Path(host, path string) string {
	if r.SecretPath(host) {
		return RedactedPath
	}
	return path
}

// URL returns u without userinfo, query and fragment, and without its path on a secret-bearing
// host.
func (r URLRedactor) URL(u *url.URL) string {
	c := url.URL{Scheme: u.Scheme, Host: u.Host, Opaque: u.Opaque, Path: u.Path, RawPath: u.RawPath}
	if c.Opaque != "" {
		c.Opaque = "<redacted>"
	}
	s := c.String()
	if r.SecretPath(u.Host) {
		s = c.Scheme + "://" + c.Host + RedactedPath
	}
	return s
}

// String is URL for a URL in text form; text that does not parse becomes "<url>".
func (r URLRedactor) String(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<url>"
	}
	return r.URL(u)
}

// Text returns s (an error message) with the URL of every *url.Error in err's chain redacted:
// net/http quotes the full request URL, query and userinfo included.
func (r URLRedactor) Text(err error, s string) string {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if ue, ok := e.(*url.Error); ok && ue.URL != "" { //nolint:errorlint // the loop walks the chain itself, link by link
			red := r.String(ue.URL)
			s = strings.ReplaceAll(s, strconv.Quote(ue.URL), strconv.Quote(red))
			s = strings.ReplaceAll(s, ue.URL, red)
		}
	}
	return s
}

// Error is Text(err, err.Error()); "" for nil.
func (r URLRedactor) Error(err error) string {
	if err == nil {
		return ""
	}
	return r.Text(err, err.Error())
}
