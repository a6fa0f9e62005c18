package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/responder-sre/responder/config"
)

// tlsCheck handshakes with addr and reports the days until the leaf certificate expires
// (fractional, negative once expired). The chain is verified after the handshake, so a
// certificate that does not verify (expired, wrong name, unknown authority) is a failure that
// still carries its value.
type tlsCheck struct {
	addr, serverName string
	roots            *x509.CertPool // nil: the system roots
}

func newTLSCheck(c *config.TLSProbe) (*tlsCheck, error) {
	host, _, err := net.SplitHostPort(c.Address)
	if err != nil {
		return nil, fmt.Errorf("tls: address: %w", err)
	}
	t := &tlsCheck{addr: c.Address, serverName: c.ServerName}
	if t.serverName == "" {
		t.serverName = host
	}
	if c.CA != nil || c.CAFile != "" {
		cfg, err := tlsConfig(c.CA, c.CAFile, "", false)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		t.roots = cfg.RootCAs
	}
	return t, nil
}

func (c *tlsCheck) instance() string { return c.addr }

func (c *tlsCheck) check(ctx context.Context) Measurement {
	start := time.Now()
	d := tls.Dialer{Config: &tls.Config{
		ServerName: c.serverName,
		// Verified below, by hand, so an expired or untrusted certificate still yields its expiry.
		InsecureSkipVerify: true, //nolint:gosec // verified after the handshake
	}}
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	dur := time.Since(start)
	if err != nil {
		return Measurement{Value: nanValue, Err: fmt.Errorf("tls %s: %w", c.addr, err), Duration: dur}
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return Measurement{Value: nanValue, Err: fmt.Errorf("tls %s: no certificate", c.addr), Duration: dur}
	}
	leaf := certs[0]
	now := time.Now()
	m := Measurement{Value: leaf.NotAfter.Sub(now).Hours() / 24, Duration: dur}
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: c.roots, Intermediates: inter, DNSName: c.serverName, CurrentTime: now,
	}); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			err = fmt.Errorf("certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		m.Err = fmt.Errorf("tls %s: %w", c.addr, err)
	}
	return m
}
