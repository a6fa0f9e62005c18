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
	"strconv"
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
	h := &httpCheck{cfg: c, client: newHTTPClient(tlsCfg), inst: urlInstance(u)}
	if c.BodyRegexp != "" {
		if h.body, err = regexp.Compile(c.BodyRegexp); err != nil {
			return nil, fmt.Errorf("http: body_regexp: %w", err)
		}
	}
	return h, nil
}

// newHTTPClient is the client of the probes that speak HTTP: a fresh connection every run (as
// a client would see it), TLS as configured, bounded by the run's context.
func newHTTPClient(tlsCfg *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{}).DialContext,
		TLSClientConfig:     tlsCfg,
		DisableKeepAlives:   true, // every run measures a fresh connection, as a client would see it
		TLSHandshakeTimeout: 0,    // bounded by the run's context
	}}
}

// urlInstance is the instance label of a URL: no userinfo, no query (either may hold a
// credential).
func urlInstance(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// requestError is a failed request's error without the URL that url.Error repeats (its query
// may carry a token): "GET http://host/path: cause".
func requestError(method, inst string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%s %s: %w", method, inst, err)
}

// setHeaders sets the configured headers on req; a Host header sets the request's host.
func setHeaders(req *http.Request, headers map[string]config.Secret) {
	for k, v := range headers {
		req.Header.Set(k, v.Value())
	}
	if req.Header.Get("Host") != "" {
		req.Host = req.Header.Get("Host")
	}
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
	setHeaders(req, h.cfg.Headers)
	start := time.Now()
	resp, err := h.client.Do(req)
	if err != nil {
		m.Err = requestError(h.cfg.Method, h.inst, err)
		return m
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	m.Duration = time.Since(start)
	m.Value = m.Duration.Seconds()
	if err != nil {
		m.Err = fmt.Errorf("%s %s: reading the body: %w", h.cfg.Method, h.inst, err)
		return m
	}
	if why := h.badStatus(resp.StatusCode); why != "" {
		m.Err = fmt.Errorf("%s %s: %s", h.cfg.Method, h.inst, why)
	} else if h.body != nil && !h.body.Match(body) {
		m.Err = fmt.Errorf("%s %s: body does not match %q", h.cfg.Method, h.inst, h.cfg.BodyRegexp)
	}
	if m.Err != nil && len(h.cfg.StatusMap) > 0 {
		// Only failures carry it: a success's labels are remembered for later failures (see
		// State.Observed), and a connection failure has no status.
		m.Labels = map[string]string{config.LabelHTTPStatus: strconv.Itoa(resp.StatusCode)}
	}
	return m
}

// badStatus says why status fails the run ("" when it does not): by status_map when the probe
// has one, else by expect_status.
func (h *httpCheck) badStatus(status int) string {
	if len(h.cfg.StatusMap) == 0 {
		if slices.Contains(h.cfg.ExpectStatus, status) {
			return ""
		}
		return fmt.Sprintf("status %d, want %v", status, h.cfg.ExpectStatus)
	}
	switch st, ok := h.cfg.StatusMap[status]; {
	case !ok:
		return fmt.Sprintf("status %d is not in status_map", status)
	case st != config.StatusOK:
		return fmt.Sprintf("status %d is %s in status_map", status, st)
	}
	return ""
}
