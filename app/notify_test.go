package app_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/responder-sre/responder/internal/testwait"
)

// teamsRecorder is a Teams webhook that takes every card (page's own tests check the cards'
// schema against a stricter fake).
type teamsRecorder struct {
	*httptest.Server
	mu    sync.Mutex
	cards []string
}

func newTeamsRecorder(t *testing.T) *teamsRecorder {
	r := &teamsRecorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.cards = append(r.cards, string(b))
		r.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *teamsRecorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.cards...)
}

// mailbox is a real SMTP server on loopback (go-smtp) that takes AUTH PLAIN in clear (loopback
// only: page.email's TLS is tested in its package) and keeps every message it took.
type mailbox struct {
	mu   sync.Mutex
	msgs [][]byte
	addr *net.TCPAddr
}

func newMailbox(t *testing.T) *mailbox {
	m := &mailbox{}
	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &mailboxSession{m: m}, nil }))
	s.Domain, s.AllowInsecureAuth = "mail.test", true
	s.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	m.addr = ln.Addr().(*net.TCPAddr)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			t.Errorf("smtp server: %v", err)
		}
	}()
	t.Cleanup(func() { _ = s.Close(); <-done })
	return m
}

func (m *mailbox) got() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]byte(nil), m.msgs...)
}

type mailboxSession struct {
	m    *mailbox
	user bool
}

func (s *mailboxSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *mailboxSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "responder" || pass != "smtp-password-for-tests" {
			return smtp.ErrAuthFailed
		}
		s.user = true
		return nil
	}), nil
}

func (s *mailboxSession) Mail(string, *smtp.MailOptions) error {
	if !s.user {
		return smtp.ErrAuthRequired
	}
	return nil
}
func (s *mailboxSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *mailboxSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.m.mu.Lock()
	s.m.msgs = append(s.m.msgs, b)
	s.m.mu.Unlock()
	return nil
}
func (s *mailboxSession) Reset()        {}
func (s *mailboxSession) Logout() error { return nil }

// TestTeamsAndEmailThroughTheEngine: a rule's page.teams and page.email actions post a card and
// send an email naming the rule and the incident's restart; when the incident resolves, a second
// card and a second email say so (the resolve phase), each email with its own Message-ID.
func TestTeamsAndEmailThroughTheEngine(t *testing.T) {
	teams, box := newTeamsRecorder(t), newMailbox(t)
	f := startApp(t, fixtureOpts{
		files: map[string]string{"teams-url": teams.URL + "/workflows/abc/invoke?sig=teams-signature-for-tests\n",
			"smtp-password": "smtp-password-for-tests\n"},
		extra: fmt.Sprintf(`  page:
    teams: {url_file: teams-url}
    email:
      smtp: {host: 127.0.0.1, port: %d, starttls: false, username: responder, password_file: smtp-password}
      from: "responder <responder@example.com>"
      to: [oncall@example.com]
`, box.addr.Port),
		rules: func(s *sink) string {
			return fmt.Sprintf(`
rules:
  - name: crashloop-notify
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    actions:
      - handler: http.request
        params: {url: "http://%s/hooks/restart/{{ alert.labels.pod }}"}
      - handler: page.teams
        params: {title: "{{ alert.labels.pod }} is crash looping"}
      - handler: page.email
        params: {subject: "{{ alert.labels.pod }} is crash looping"}
`, s.HostPort())
		},
	})
	starts := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	if code := f.post(payload("firing", starts, "web-1")); code != http.StatusOK {
		t.Fatalf("webhook: %d", code)
	}
	testwait.Until(t, 30*time.Second, "a card and an email", func() bool { return len(teams.got()) == 1 && len(box.got()) == 1 })
	if code := f.post(payload("resolved", starts, "web-1")); code != http.StatusOK {
		t.Fatalf("webhook: %d", code)
	}
	testwait.Until(t, 30*time.Second, "the resolved card and email", func() bool { return len(teams.got()) == 2 && len(box.got()) == 2 })

	cards := teams.got()
	for i, want := range [][]string{
		{`"text":"FIRING: web-1 is crash looping"`, `{"title":"Rule","value":"crashloop-notify"}`, ` http.request","value":"succeeded · POST `},
		{`"text":"RESOLVED: web-1 is crash looping"`, `{"title":"Status","value":"resolved"}`},
	} {
		for _, w := range want {
			if !strings.Contains(cards[i], w) {
				t.Errorf("card %d lacks %s:\n%s", i, w, cards[i])
			}
		}
	}
	var ids, refs []string
	for i, wantSubject := range []string{"[FIRING] web-1 is crash looping", "[RESOLVED] web-1 is crash looping"} {
		msg, err := mail.ReadMessage(bytes.NewReader(box.got()[i]))
		must(t, err)
		if s := msg.Header.Get("Subject"); s != wantSubject {
			t.Errorf("email %d: Subject %q, want %q", i, s, wantSubject)
		}
		ids, refs = append(ids, msg.Header.Get("Message-ID")), append(refs, msg.Header.Get("References"))
		body, _ := io.ReadAll(msg.Body)
		if !strings.Contains(string(body), "Rule:      crashloop-notify") {
			t.Errorf("email %d body lacks the rule:\n%s", i, body)
		}
	}
	if ids[0] == ids[1] || !strings.HasPrefix(ids[0], "<responder-action-") || refs[0] != refs[1] || refs[0] == "" {
		t.Errorf("Message-IDs %q, References %q: want two ids and one thread", ids, refs)
	}
	// The server takes a message before the action records it.
	testwait.Until(t, 10*time.Second, "5 succeeded actions (restart, card, email, resolved card, resolved email)", func() bool {
		return countState(f.actions("?limit=100"), "succeeded") == 5
	})
}
