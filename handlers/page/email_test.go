package page

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// emailOptions are page.email's options for m: STARTTLS trusting m's certificate, AUTH PLAIN.
func emailOptions(m *mailServer) EmailOptions {
	return EmailOptions{Host: m.host, Port: m.port, StartTLS: true, RootCAs: m.CA, Hello: "responder.test",
		Username: smtpUser, Password: smtpPassword, From: "Responder <responder@example.com>",
		To: []string{"oncall@example.com", "Ops Team <ops@example.com>"}, Timeout: 5 * time.Second, Version: "test"}
}

// newEmail returns page.email with a fixed clock and recorded backoff waits.
func newEmail(t *testing.T, o EmailOptions) (*Email, *[]time.Duration) {
	t.Helper()
	h := NewEmail(o)
	if err := h.ConfigError(); err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	h.sleep = func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return ctx.Err() }
	h.now = func() time.Time { return testNow }
	return h, &waits
}

func buildEmail(t *testing.T, h *Email, p handlers.Params) *EmailAction {
	t.Helper()
	a, err := h.Build(p)
	if err != nil {
		t.Fatalf("Build(%v): %v", p, err)
	}
	return a.(*EmailAction)
}

// TestEmailMessages sends each kind of email to a real SMTP server on loopback, through STARTTLS
// and AUTH PLAIN, and checks every byte it received (golden files) and what a mail reader makes of
// them.
func TestEmailMessages(t *testing.T) {
	longSubject := "Disque presque plein sur db-1 — 4 % libre, vérifier /var/lib/data avant la sauvegarde de 02:00"
	tests := []struct {
		name        string
		from        string
		params      handlers.Params
		inv         handlers.Invocation
		wantTo      []string
		wantSubject string
		wantText    []string // lines the decoded body holds
	}{
		{name: "firing-defaults", params: handlers.Params{}, inv: inv("responder-action-7", 42),
			wantTo:      []string{"oncall@example.com", "ops@example.com"},
			wantSubject: "[FIRING] data-disk (incident #42)",
			wantText:    []string{"db-1 has 4% free disk space", "Incident:  #42", "Status:    firing", "  Runbook: https://runbooks.example.com/disk-low"}},
		{name: "firing-params", from: "Répondeur <responder@example.com>", inv: inv("responder-action-8", 42),
			params: handlers.Params{"subject": longSubject, "to": []any{"Équipe stockage <storage@example.com>"},
				"body":  "Free space is 4 %.\n.\nA line that is longer than seventy-six characters is wrapped by quoted-printable with soft breaks.\n",
				"links": []any{"https://grafana.example.com/d/disk"}},
			wantTo: []string{"storage@example.com"}, wantSubject: "[FIRING] " + longSubject,
			wantText: []string{"Free space is 4 %.", ".", "A line that is longer than seventy-six characters is wrapped by quoted-printable with soft breaks.",
				"  grafana.example.com: https://grafana.example.com/d/disk"}},
		{name: "resolved", params: handlers.Params{"subject": "db-1 disk almost full", "status": "resolved"}, inv: inv("responder-action-9", 42),
			wantTo: []string{"oncall@example.com", "ops@example.com"}, wantSubject: "[RESOLVED] db-1 disk almost full",
			wantText: []string{"This incident has resolved.", "Status:    resolved"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMailServer(t, mailServerOptions{})
			o := emailOptions(m)
			if tt.from != "" {
				o.From = tt.from
			}
			h, _ := newEmail(t, o)
			res, err := buildEmail(t, h, tt.params).Do(t.Context(), tt.inv, diskAlert())
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			recs, conns := m.got()
			if len(recs) != 1 || conns != 1 {
				t.Fatalf("%d transactions over %d connections, want 1", len(recs), conns)
			}
			r := recs[0]
			envelope := mailRecord{TLS: true, User: smtpUser, Hello: "responder.test", From: "responder@example.com", To: tt.wantTo, Accepted: true}
			if diff := cmp.Diff(envelope, r, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Data" }, cmp.Ignore())); diff != "" {
				t.Errorf("session (-want +got):\n%s", diff)
			}
			golden(t, "email-"+tt.name+".eml", r.Data)
			id := checkMailFormat(t, r.Data, tt.wantSubject, tt.wantText)
			status, _ := tt.params["status"].(string)
			if want := fmt.Sprintf("%s email %s sent to %d recipients through %s", cmpOr(status, "firing"), id, len(tt.wantTo), m.addr()); res.Detail != want {
				t.Errorf("detail %q, want %q", res.Detail, want)
			}
		})
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

var reMessageID = regexp.MustCompile(`^<responder-action-[0-9]+\.[0-9a-f]{16}@example\.com>$`)

// checkMailFormat reads data as a mail reader does and checks the header fields, their encoding
// and the body; it returns the Message-ID.
func checkMailFormat(t *testing.T, data []byte, wantSubject string, wantText []string) string {
	t.Helper()
	for i, line := range bytes.SplitAfter(data, []byte("\r\n")) {
		if bytes.ContainsAny(bytes.TrimSuffix(line, []byte("\r\n")), "\r\n") {
			t.Errorf("line %d has a bare CR or LF: %q", i, line)
		}
		if len(line) > 1000 {
			t.Errorf("line %d is %d bytes, over SMTP's 1000", i, len(line))
		}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("not a mail message: %v", err)
	}
	var dec mime.WordDecoder
	subject, err := dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || subject != wantSubject {
		t.Errorf("Subject decodes to %q (%v), want %q", subject, err, wantSubject)
	}
	if d, err := msg.Header.Date(); err != nil || !d.Equal(testNow) {
		t.Errorf("Date = %v (%v), want %v", d, err, testNow)
	}
	if _, err := mail.ParseAddress(msg.Header.Get("From")); err != nil {
		t.Errorf("From %q: %v", msg.Header.Get("From"), err)
	}
	if _, err := msg.Header.AddressList("To"); err != nil {
		t.Errorf("To %q: %v", msg.Header.Get("To"), err)
	}
	id := msg.Header.Get("Message-ID")
	if !reMessageID.MatchString(id) {
		t.Errorf("Message-ID %q", id)
	}
	for k, v := range map[string]string{"MIME-Version": "1.0", "Content-Type": "text/plain; charset=utf-8",
		"Content-Transfer-Encoding": "quoted-printable", "Auto-Submitted": "auto-generated"} {
		if got := msg.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type")); err != nil || mt != "text/plain" || params["charset"] != "utf-8" {
		t.Errorf("Content-Type parses to %q %v (%v)", mt, params, err)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatalf("body is not quoted-printable: %v", err)
	}
	lines := strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n")
	for _, w := range wantText {
		if !slices.Contains(lines, w) {
			t.Errorf("body lacks the line %q:\n%s", w, body)
		}
	}
	return id
}

// TestEmailSameMessageOnRetry: every attempt of one action sends the same bytes (the same
// Message-ID), a delivered action is not sent again, and another action has its own Message-ID.
func TestEmailSameMessageOnRetry(t *testing.T) {
	m := newMailServer(t, mailServerOptions{script: mailScript{data: []*smtp.SMTPError{
		{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}, nil}}})
	h, waits := newEmail(t, emailOptions(m))
	a := buildEmail(t, h, handlers.Params{"subject": "disk"})
	if _, err := a.Do(t.Context(), inv("responder-action-1", 5), diskAlert()); err != nil {
		t.Fatalf("Do: %v", err)
	}
	res, err := a.Do(t.Context(), inv("responder-action-1", 5), diskAlert())
	if err != nil || !strings.HasPrefix(res.Detail, "already sent: firing email <responder-action-1.") {
		t.Fatalf("Do again = %q, %v; want the first result", res.Detail, err)
	}
	if _, err := a.Do(t.Context(), inv("responder-action-2", 5), diskAlert()); err != nil {
		t.Fatalf("Do of another action: %v", err)
	}
	recs, conns := m.got()
	if len(recs) != 3 || conns != 3 || len(*waits) != 1 {
		t.Fatalf("%d transactions over %d connections, %d waits; want 3, 3, 1", len(recs), conns, len(*waits))
	}
	if recs[0].Accepted || !recs[1].Accepted || !recs[2].Accepted {
		t.Errorf("accepted: %v %v %v, want false true true", recs[0].Accepted, recs[1].Accepted, recs[2].Accepted)
	}
	if !bytes.Equal(recs[0].Data, recs[1].Data) {
		t.Errorf("the retry sent other bytes:\n%s\n---\n%s", recs[0].Data, recs[1].Data)
	}
	id1, id2 := messageID(t, recs[1].Data), messageID(t, recs[2].Data)
	if id1 == id2 || !strings.HasPrefix(id1, "<responder-action-1.") || !strings.HasPrefix(id2, "<responder-action-2.") {
		t.Errorf("Message-IDs %q and %q", id1, id2)
	}
	ref1, ref2 := header(t, recs[1].Data, "References"), header(t, recs[2].Data, "References")
	if ref1 == "" || ref1 != ref2 {
		t.Errorf("References %q and %q: one incident's emails must refer to the same thread", ref1, ref2)
	}
}

func messageID(t *testing.T, data []byte) string { return header(t, data, "Message-ID") }

func header(t *testing.T, data []byte, name string) string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return msg.Header.Get(name)
}

// TestEmailFailures: what each kind of failure means, how often it is tried, and that nothing is
// sent to some recipients only; the password shows in no error or log line.
func TestEmailFailures(t *testing.T) {
	refuse := func(code int, msg string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 1, 1}, Message: msg}
	}
	tests := []struct {
		name       string
		server     mailServerOptions
		options    func(o *EmailOptions)
		wantReason vocab.Reason // "" = sent
		wantErr    string
		wantConns  int
		wantSent   int // transactions the server accepted
	}{
		{name: "a recipient refused for good: nothing is sent",
			server:     mailServerOptions{script: mailScript{rcpt: map[string]*smtp.SMTPError{"ops@example.com": refuse(550, "no such user")}}},
			wantReason: vocab.ReasonClientError, wantErr: "RCPT TO <ops@example.com>: 550 5.1.1 no such user", wantConns: 1},
		{name: "a recipient refused for now: retried, then sent to all",
			server:    mailServerOptions{script: mailScript{rcpt: map[string]*smtp.SMTPError{"ops@example.com": refuse(450, "mailbox busy")}, rcptTimes: 1}},
			wantConns: 2, wantSent: 1},
		{name: "message refused for good",
			server:     mailServerOptions{script: mailScript{data: []*smtp.SMTPError{refuse(554, "spam")}}},
			wantReason: vocab.ReasonClientError, wantErr: "end of DATA: 554 5.1.1 spam", wantConns: 1},
		{name: "message refused for now, every time",
			server:     mailServerOptions{script: mailScript{data: []*smtp.SMTPError{refuse(421, "overloaded")}}},
			wantReason: vocab.ReasonServerError, wantErr: "attempt 3: end of DATA: 421", wantConns: 3},
		{name: "wrong password", options: func(o *EmailOptions) { o.Password = "wrong-" + smtpPassword },
			wantReason: vocab.ReasonClientError, wantErr: "AUTH PLAIN: 535 5.7.8 Authentication failed", wantConns: 1},
		{name: "no STARTTLS offered: nothing is sent in clear", server: mailServerOptions{noTLS: true, clearAuth: true},
			wantReason: vocab.ReasonClientError, wantErr: "STARTTLS: refused: the server does not offer STARTTLS", wantConns: 1},
		{name: "a certificate that does not verify", options: func(o *EmailOptions) { o.RootCAs = nil },
			wantReason: vocab.ReasonClientError, wantErr: "STARTTLS: tls: failed to verify certificate", wantConns: 1},
		{name: "a certificate for another name", options: func(o *EmailOptions) { o.Host = "127.0.0.2" },
			wantReason: vocab.ReasonClientError, wantErr: "STARTTLS: tls: failed to verify certificate", wantConns: 0},
		{name: "no AUTH offered", server: mailServerOptions{noAuth: true},
			wantReason: vocab.ReasonClientError, wantErr: "AUTH: refused: the server offers no AUTH PLAIN", wantConns: 1},
		{name: "no AUTH needed", server: mailServerOptions{noAuth: true}, options: func(o *EmailOptions) { o.Username, o.Password = "", "" },
			wantConns: 1, wantSent: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMailServer(t, tt.server)
			o := emailOptions(m)
			var logs bytes.Buffer
			o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			if tt.options != nil {
				tt.options(&o)
			}
			if o.Host != m.host { // another address of the same machine: the server listens on 127.0.0.1 only
				ln, err := net.Listen("tcp", net.JoinHostPort(o.Host, "0"))
				if err != nil {
					t.Fatalf("listen on %s: %v", o.Host, err)
				}
				go serveRaw(ln, m)
				t.Cleanup(func() { ln.Close() })
				o.Port = ln.Addr().(*net.TCPAddr).Port
			}
			h, _ := newEmail(t, o)
			_, err := buildEmail(t, h, handlers.Params{}).Do(t.Context(), inv("responder-action-3", 3), diskAlert())
			switch {
			case tt.wantReason == "" && err != nil:
				t.Fatalf("Do: %v", err)
			case tt.wantReason != "" && handlers.ReasonOf(err) != tt.wantReason:
				t.Fatalf("Do = %v (reason %q), want %q", err, handlers.ReasonOf(err), tt.wantReason)
			case err != nil && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("error %q lacks %q", err, tt.wantErr)
			}
			recs, conns := m.got()
			sent := 0
			for _, r := range recs {
				if r.Accepted {
					sent++
				}
				if !r.TLS && !tt.server.noTLS {
					t.Errorf("a transaction without TLS: %+v", r)
				}
			}
			if sent != tt.wantSent || (tt.wantConns > 0 && conns != tt.wantConns) {
				t.Errorf("%d messages accepted over %d connections, want %d over %d", sent, conns, tt.wantSent, tt.wantConns)
			}
			for what, s := range map[string]string{"error": fmt.Sprint(err), "logs": logs.String()} {
				if strings.Contains(s, smtpPassword) {
					t.Errorf("%s shows the password: %s", what, s)
				}
			}
		})
	}
}

// serveRaw hands the connections of ln to m's SMTP server (the same certificate, another address).
func serveRaw(ln net.Listener, m *mailServer) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			b, err := net.Dial("tcp", m.addr())
			if err != nil {
				return
			}
			defer b.Close()
			go func() { _, _ = io.Copy(b, c) }()
			_, _ = io.Copy(c, b)
		}()
	}
}

// TestEmailTransportFailures: a closed port and a server that never greets are retried (server
// errors and timeouts), and a pause cuts a session short without a retry.
func TestEmailTransportFailures(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // never greets
		}
	}()
	silentPort := silent.Addr().(*net.TCPAddr).Port
	tests := []struct {
		name       string
		port       int
		ctx        func(t *testing.T) context.Context
		wantReason vocab.Reason
		wantWaits  int
		wantErr    string
	}{
		{name: "connection refused", port: closedPort, wantReason: vocab.ReasonServerError, wantWaits: 2, wantErr: "attempt 3: connect:"},
		{name: "no greeting", port: silentPort, wantReason: vocab.ReasonTimeout, wantWaits: 2, wantErr: "attempt 3: greeting: no answer within 300ms"},
		{name: "paused while waiting for the greeting", port: silentPort, wantReason: vocab.ReasonPaused, wantErr: "attempt 1:",
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithCancelCause(t.Context())
				time.AfterFunc(100*time.Millisecond, func() { cancel(handlers.ErrPaused) })
				t.Cleanup(func() { cancel(nil) })
				return ctx
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := EmailOptions{Host: "127.0.0.1", Port: tt.port, StartTLS: true, Hello: "responder.test", From: "responder@example.com",
				To: []string{"oncall@example.com"}, Timeout: 300 * time.Millisecond}
			if tt.ctx != nil {
				o.Timeout = 5 * time.Second
			}
			h, waits := newEmail(t, o)
			ctx := t.Context()
			if tt.ctx != nil {
				ctx = tt.ctx(t)
			}
			start := time.Now()
			_, err := buildEmail(t, h, handlers.Params{}).Do(ctx, inv("k", 1), diskAlert())
			if handlers.ReasonOf(err) != tt.wantReason || !strings.Contains(fmt.Sprint(err), tt.wantErr) {
				t.Fatalf("Do = %v (reason %q), want %q containing %q", err, handlers.ReasonOf(err), tt.wantReason, tt.wantErr)
			}
			if len(*waits) != tt.wantWaits {
				t.Errorf("%d waits, want %d", len(*waits), tt.wantWaits)
			}
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("Do took %s", d)
			}
		})
	}
}

// TestEmailWithoutTLSOnLoopback: with starttls off (allowed for a loopback host only) the session
// runs in clear, AUTH included.
func TestEmailWithoutTLSOnLoopback(t *testing.T) {
	m := newMailServer(t, mailServerOptions{noTLS: true, clearAuth: true})
	o := emailOptions(m)
	o.StartTLS = false
	h, _ := newEmail(t, o)
	if _, err := buildEmail(t, h, handlers.Params{}).Do(t.Context(), inv("k", 1), diskAlert()); err != nil {
		t.Fatalf("Do: %v", err)
	}
	recs, _ := m.got()
	if len(recs) != 1 || recs[0].TLS || recs[0].User != smtpUser || !recs[0].Accepted {
		t.Fatalf("transactions %+v", recs)
	}
	o.Host = "smtp.example.com"
	if err := NewEmail(o).ConfigError(); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("starttls off for a remote host: ConfigError = %v", err)
	}
}

func TestEmailUnconfigured(t *testing.T) {
	base := EmailOptions{Host: "smtp.example.com", StartTLS: true, From: "responder@example.com", To: []string{"oncall@example.com"}}
	tests := []struct {
		name string
		edit func(o *EmailOptions)
		want string
	}{
		{"no host", func(o *EmailOptions) { o.Host = "" }, "handlers.page.email is not configured"},
		{"no from", func(o *EmailOptions) { o.From = "" }, "handlers.page.email is not configured"},
		{"no to", func(o *EmailOptions) { o.To = nil }, "handlers.page.email is not configured"},
		{"starttls off, remote", func(o *EmailOptions) { o.StartTLS = false }, "loopback"},
		{"user without password", func(o *EmailOptions) { o.Username = "u" }, "go together"},
		{"bad from", func(o *EmailOptions) { o.From = "responder" }, "handlers.page.email.from"},
		{"bad to", func(o *EmailOptions) { o.To = []string{"oncall@example.com", "@"} }, "handlers.page.email.to"},
		{"twice the same", func(o *EmailOptions) { o.To = []string{"a@example.com", "A <A@example.com>"} }, "listed twice"},
		{"bad hello", func(o *EmailOptions) { o.Hello = "a b" }, "smtp.hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.edit(&o)
			h := NewEmail(o)
			reg, err := handlers.NewRegistry(h)
			if err != nil {
				t.Fatal(err)
			}
			if err := reg.CheckAction(EmailName, "", map[string]any{"subject": "x"}); err != nil {
				t.Errorf("a rule for an unconfigured page.email must load: %v", err)
			}
			_, err = h.Build(handlers.Params{})
			if handlers.ReasonOf(err) != vocab.ReasonBadParam || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build = %v, want bad_param containing %q", err, tt.want)
			}
		})
	}
	if err := NewEmail(base).ConfigError(); err != nil {
		t.Errorf("base options: %v", err)
	}
}

func TestEmailCheckAction(t *testing.T) {
	reg, err := handlers.NewRegistry(NewEmail(EmailOptions{Host: "smtp.example.com", StartTLS: true, From: "r@example.com", To: []string{"o@example.com"}}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		raw     map[string]any
		wantErr string
	}{
		{"no params", map[string]any{}, ""},
		{"everything", map[string]any{"subject": "{{ alert.labels.instance }} disk", "body": "{{ humanize(alert.value) }}",
			"to": []any{"dba@example.com", "On call <oncall@example.com>"}, "links": []any{"https://x.example.com"}, "status": "firing"}, ""},
		{"templated to", map[string]any{"to": []any{"{{ alert.labels.owner }}"}}, "may not be templated"},
		{"bad to", map[string]any{"to": []any{"dba"}}, `"dba" is not an email address`},
		{"to twice", map[string]any{"to": []any{"a@example.com", "a@example.com"}}, "listed twice"},
		{"empty to", map[string]any{"to": []any{}}, "no recipients"},
		{"unknown status", map[string]any{"status": "ack"}, `status "ack"`},
		{"bad link", map[string]any{"links": []any{"ftp://x"}}, "not an absolute http(s) URL"},
		{"unknown param", map[string]any{"cc": []any{"a@example.com"}}, `no param "cc"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := reg.CheckAction(EmailName, "none", tt.raw)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("CheckAction: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("CheckAction = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestEmailSpec(t *testing.T) {
	h := NewEmail(EmailOptions{Host: "smtp.example.com", StartTLS: true, From: "r@example.com", To: []string{"o@example.com"}})
	s := h.Spec()
	if s.Name != "page.email" || s.Class != vocab.ClassNotify || s.DefaultApproval != handlers.ApprovalNone || !s.TargetPerIncident {
		t.Errorf("Spec = %+v", s)
	}
	if s.DefaultTimeout < 3*DefaultEmailTimeout {
		t.Errorf("DefaultTimeout %s is shorter than three attempts", s.DefaultTimeout)
	}
	a, err := h.Build(handlers.Params{"to": []any{"Zed <Z@Example.com>", "a@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Target() != "email:a@example.com,z@example.com" || a.Scope() != "smtp.example.com:587" {
		t.Errorf("target %q, scope %q", a.Target(), a.Scope())
	}
	p, ok := s.ResolveParams(handlers.Params{"subject": "x"})
	if !ok || !cmp.Equal(p, handlers.Params{"subject": "x", "status": "resolved"}) {
		t.Errorf("ResolveParams = %v, %v", p, ok)
	}
	if _, ok := s.ResolveParams(p); ok {
		t.Error("a resolved email has a resolve of its own")
	}
}

func TestFoldHeader(t *testing.T) {
	tests := []struct{ name, value, want string }{
		{"To", "<a@example.com>", "To: <a@example.com>\r\n"},
		{"Subject", strings.Repeat("word ", 20) + "end",
			"Subject: word word word word word word word word word word word word word word\r\n word word word word word word end\r\n"},
		{"Subject", "=?utf-8?q?" + strings.Repeat("a", 70) + "?= =?utf-8?q?b?=", "Subject: =?utf-8?q?" + strings.Repeat("a", 70) + "?=\r\n =?utf-8?q?b?=\r\n"},
	}
	for _, tt := range tests {
		got := foldHeader(tt.name, tt.value)
		if got != tt.want {
			t.Errorf("foldHeader(%q, %q) =\n%q, want\n%q", tt.name, tt.value, got, tt.want)
		}
	}
}

func TestMessageIDLocal(t *testing.T) {
	a := messageIDLocal("responder-action-1", 1, "firing", "r@example.com", []string{"o@example.com"}, "s")
	if !regexp.MustCompile(`^responder-action-1\.[0-9a-f]{16}$`).MatchString(a) {
		t.Errorf("local part %q", a)
	}
	if b := messageIDLocal("responder-action-1", 1, "firing", "r@example.com", []string{"o@example.com"}, "s"); a != b {
		t.Errorf("not deterministic: %q, %q", a, b)
	}
	for _, other := range []string{
		messageIDLocal("responder-action-1", 1, "resolved", "r@example.com", []string{"o@example.com"}, "s"),
		messageIDLocal("responder-action-1", 1, "firing", "r@other.example.com", []string{"o@example.com"}, "s"),
		messageIDLocal("responder-action-2", 1, "firing", "r@example.com", []string{"o@example.com"}, "s"),
	} {
		if other == a {
			t.Errorf("%q collides", other)
		}
	}
	if got := messageIDLocal("key with <spaces>", 1, "firing", "r@example.com", nil, "s"); !strings.HasPrefix(got, "responder.") || strings.ContainsAny(got, " <>") {
		t.Errorf("a key that is not atom text gives %q", got)
	}
	if d := mailDomain("a@[127.0.0.1]"); d != "localhost" {
		t.Errorf("mailDomain of a literal address = %q", d)
	}
}
