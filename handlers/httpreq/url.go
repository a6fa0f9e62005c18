package httpreq

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// errRedirect marks a redirect the allow list refused.
var errRedirect = errors.New("redirect refused")

// checkStaticURL checks a url param as written in a rule: a literal URL fully, a templated one by
// the scheme://host[:port]/ that must precede its first template.
func (h *Handler) checkStaticURL(raw string) error {
	i := strings.Index(raw, "{{")
	if i < 0 {
		u, host, err := h.parseURL(raw)
		if err == nil && hasDotDot(u.EscapedPath()) {
			err = fmt.Errorf("url path %q has a .. segment", h.redact.Path(host, u.EscapedPath()))
		}
		return err
	}
	prefix := raw[:i]
	j := strings.Index(prefix, "://")
	if j < 0 {
		return fmt.Errorf("url %q: scheme and host may not be templated (write scheme://host/ before the first {{)", raw)
	}
	k := strings.IndexByte(prefix[j+3:], '/')
	if k < 0 {
		return fmt.Errorf("url %q: host may not be templated (write scheme://host/ before the first {{)", raw)
	}
	_, _, err := h.parseURL(prefix[:j+3+k+1])
	return err
}

// parseURL parses an absolute http(s) URL on an allowed host, without userinfo, and returns it with
// its canonical host (lower-case, default port dropped).
func (h *Handler) parseURL(raw string) (*url.URL, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", fmt.Errorf("url: %w", err)
	}
	host, err := h.checkURL(u)
	if err != nil {
		return nil, "", fmt.Errorf("url %q: %w", h.redact.URL(u), err)
	}
	return u, host, nil
}

// checkURL checks the scheme, userinfo and host of u and returns its canonical host.
func (h *Handler) checkURL(u *url.URL) (string, error) {
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("scheme %q is not http or https", u.Scheme)
	}
	if u.User != nil {
		return "", errors.New("userinfo is not allowed in the url; send credentials in headers")
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return "", errors.New("no host")
	}
	host := canonicalHost(u)
	if h.allowed[host] {
		return host, nil
	}
	if p := u.Port(); (p == "" || p == defaultPort(u.Scheme)) && h.allowed[host+":"+defaultPort(u.Scheme)] {
		return host, nil
	}
	return "", fmt.Errorf("host %q is not in handlers.http.allowed_hosts", host)
}

// canonicalHost is u's host[:port], lower-case, without the scheme's default port.
func canonicalHost(u *url.URL) string {
	host := strings.ToLower(u.Host)
	if p := u.Port(); p != "" && p == defaultPort(u.Scheme) {
		host = strings.TrimSuffix(host, ":"+p)
	}
	return host
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// hasDotDot reports whether an escaped path has a ".." segment: separated by "/" or "\", also
// when percent-encoded ("%2e%2e"). A rendered value's "/" arrives escaped ("%2F"), so it does not
// separate segments: the value stays one segment.
func hasDotDot(escaped string) bool {
	for seg := range strings.FieldsFuncSeq(escaped, func(r rune) bool { return r == '/' || r == '\\' }) {
		if seg == ".." {
			return true
		}
		d, err := url.PathUnescape(seg)
		if err == nil && slices.Contains(strings.Split(d, "\\"), "..") {
			return true
		}
	}
	return false
}

// checkRedirect follows a redirect only to an allowed http(s) host, at most maxRedirects times.
func (h *Handler) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("%w: more than %d redirects", errRedirect, maxRedirects)
	}
	if _, err := h.checkURL(req.URL); err != nil {
		return fmt.Errorf("%w to %s: %w", errRedirect, h.redact.URL(req.URL), err)
	}
	if hasDotDot(req.URL.EscapedPath()) {
		return fmt.Errorf("%w to %s: .. in path", errRedirect, h.redact.URL(req.URL))
	}
	return nil
}
