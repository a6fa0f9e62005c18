package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testCAPEM returns a self-signed certificate in PEM.
func testCAPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestLoadPage(t *testing.T) {
	ca := testCAPEM(t)
	cfg := mustLoad(t, "conf.page.yml", slackFiles(map[string]string{"teams-url": "https://prod-01.westeurope.logic.azure.com/workflows/x?sig=SECRETSIG",
		"smtp-ca.pem": ca, "smtp-password": "SECRETPASSWORD"}))
	p := cfg.Handlers.Page
	if !p.Teams.Configured() || !p.Email.Configured() {
		t.Fatalf("configured: teams %v, email %v", p.Teams.Configured(), p.Email.Configured())
	}
	checks := []struct {
		key       string
		got, want any
	}{
		{"teams.url", p.Teams.URL.Value(), "https://prod-01.westeurope.logic.azure.com/workflows/x?sig=SECRETSIG"},
		{"teams.timeout", p.Teams.Timeout.D(), 5 * time.Second},
		{"email.smtp.host", p.Email.SMTP.Host, "smtp.example.com"},
		{"email.smtp.port", p.Email.SMTP.Port, 2587},
		{"email.smtp.starttls", p.Email.SMTP.StartTLS, true},
		{"email.smtp.ca", string(p.Email.SMTP.CA), ca + "\n"},
		{"email.smtp.hello", p.Email.SMTP.Hello, "responder.example.com"},
		{"email.smtp.username", p.Email.SMTP.Username, "responder"},
		{"email.smtp.password", p.Email.SMTP.Password.Value(), "SECRETPASSWORD"},
		{"email.from", p.Email.From, "Responder <responder@example.com>"},
		{"email.timeout", p.Email.Timeout.D(), time.Minute},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.key, c.got, c.want)
		}
	}
	if want := []string{"oncall@example.com", "DBA <dba@example.com>"}; !cmp.Equal(p.Email.To, want) {
		t.Errorf("email.to = %q", p.Email.To)
	}
	if got := fmt.Sprintf("%v %+v", p, p); strings.Contains(got, "SECRET") {
		t.Errorf("handlers.page prints its secrets: %s", got)
	}
}

func TestPageDefaults(t *testing.T) {
	for name, cfg := range map[string]*Config{"Default()": Default(), "conf.empty.yml": mustLoad(t, "conf.empty.yml")} {
		p := cfg.Handlers.Page
		if p.Teams.Configured() || p.Email.Configured() || p.Email.SMTP.Port != 587 || !p.Email.SMTP.StartTLS {
			t.Errorf("%s: handlers.page = %+v; want unconfigured, port 587, starttls", name, p)
		}
	}
	cfg := mustLoad(t, "conf.page-loopback.yml")
	if s := cfg.Handlers.Page.Email.SMTP; s.StartTLS || s.Port != 2525 || s.Host != "localhost" {
		t.Errorf("loopback smtp = %+v", s)
	}
}

func TestLoadPageErrors(t *testing.T) {
	for _, tc := range []struct {
		file  string
		files map[string]string
		want  []string
	}{
		{"conf.page-bad.yml", map[string]string{"not-pem": "hello"}, []string{
			`conf.page-bad.yml:4: handlers.page.teams.url: scheme "ftp" is not https or http`,
			`conf.page-bad.yml:7: handlers.page.email.smtp.host: "smtp.example.com:587" is not a host name or IP address (the port goes in smtp.port)`,
			`conf.page-bad.yml:8: handlers.page.email.smtp.starttls: may be false only for a loopback host`,
			`conf.page-bad.yml:9: handlers.page.email.smtp.ca_file: holds no PEM certificate`,
			`conf.page-bad.yml:10: handlers.page.email.smtp.hello: "bad name" is not a host name`,
			`conf.page-bad.yml:11: handlers.page.email.smtp.username: needs smtp.password or smtp.password_file`,
			`conf.page-bad.yml:12: handlers.page.email.from: "responder" is not an email address`,
			`conf.page-bad.yml:13: handlers.page.email.to[1]: "nobody" is not an email address`,
		}},
		{"conf.page-bad-smtps.yml", nil, []string{
			`conf.page-bad-smtps.yml:6: handlers.page.email.smtp.port: 465 is implicit TLS (SMTPS)`,
			`conf.page-bad-smtps.yml:7: handlers.page.email.smtp.password: needs smtp.username`,
		}},
		{"conf.page-bad-missing.yml", nil, []string{
			`conf.page-bad-missing.yml:4: handlers.page.email.smtp.host: required when page.email is configured`,
			`conf.page-bad-missing.yml:4: handlers.page.email.from: required when page.email is configured`,
		}},
		{"conf.page.yml", map[string]string{"teams-url": "https://x.example.com/y", "smtp-ca.pem": "x"}, []string{
			`conf.page.yml:10: handlers.page.email.smtp.ca_file: holds no PEM certificate`,
			`conf.page.yml:13: handlers.page.email.smtp.password_file: open`,
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := load(t, tc.file, slackFiles(tc.files))
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tc.want) {
				t.Errorf("%d errors, want %d:\n%v", n, len(tc.want), err)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error echoes a secret: %v", err)
			}
			var pe *posError
			if !errors.As(err, &pe) {
				t.Errorf("error %T is not positioned", err)
			}
		})
	}
}

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{"localhost": true, "LocalHost": true, "mail.localhost": true, "127.0.0.1": true,
		"127.1.2.3": true, "::1": true, "[::1]": true, "smtp.example.com": false, "10.0.0.1": false, "localhost.example.com": false, "": false} {
		if got := IsLoopbackHost(host); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v", host, got)
		}
	}
}
