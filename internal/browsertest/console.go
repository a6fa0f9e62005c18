package browsertest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
)

// Message is one message of the page's console, from the DevTools protocol.
type Message struct {
	// Source is "console" for a call of the console API, "exception" for an uncaught exception
	// or an unhandled promise rejection, and otherwise the part of the browser that wrote a
	// browser log entry: "security" (a Content-Security-Policy violation), "network" (a failed
	// load), "javascript", "rendering", "violation", "intervention", "recommendation", "other".
	Source string
	// Level is the console API's call type ("log", "info", "warning", "error", "assert", "debug",
	// …) or the log entry's level ("verbose", "info", "warning", "error"); "error" for an
	// exception.
	Level string
	// Text is the message: the console call's arguments joined by spaces, the exception's
	// description, or the log entry's text.
	Text string
	// URL and Line (0-based) say where the message came from, when the browser says.
	URL  string
	Line int64
}

// IsError reports whether the message is an error: console.error, a failed console.assert, an
// uncaught exception or unhandled rejection, or a browser log entry at level error (a CSP
// violation, a subresource that failed to load).
func (m Message) IsError() bool {
	return m.Level == "error" || m.Level == "assert"
}

// String formats the message as "source level: text (url:line)", the line counted from 1.
func (m Message) String() string {
	s := m.Source + " " + m.Level + ": " + m.Text
	if m.URL != "" {
		s += fmt.Sprintf(" (%s:%d)", m.URL, m.Line+1)
	}
	return s
}

// listen runs in the tab's read loop for every event of the tab, in the order of arrival: it must
// return fast and send no command.
func (p *Page) listen(ev any) {
	var m Message
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		m = Message{Source: "console", Level: string(ev.Type), Text: argsText(ev.Args)}
		if st := ev.StackTrace; st != nil && len(st.CallFrames) > 0 {
			m.URL, m.Line = st.CallFrames[0].URL, st.CallFrames[0].LineNumber
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		m = Message{Source: "exception", Level: "error", Text: d.Text, URL: d.URL, Line: d.LineNumber}
		if d.Exception != nil {
			// The text is "Uncaught" or "Uncaught (in promise)"; the error's description holds its
			// message and stack: keep the message.
			desc, _, _ := strings.Cut(valueText(d.Exception), "\n")
			m.Text = strings.TrimSpace(d.Text + " " + desc)
		}
	case *log.EventEntryAdded:
		e := ev.Entry
		if e.Source == log.EntrySourceNetwork && isFavicon(e.URL) {
			// The browser's own guess at an icon, which no page asked for (a page names its
			// icon with <link rel=icon>): its 404 is no error of the page's.
			return
		}
		m = Message{Source: string(e.Source), Level: string(e.Level), Text: e.Text, URL: e.URL, Line: e.LineNumber}
	default:
		return
	}
	p.mu.Lock()
	p.msgs = append(p.msgs, m)
	p.mu.Unlock()
}

// isFavicon reports whether u is the path /favicon.ico of an origin.
func isFavicon(u string) bool {
	pu, err := url.Parse(u)
	return err == nil && pu.Path == "/favicon.ico"
}

// argsText joins the arguments of a console call as the DevTools console roughly shows them
// (format specifiers such as %s are not applied).
func argsText(args []*runtime.RemoteObject) string {
	parts := make([]string, len(args))
	for i, a := range args {
		parts[i] = valueText(a)
	}
	return strings.Join(parts, " ")
}

// valueText renders one value: a string as it is, a primitive as its JSON, anything else by its
// description (an Error's is its message and stack).
func valueText(o *runtime.RemoteObject) string {
	switch {
	case o == nil:
		return ""
	case o.Type == runtime.RemoteObjectTypeString && len(o.Value) > 0:
		var s string
		if err := json.Unmarshal(o.Value, &s); err == nil {
			return s
		}
		return string(o.Value)
	case len(o.Value) > 0:
		return string(o.Value)
	case o.UnserializableValue != "":
		return string(o.UnserializableValue)
	case o.Description != "":
		return o.Description
	default:
		return string(o.Type)
	}
}

func errorsIn(msgs []Message) []Message {
	var errs []Message
	for _, m := range msgs {
		if m.IsError() {
			errs = append(errs, m)
		}
	}
	return errs
}

func formatMessages(msgs []Message) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString("\t" + m.String() + "\n")
	}
	return b.String()
}
