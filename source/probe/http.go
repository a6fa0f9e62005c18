package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"time"

	"github.com/responder-sre/responder/config"
)

// maxBody is how much of a response body an http probe reads (and searches with body_regexp).
const maxBody = 1 << 20

type httpCheck struct {
	cfg    *config.HTTPProbe
	client *http.Client
	body   *regexp.Regexp
	inst   string
}

func newHTTPCheck(c *config.HTTPProbe) (*httpCheck, error) {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return nil, errors.New("http: invalid url")
	}
	tlsCfg, err := tlsConfig(c.TLS.CA, c.TLS.CAFile, c.TLS.ServerName, c.TLS.InsecureSkipVerify)
	if err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	h := &httpCheck{
		cfg: c,
		client: &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{}).DialContext,
			TLSClientConfig:     tlsCfg,
			DisableKeepAlives:   true, // every run measures a fresh connection, as a client would see it
			TLSHandshakeTimeout: 0,    // bounded by the run's context
		}},
		// The instance label: no userinfo, no query (either may hold a credential).
		inst: (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String(),
	}
	if c.BodyRegexp != "" {
		if h.body, err = regexp.Compile(c.BodyRegexp); err != nil {
			return nil, fmt.Errorf("http: body_regexp: %w", err)
		}
	}
	return h, nil
}

// tlsConfig builds a client TLS config trusting ca (or the file, or the system roots).
func tlsConfig(ca []byte, caFile, serverName string, insecure bool) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: insecure} //nolint:gosec // the user's explicit choice
	if ca == nil && caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		ca = b
	}
	if ca != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, errors.New("ca_file holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func (h *httpCheck) instance() string { return h.inst }

func (h *httpCheck) check(ctx context.Context) Measurement {
	m := Measurement{Value: nanValue}
	req, err := http.NewRequestWithContext(ctx, h.cfg.Method, h.cfg.URL, nil)
	if err != nil {
		m.Err = errors.New("http: invalid request")
		return m
	}
	for k, v := range h.cfg.Headers {
		req.Header.Set(k, v.Value())
	}
	if req.Header.Get("Host") != "" {
		req.Host = req.Header.Get("Host")
	}
	start := time.Now()
	resp, err := h.client.Do(req)
	if err != nil {
		// url.Error repeats the URL, which may carry a token in its query: keep the cause only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		m.Err = fmt.Errorf("%s %s: %w", h.cfg.Method, h.inst, err)
		return m
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	m.Duration = time.Since(start)
	m.Value = m.Duration.Seconds()
	switch {
	case err != nil:
		m.Err = fmt.Errorf("%s %s: reading the body: %w", h.cfg.Method, h.inst, err)
	case !slices.Contains(h.cfg.ExpectStatus, resp.StatusCode):
		m.Err = fmt.Errorf("%s %s: status %d, want %v", h.cfg.Method, h.inst, resp.StatusCode, h.cfg.ExpectStatus)
	case h.body != nil && !h.body.Match(body):
		m.Err = fmt.Errorf("%s %s: body does not match %q", h.cfg.Method, h.inst, h.cfg.BodyRegexp)
	}
	return m
}
