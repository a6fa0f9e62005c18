package page

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// teamsAnswer is how the fake answers one well-formed card (a malformed one always gets 400).
type teamsAnswer struct {
	code int
	body string
}

// fakeTeams is a local stand-in for a Teams webhook: it checks each card for what Teams requires
// and answers a malformed one with 400 and Teams's kind of message; a well-formed one gets the
// next scripted answer (the last repeats; default 202 Accepted, as Workflows answers).
type fakeTeams struct {
	srv    *httptest.Server
	mu     sync.Mutex
	posts  [][]byte // every request body, malformed included
	cards  [][]byte // the well-formed ones
	script []teamsAnswer
}

func newFakeTeams(t *testing.T, script ...teamsAnswer) *fakeTeams {
	t.Helper()
	f := &fakeTeams{script: script}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// url is a Workflows-shaped URL whose query holds the signature (the credential).
func (f *fakeTeams) url() string {
	return f.srv.URL + "/workflows/0123456789abcdef/triggers/manual/paths/invoke?api-version=2016-06-01&sig=" + teamsSig
}

const teamsSig = "S1GNATUREsecretsecret0123456789"

func (f *fakeTeams) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.posts = append(f.posts, body)
	f.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Query().Get("sig") != teamsSig {
		http.Error(w, `{"error":{"code":"DirectApiAuthorizationRequired"}}`, http.StatusUnauthorized)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		http.Error(w, `{"error":{"code":"InvalidRequestContent","message":"Content-Type `+ct+`"}}`, http.StatusBadRequest)
		return
	}
	if err := checkTeamsMessage(body); err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "InvalidRequestContent", "message": err.Error()}})
		return
	}
	f.mu.Lock()
	f.cards = append(f.cards, body)
	a := teamsAnswer{code: http.StatusAccepted}
	if len(f.script) > 0 {
		a = f.script[min(len(f.cards)-1, len(f.script)-1)]
	}
	f.mu.Unlock()
	w.WriteHeader(a.code)
	_, _ = io.WriteString(w, a.body)
}

func (f *fakeTeams) got() (posts, cards [][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.posts...), append([][]byte(nil), f.cards...)
}

// checkTeamsMessage checks what Teams requires of a message carrying an Adaptive Card (written
// out here, not taken from the handler): type "message"; attachments, each with contentType
// "application/vnd.microsoft.card.adaptive" and a content of type "AdaptiveCard", a version from
// 1.0 to 1.5 and a $schema; a body of known elements, each complete; actions that open http(s)
// URLs. Teams ignores properties it does not know, and so does this check.
func checkTeamsMessage(b []byte) error {
	var m struct {
		Type        *string `json:"type"`
		Attachments []struct {
			ContentType string          `json:"contentType"`
			Content     json.RawMessage `json:"content"`
		} `json:"attachments"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("the body is not a JSON object: %w", err)
	}
	switch {
	case m.Type == nil || *m.Type != "message":
		return errors.New(`type must be "message"`)
	case len(m.Attachments) == 0:
		return errors.New("a message needs attachments")
	}
	for i, a := range m.Attachments {
		if a.ContentType != "application/vnd.microsoft.card.adaptive" {
			return fmt.Errorf("attachments[%d].contentType %q is not an Adaptive Card", i, a.ContentType)
		}
		if err := checkAdaptiveCard(a.Content); err != nil {
			return fmt.Errorf("attachments[%d].content: %w", i, err)
		}
	}
	return nil
}

func checkAdaptiveCard(raw json.RawMessage) error {
	var c struct {
		Schema  string            `json:"$schema"`
		Type    string            `json:"type"`
		Version string            `json:"version"`
		Body    []json.RawMessage `json:"body"`
		Actions []struct {
			Type  string `json:"type"`
			Title string `json:"title"`
			URL   string `json:"url"`
		} `json:"actions"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	switch {
	case c.Type != "AdaptiveCard":
		return fmt.Errorf(`type %q must be "AdaptiveCard"`, c.Type)
	case !strings.Contains("1.0 1.1 1.2 1.3 1.4 1.5", c.Version) || len(c.Version) != 3:
		return fmt.Errorf("version %q is not one Teams renders (1.0 to 1.5)", c.Version)
	case c.Schema == "":
		return errors.New("$schema is missing")
	case len(c.Body) == 0:
		return errors.New("body is empty")
	}
	for i, e := range c.Body {
		if err := checkCardElement(e); err != nil {
			return fmt.Errorf("body[%d]: %w", i, err)
		}
	}
	for i, a := range c.Actions {
		u, err := url.Parse(a.URL)
		switch {
		case a.Type != "Action.OpenUrl":
			return fmt.Errorf("actions[%d]: type %q is not Action.OpenUrl", i, a.Type)
		case a.Title == "":
			return fmt.Errorf("actions[%d]: no title", i)
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
			return fmt.Errorf("actions[%d]: url %q is not http(s)", i, a.URL)
		}
	}
	return nil
}

func checkCardElement(raw json.RawMessage) error {
	var e struct {
		Type  string  `json:"type"`
		Text  *string `json:"text"`
		Facts []struct {
			Title *string `json:"title"`
			Value *string `json:"value"`
		} `json:"facts"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return err
	}
	switch e.Type {
	case "TextBlock":
		if e.Text == nil || *e.Text == "" {
			return errors.New("a TextBlock needs text")
		}
	case "FactSet":
		if len(e.Facts) == 0 {
			return errors.New("a FactSet needs facts")
		}
		for i, f := range e.Facts {
			if f.Title == nil || f.Value == nil {
				return fmt.Errorf("facts[%d] needs a title and a value", i)
			}
		}
	default:
		return fmt.Errorf("unknown element type %q", e.Type)
	}
	return nil
}

// TestFakeTeamsRejectsMalformedCards checks the fake itself: each card Teams refuses gets 400.
func TestFakeTeamsRejectsMalformedCards(t *testing.T) {
	good := `{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","content":` +
		`{"$schema":"http://adaptivecards.io/schemas/adaptive-card.json","type":"AdaptiveCard","version":"1.4",` +
		`"body":[{"type":"TextBlock","text":"hi"},{"type":"FactSet","facts":[{"title":"a","value":"b"}]}],` +
		`"actions":[{"type":"Action.OpenUrl","title":"Runbook","url":"https://runbooks.example.com/x"}]}}]}`
	tests := []struct {
		name, body string
		want       int
	}{
		{"well formed", good, http.StatusAccepted},
		{"not JSON", "hello", http.StatusBadRequest},
		{"no type", strings.Replace(good, `"type":"message",`, "", 1), http.StatusBadRequest},
		{"no attachments", `{"type":"message","attachments":[]}`, http.StatusBadRequest},
		{"MessageCard content type", strings.Replace(good, "card.adaptive", "teams.card.o365connector", 1), http.StatusBadRequest},
		{"not an AdaptiveCard", strings.Replace(good, `"AdaptiveCard"`, `"Card"`, 1), http.StatusBadRequest},
		{"version 2.0", strings.Replace(good, `"1.4"`, `"2.0"`, 1), http.StatusBadRequest},
		{"no version", strings.Replace(good, `"version":"1.4",`, "", 1), http.StatusBadRequest},
		{"no schema", strings.Replace(good, `"$schema":"http://adaptivecards.io/schemas/adaptive-card.json",`, "", 1), http.StatusBadRequest},
		{"empty body", strings.Replace(good, `[{"type":"TextBlock","text":"hi"},{"type":"FactSet","facts":[{"title":"a","value":"b"}]}]`, `[]`, 1),
			http.StatusBadRequest},
		{"unknown element", strings.Replace(good, `"TextBlock"`, `"Marquee"`, 1), http.StatusBadRequest},
		{"TextBlock without text", strings.Replace(good, `"text":"hi"`, `"text":""`, 1), http.StatusBadRequest},
		{"fact without value", strings.Replace(good, `,"value":"b"`, "", 1), http.StatusBadRequest},
		{"javascript action", strings.Replace(good, "https://runbooks.example.com/x", "javascript:alert(1)", 1), http.StatusBadRequest},
		{"submit action", strings.Replace(good, "Action.OpenUrl", "Action.Submit", 1), http.StatusBadRequest},
	}
	f := newFakeTeams(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(f.url(), "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d (%s), want %d", resp.StatusCode, b, tt.want)
			}
		})
	}
}
