package page

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"slices"
	"strings"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/delivery"
	"github.com/responder-sre/responder/vocab"
)

// errRefused is a refusal of responder's own: the server lacks what the configuration requires
// (STARTTLS, AUTH PLAIN). It is final.
var errRefused = errors.New("refused")

// attempt sends the email once over a new connection: connect, EHLO, STARTTLS, AUTH PLAIN,
// MAIL FROM, RCPT TO for each recipient, DATA, QUIT. A recipient refused means nothing is sent
// (RSET): the email goes to all its recipients or to none.
func (a *EmailAction) attempt(ctx context.Context, m *email, n int) delivery.Attempt {
	h := a.h
	prefix := fmt.Sprintf("%s %s email to %s: attempt %d: ", EmailName, a.note.status, h.addr, n)
	actx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	step, err := h.send(actx, m)
	if err == nil {
		return delivery.Attempt{}
	}
	return h.classify(ctx, actx, prefix+step+": ", err)
}

// send runs one SMTP session; on error it returns the step that failed.
func (h *Email) send(ctx context.Context, m *email) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return "connect", err
	}
	// The deadline bounds every read and write; cancelling ctx (a pause, shutdown) closes the
	// connection at once.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	c, err := smtp.NewClient(conn, h.host)
	if err != nil {
		_ = conn.Close()
		return "greeting", err
	}
	defer c.Close()
	if err := c.Hello(h.hello); err != nil {
		return "EHLO", err
	}
	if h.startTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return "STARTTLS", fmt.Errorf("%w: the server does not offer STARTTLS, which handlers.page.email.smtp.starttls requires", errRefused)
		}
		cfg := &tls.Config{ServerName: h.host, RootCAs: h.rootCAs, MinVersion: tls.VersionTLS12}
		if err := c.StartTLS(cfg); err != nil {
			return "STARTTLS", err
		}
	}
	if h.username != "" {
		if ok, mechs := c.Extension("AUTH"); !ok || !slices.Contains(strings.Fields(strings.ToUpper(mechs)), "PLAIN") {
			return "AUTH", fmt.Errorf("%w: the server offers no AUTH PLAIN here (mechanisms: %q)", errRefused, mechs)
		}
		if err := c.Auth(smtp.PlainAuth("", h.username, h.password, h.host)); err != nil {
			return "AUTH PLAIN", err
		}
	}
	if err := c.Mail(m.from); err != nil {
		return "MAIL FROM", err
	}
	for _, r := range m.rcpts {
		if err := c.Rcpt(r); err != nil {
			_ = c.Reset()
			return "RCPT TO <" + r + ">", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "DATA", err
	}
	if _, err := w.Write(m.bytes(h.now())); err != nil {
		return "DATA", err
	}
	// Close sends the final "." and reads the reply: 250 means the server took the message.
	if err := w.Close(); err != nil {
		return "end of DATA", err
	}
	_ = c.Quit() // the message is the server's now: a failed QUIT changes nothing
	return "", nil
}

// classify turns a failed session into an Attempt: a 4xx reply, a timeout or a broken connection
// is retried (server_error, timeout); a 5xx reply, a certificate that does not verify and a
// refusal of responder's own are final (client_error). The message never holds the password.
func (h *Email) classify(ctx, actx context.Context, prefix string, err error) delivery.Attempt {
	msg := prefix + h.scrub(err.Error())
	var te *textproto.Error
	var ne net.Error
	var (
		reason vocab.Reason
		retry  bool
	)
	switch {
	case ctx.Err() != nil:
		// The action's own deadline, a cancellation or an interruption: no attempt can follow.
		return delivery.Attempt{Err: &handlers.Error{Reason: handlers.ReasonOf(context.Cause(ctx)),
			Err: fmt.Errorf("%s%w", prefix, context.Cause(ctx))}}
	case errors.As(err, &te):
		// The reply as the server wrote it (net/textproto quotes its text).
		msg = prefix + h.scrub(fmt.Sprintf("%03d %s", te.Code, oneLine(te.Msg)))
		reason, retry = vocab.ReasonClientError, false
		if te.Code >= 400 && te.Code < 500 {
			reason, retry = vocab.ReasonServerError, true
		}
	case errors.Is(err, errRefused) || tlsVerifyError(err):
		reason = vocab.ReasonClientError
	case actx.Err() != nil || errors.As(err, &ne) && ne.Timeout():
		reason, retry = vocab.ReasonTimeout, true
		msg = fmt.Sprintf("%sno answer within %s", prefix, h.timeout)
	case isPlainAuthRefusal(err):
		reason = vocab.ReasonClientError
	default:
		reason, retry = vocab.ReasonServerError, true
	}
	return delivery.Attempt{Err: &handlers.Error{Reason: reason, Err: errors.New(msg)}, Retry: retry}
}

// tlsVerifyError reports whether err is a TLS failure a retry will not mend: a certificate that
// does not verify, or a server that does not speak TLS after accepting STARTTLS.
func tlsVerifyError(err error) bool {
	var (
		cv  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		rh  tls.RecordHeaderError
		ale tls.AlertError
	)
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) ||
		errors.As(err, &rh) || errors.As(err, &ale)
}

// isPlainAuthRefusal reports whether err is net/smtp's own refusal to send a password in clear
// or to another host.
func isPlainAuthRefusal(err error) bool {
	s := err.Error()
	return strings.Contains(s, "unencrypted connection") || strings.Contains(s, "wrong host name")
}

// scrub removes the password from s.
func (h *Email) scrub(s string) string {
	if h.password == "" {
		return s
	}
	return strings.ReplaceAll(s, h.password, redacted)
}
