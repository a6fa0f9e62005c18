package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/template"

	"github.com/responder-sre/responder/alert"
)

// maxAnswerBytes bounds an API answer read.
const maxAnswerBytes = 64 << 20

// HTTPTarget is a responder reached over HTTP: the API with the admin token, the webhook with
// the webhook token. Its tokens are never printed.
type HTTPTarget struct {
	base         *url.URL
	apiToken     string
	webhookToken string
	client       *http.Client
}

// NewHTTPTarget returns the target at baseURL (http(s)://host:port); the tokens are read from
// the files given ("" = none). client nil: a client with a 30s timeout per request.
func NewHTTPTarget(baseURL, apiTokenFile, webhookTokenFile string, client *http.Client) (*HTTPTarget, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url %q: want http(s)://host:port", baseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	t := &HTTPTarget{base: u, client: client}
	if t.client == nil {
		t.client = &http.Client{Timeout: 30 * time.Second}
	}
	if t.apiToken, err = readToken(apiTokenFile); err != nil {
		return nil, fmt.Errorf("api token: %w", err)
	}
	if t.webhookToken, err = readToken(webhookTokenFile); err != nil {
		return nil, fmt.Errorf("webhook token: %w", err)
	}
	return t, nil
}

// readToken reads the first line of a token file; "" for no file.
func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	if tok == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return tok, nil
}

// String names the target without its tokens.
func (t *HTTPTarget) String() string { return t.base.Redacted() }

// Paused reads GET /api/v1/status.
func (t *HTTPTarget) Paused(ctx context.Context) (bool, error) {
	var st struct {
		Paused bool `json:"paused"`
	}
	err := t.do(ctx, http.MethodGet, "/api/v1/status", t.apiToken, nil, &st)
	return st.Paused, err
}

// Start posts POST /api/v1/drills.
func (t *HTTPTarget) Start(ctx context.Context, s Start) (Run, error) {
	probes := s.Probes
	if probes == nil {
		probes = []string{}
	}
	body := map[string]any{"name": s.Name, "probes": probes, "page_real": s.PageReal, "rto_seconds": s.RTO.Seconds()}
	var r Run
	err := t.do(ctx, http.MethodPost, "/api/v1/drills", t.apiToken, body, &r)
	if err == nil && (r.ID == 0 || r.RunID == "") {
		err = fmt.Errorf("POST /api/v1/drills: the answer has no run id")
	}
	return r, err
}

// Send posts the alerts as one Alertmanager v4 notification to /webhook/alertmanager; an alert
// the webhook rejected is an error.
func (t *HTTPTarget) Send(ctx context.Context, alerts []alert.Alert) error {
	msg := webhook.Message{Version: "4", GroupKey: "{}:{responder_drill=\"drill\"}", Data: &template.Data{
		Receiver: "responder-drill", Status: string(alert.StatusFiring), Alerts: make(template.Alerts, 0, len(alerts)),
	}}
	for _, a := range alerts {
		msg.Alerts = append(msg.Alerts, template.Alert{
			Status: string(a.Status), Labels: a.Labels, Annotations: a.Annotations,
			StartsAt: a.StartsAt, EndsAt: a.EndsAt, Fingerprint: a.Fingerprint,
		})
		if a.Status == alert.StatusResolved {
			msg.Status = string(alert.StatusResolved)
		}
	}
	var ans struct {
		Accepted int `json:"accepted"`
		Rejected int `json:"rejected"`
	}
	if err := t.do(ctx, http.MethodPost, "/webhook/alertmanager", t.webhookToken, msg, &ans); err != nil {
		return err
	}
	if ans.Rejected > 0 {
		return fmt.Errorf("POST /webhook/alertmanager: %d of %d alerts rejected (see responder's log and the alert_rejected audit)", ans.Rejected, len(alerts))
	}
	return nil
}

// Incidents lists the run's incidents (GET /api/v1/incidents?drill=) and reads each with its
// actions and audit. Incidents of other runs are left out even if the server ignores the filter.
func (t *HTTPTarget) Incidents(ctx context.Context, runID string) ([]Incident, error) {
	var ids []int64
	cursor := ""
	for {
		q := url.Values{"drill": {runID}, "limit": {"1000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var l struct {
			Items      []Incident `json:"items"`
			NextCursor string     `json:"next_cursor"`
		}
		if err := t.do(ctx, http.MethodGet, "/api/v1/incidents?"+q.Encode(), t.apiToken, nil, &l); err != nil {
			return nil, err
		}
		for _, inc := range l.Items {
			if inc.runID() == runID {
				ids = append(ids, inc.ID)
			}
		}
		if l.NextCursor == "" || l.NextCursor == cursor {
			break
		}
		cursor = l.NextCursor
	}
	out := make([]Incident, 0, len(ids))
	for _, id := range ids {
		var inc Incident
		if err := t.do(ctx, http.MethodGet, "/api/v1/incidents/"+strconv.FormatInt(id, 10), t.apiToken, nil, &inc); err != nil {
			return nil, err
		}
		out = append(out, inc)
	}
	return out, nil
}

// Approve posts POST /api/v1/drills/{run}/approve/{action}.
func (t *HTTPTarget) Approve(ctx context.Context, run, actionID int64) error {
	return t.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/drills/%d/approve/%d", run, actionID), t.apiToken, struct{}{}, &json.RawMessage{})
}

// Finish posts the report to POST /api/v1/drills/{id}/finish.
func (t *HTTPTarget) Finish(ctx context.Context, run int64, r Report) (Run, error) {
	var out Run
	err := t.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/drills/%d/finish", run), t.apiToken, r, &out)
	return out, err
}

// do sends a JSON request with the bearer token and decodes a 2xx answer into out; any other
// answer is an error with the status and the server's reason (its "error" field).
func (t *HTTPTarget) do(ctx context.Context, method, path, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.base.String()+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "responder-drill")
	resp, err := t.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, pathOnly(path), resp.StatusCode, reason(b))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: undecodable answer: %w", method, pathOnly(path), err)
	}
	return nil
}

// reason is the "error" of an API answer, else its first line, bounded.
func reason(b []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	msg, _, _ = strings.Cut(msg, "\n")
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	if msg == "" {
		msg = "(no reason given)"
	}
	return msg
}

// pathOnly leaves the query out of a path in errors.
func pathOnly(p string) string {
	p, _, _ = strings.Cut(p, "?")
	return p
}
