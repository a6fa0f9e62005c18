package page

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/responder-sre/responder/alert"
)

// The Adaptive Card a Teams webhook takes: a message with one attachment.
const (
	cardContentType = "application/vnd.microsoft.card.adaptive"
	cardSchema      = "http://adaptivecards.io/schemas/adaptive-card.json"
	// cardVersion is the schema version the card uses: Teams renders 1.5 on the desktop and the
	// web; 1.4 keeps the mobile clients too. TextBlock, FactSet and Action.OpenUrl are 1.0.
	cardVersion = "1.4"
	// maxCardBytes is Teams's message limit (28 KB). The bounds on each part keep a card far below
	// it; a card over it anyway is cut down to its title, facts and links.
	maxCardBytes = 28 << 10
)

// teamsMessage is the request body.
type teamsMessage struct {
	Type        string            `json:"type"`
	Attachments []teamsAttachment `json:"attachments"`
}

type teamsAttachment struct {
	ContentType string       `json:"contentType"`
	ContentURL  *string      `json:"contentUrl"` // null, as Teams's own samples send
	Content     adaptiveCard `json:"content"`
}

type adaptiveCard struct {
	Schema  string        `json:"$schema"`
	Type    string        `json:"type"`
	Version string        `json:"version"`
	Body    []cardElement `json:"body"`
	Actions []cardAction  `json:"actions,omitempty"`
	MSTeams *cardMSTeams  `json:"msteams,omitempty"`
}

// cardElement is a TextBlock or a FactSet.
type cardElement struct {
	Type      string     `json:"type"`
	Text      string     `json:"text,omitempty"`
	Size      string     `json:"size,omitempty"`
	Weight    string     `json:"weight,omitempty"`
	Color     string     `json:"color,omitempty"`
	Style     string     `json:"style,omitempty"`
	Wrap      bool       `json:"wrap,omitempty"`
	IsSubtle  bool       `json:"isSubtle,omitempty"`
	Separator bool       `json:"separator,omitempty"`
	Facts     []cardFact `json:"facts,omitempty"`
}

type cardFact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

type cardAction struct {
	Type  string `json:"type"`
	Title string `json:"title"`
	URL   string `json:"url"`
}

type cardMSTeams struct {
	Width string `json:"width"`
}

// card renders the card of the incident's transition (a.note.status) as the request body, at now
// (the resolved card's "Resolved" fact).
func (a *TeamsAction) card(info incidentInfo, al alert.Alert, now time.Time) ([]byte, error) {
	n := a.note
	title := oneLine(n.title)
	if title == "" {
		title = alertName(al, info)
	}
	color := "attention"
	head := "FIRING"
	if n.status == StatusResolved {
		color, head = "good", "RESOLVED"
	}
	body := []cardElement{{Type: "TextBlock", Text: truncate(head+": "+title, maxTitle), Size: "large", Weight: "bolder",
		Color: color, Style: "heading", Wrap: true}}
	if text := strings.TrimSpace(n.text); text != "" || alertSummary(al) != "" {
		if text == "" {
			text = alertSummary(al)
		}
		body = append(body, cardElement{Type: "TextBlock", Text: truncate(text, maxText), Wrap: true})
	}
	body = append(body, cardElement{Type: "FactSet", Facts: incidentFacts(info, al, n.status, now)})
	if len(info.Actions) > 0 {
		body = append(body, cardElement{Type: "TextBlock", Text: "Actions", Weight: "bolder", Separator: true, Wrap: true})
		var facts []cardFact
		for _, act := range info.Actions {
			facts = append(facts, cardFact{Title: act.name(), Value: truncate(act.line()+" · "+act.Target, maxFactValue)})
		}
		body = append(body, cardElement{Type: "FactSet", Facts: facts})
		if info.More > 0 {
			body = append(body, cardElement{Type: "TextBlock", Text: fmt.Sprintf("… and %d more", info.More), IsSubtle: true, Wrap: true})
		}
	}
	var actions []cardAction
	for _, l := range shownLinks(al, n.links) {
		actions = append(actions, cardAction{Type: "Action.OpenUrl", Title: l.Title, URL: l.URL})
	}
	msg := teamsMessage{Type: "message", Attachments: []teamsAttachment{{ContentType: cardContentType,
		Content: adaptiveCard{Schema: cardSchema, Type: "AdaptiveCard", Version: cardVersion, Body: body, Actions: actions,
			MSTeams: &cardMSTeams{Width: "Full"}}}}}
	b, err := json.Marshal(msg)
	if err != nil || len(b) <= maxCardBytes {
		return b, err
	}
	// Over the limit (unlikely with the bounds above): keep the title, the facts and the links.
	c := &msg.Attachments[0].Content
	c.Body = []cardElement{body[0], {Type: "FactSet", Facts: incidentFacts(info, al, n.status, now)}}
	return json.Marshal(msg)
}

// incidentFacts are the card's facts: incident, rule, alert, status and since when, then the
// alert's labels.
func incidentFacts(info incidentInfo, al alert.Alert, status string, now time.Time) []cardFact {
	var facts []cardFact
	add := func(title, value string) {
		if value != "" {
			facts = append(facts, cardFact{Title: title, Value: truncate(oneLine(value), maxFactValue)})
		}
	}
	if info.ID != 0 {
		add("Incident", fmt.Sprintf("#%d", info.ID))
	}
	add("Rule", info.Rule)
	add("Alert", al.Name)
	add("Status", status)
	if !al.StartsAt.IsZero() {
		add("Started", al.StartsAt.UTC().Format(time.RFC3339))
	}
	if status == StatusResolved {
		add("Resolved", now.UTC().Format(time.RFC3339))
	}
	for _, l := range shownLabels(al.Labels) {
		add(l.Name, l.Value)
	}
	return facts
}
