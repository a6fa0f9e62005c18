package page

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"strconv"
	"strings"
	"time"

	"github.com/responder-sre/responder/alert"
)

// maxHeaderLine is where header fields are folded (RFC 5322 §2.1.1: lines SHOULD stay within 78
// characters).
const maxHeaderLine = 78

// email is one composed message: its Message-ID, the envelope and the header and body but for
// the Date, which each attempt sets.
type email struct {
	id       string // "<...@domain>"
	from     string // envelope sender
	rcpts    []string
	fields   []headerField // after Date
	preamble []headerField // before Date
	body     []byte        // quoted-printable, CRLF line ends
}

type headerField struct{ name, value string }

// bytes returns the message as sent at date: header fields, a blank line, the body; CRLF line
// ends throughout.
func (m *email) bytes(date time.Time) []byte {
	var b bytes.Buffer
	write := func(f headerField) { b.WriteString(foldHeader(f.name, f.value)) }
	for _, f := range m.preamble {
		write(f)
	}
	write(headerField{"Date", date.Format(time.RFC1123Z)})
	for _, f := range m.fields {
		write(f)
	}
	b.WriteString("\r\n")
	b.Write(m.body)
	return b.Bytes()
}

// message composes the email of the action's transition. key is the action's idempotency key: the
// Message-ID derives from it, so a retried or repeated run of the action sends the same message.
func (a *EmailAction) message(key string, info incidentInfo, al alert.Alert) *email {
	h := a.h
	n := a.note
	subject := a.subject(info, al)
	to := make([]string, len(a.to))
	rcpts := make([]string, len(a.to))
	for i, t := range a.to {
		to[i], rcpts[i] = t.String(), t.Address
	}
	domain := mailDomain(h.from.Address)
	id := "<" + messageIDLocal(key, info.ID, n.status, h.from.Address, rcpts, subject) + "@" + domain + ">"
	m := &email{id: id, from: h.from.Address, rcpts: rcpts,
		preamble: []headerField{
			{"From", h.from.String()},
			{"To", strings.Join(to, ", ")},
			{"Subject", mime.QEncoding.Encode("utf-8", subject)},
		},
	}
	m.fields = append(m.fields, headerField{"Message-ID", id})
	if info.ID != 0 {
		// Every email of one incident refers to the same (never sent) message, so that mail
		// clients thread the firing and the resolved email together.
		m.fields = append(m.fields, headerField{"References", "<" + threadLocal(info.ID, h.from.Address) + "@" + domain + ">"})
	}
	m.fields = append(m.fields,
		headerField{"MIME-Version", "1.0"},
		headerField{"Content-Type", "text/plain; charset=utf-8"},
		headerField{"Content-Transfer-Encoding", "quoted-printable"},
		headerField{"Auto-Submitted", "auto-generated"}, // RFC 3834: no vacation replies
		headerField{"X-Mailer", h.mailer},
	)
	m.body = quotedPrintable(a.text(info, al))
	return m
}

// subject is "[FIRING] " or "[RESOLVED] " and the subject param, or the default: the alert's name,
// the incident and the rule. One line, at most maxSubject characters after the prefix.
func (a *EmailAction) subject(info incidentInfo, al alert.Alert) string {
	s := oneLine(a.note.title)
	if s == "" {
		s = alertName(al, info)
		switch {
		case info.ID != 0 && info.Rule != "":
			s += fmt.Sprintf(" (incident #%d, rule %s)", info.ID, info.Rule)
		case info.ID != 0:
			s += fmt.Sprintf(" (incident #%d)", info.ID)
		}
	}
	prefix := "[FIRING] "
	if a.note.status == StatusResolved {
		prefix = "[RESOLVED] "
	}
	return prefix + truncate(s, maxSubject)
}

// text is the plain-text body: the body param (or the alert's summary), then the incident's
// facts, links and actions.
func (a *EmailAction) text(info incidentInfo, al alert.Alert) string {
	var b strings.Builder
	if a.note.status == StatusResolved {
		b.WriteString("This incident has resolved.\n\n")
	}
	text := strings.TrimSpace(a.note.text)
	if text == "" {
		text = alertSummary(al)
	}
	if text == "" {
		text = fmt.Sprintf("%s is %s.", alertName(al, info), a.note.status)
	}
	b.WriteString(text)
	b.WriteString("\n\n")
	fact := func(name, value string) {
		if value != "" {
			fmt.Fprintf(&b, "%-10s %s\n", name+":", truncate(oneLine(value), maxFactValue))
		}
	}
	if info.ID != 0 {
		fact("Incident", "#"+strconv.FormatInt(info.ID, 10))
	}
	fact("Rule", info.Rule)
	fact("Alert", al.Name)
	fact("Status", a.note.status)
	if !al.StartsAt.IsZero() {
		fact("Started", al.StartsAt.UTC().Format(time.RFC3339))
	}
	if ls := shownLabels(al.Labels); len(ls) > 0 {
		parts := make([]string, len(ls))
		for i, l := range ls {
			parts[i] = l.Name + "=" + oneLine(l.Value)
		}
		fmt.Fprintf(&b, "%-10s %s\n", "Labels:", strings.Join(parts, ", "))
	}
	if links := shownLinks(al, a.note.links); len(links) > 0 {
		b.WriteString("\nLinks:\n")
		for _, l := range links {
			fmt.Fprintf(&b, "  %s: %s\n", l.Title, l.URL)
		}
	}
	if len(info.Actions) > 0 {
		b.WriteString("\nActions:\n")
		for _, act := range info.Actions {
			fmt.Fprintf(&b, "  %s on %s: %s\n", act.name(), oneLine(act.Target), act.line())
		}
		if info.More > 0 {
			fmt.Fprintf(&b, "  … and %d more\n", info.More)
		}
	}
	return b.String()
}

// quotedPrintable encodes text (LF line ends) as a quoted-printable body with CRLF line ends.
func quotedPrintable(text string) []byte {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	_, _ = w.Write([]byte(text)) // a bytes.Buffer does not fail
	_ = w.Close()
	return b.Bytes()
}

// messageIDLocal is the local part of a Message-ID: the idempotency key and a hash of what the
// email is (incident, transition, sender, recipients, subject), so that two installations that
// share a sender domain do not collide on "responder-action-42". Without a key the hash alone.
func messageIDLocal(key string, incident int64, status, from string, rcpts []string, subject string) string {
	sum := sha256.Sum256([]byte(strings.Join(append([]string{key, strconv.FormatInt(incident, 10), status, from, subject}, rcpts...), "\x00")))
	h := hex.EncodeToString(sum[:8])
	if key == "" || !atomText(key) {
		return "responder." + h
	}
	return key + "." + h
}

// threadLocal is the local part of the id every email of an incident refers to.
func threadLocal(incident int64, from string) string {
	sum := sha256.Sum256([]byte(strconv.FormatInt(incident, 10) + "\x00" + from))
	return "responder-incident-" + strconv.FormatInt(incident, 10) + "." + hex.EncodeToString(sum[:6])
}

// atomText reports whether s can stand in a Message-ID's left part as it is (RFC 5322 dot-atom
// text, restricted to letters, digits, '-', '_' and '.').
func atomText(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_' && r != '.'
	}) && !strings.HasPrefix(s, ".") && !strings.HasSuffix(s, ".") && !strings.Contains(s, "..")
}

// mailDomain is the domain of an address ("localhost" when it has none that fits a Message-ID).
func mailDomain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || !atomText(addr[i+1:]) {
		return "localhost"
	}
	return strings.ToLower(addr[i+1:])
}

// foldHeader renders one header field, folded at white space so that lines stay within
// maxHeaderLine where they can (an encoded word or an address is never split).
func foldHeader(name, value string) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteString(":")
	n := len(name) + 1
	for i, w := range strings.Split(value, " ") {
		switch {
		case i == 0 || n+1+len(w) <= maxHeaderLine:
			b.WriteString(" ")
			n++
		default:
			b.WriteString("\r\n ")
			n = 1
		}
		b.WriteString(w)
		n += len(w)
	}
	b.WriteString("\r\n")
	return b.String()
}
