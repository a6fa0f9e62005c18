package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// pageLimit is how many rows a list page shows: small pages, fast on a phone.
const pageLimit = 50

// setRefresh turns the page's auto-refresh on unless ?refresh=off, with the link that toggles it.
func (c *console) setRefresh(r *http.Request, v *view) {
	q := r.URL.Query()
	on := q.Get("refresh") != "off"
	if on {
		q.Set("refresh", "off")
	} else {
		q.Del("refresh")
	}
	q.Del("cursor") // a toggled page starts again from the newest rows
	toggle := r.URL.Path
	if e := q.Encode(); e != "" {
		toggle += "?" + e
	}
	v.Refresh = &refresh{On: on, Seconds: int(c.o.Refresh / time.Second), Toggle: toggle}
}

// incidentsData is the incidents page.
type incidentsData struct {
	Rule, State string
	Drill       string // a drill run's id: its incidents only
	States      []vocab.IncidentState
	Rules       []string
	Items       []store.Incident
	Next        string // the URL of the next (older) page, "" at the end
	Awaiting    int
	AwaitingErr bool
}

func (c *console) incidents(w http.ResponseWriter, r *http.Request, v *view) (string, int) {
	v.Title, v.Nav = "Incidents", "incidents"
	c.setRefresh(r, v)
	q := r.URL.Query()
	d := &incidentsData{Rule: q.Get("rule"), State: q.Get("state"), Drill: q.Get("drill"), States: vocab.IncidentStates, Rules: c.o.Store.RuleNames()}
	if d.State != "" && !slices.Contains(vocab.IncidentStates, vocab.IncidentState(d.State)) {
		return c.fail(v, http.StatusBadRequest, "Unknown incident state "+strconv.Quote(d.State)+".")
	}
	items, next, err := c.o.Store.Incidents(r.Context(), store.IncidentFilter{Rule: d.Rule, State: vocab.IncidentState(d.State),
		Drill: d.Drill, Page: store.Page{Limit: pageLimit, Cursor: q.Get("cursor")}})
	if err != nil {
		return c.listFail(v, "incidents", err)
	}
	d.Items, d.Next = items, nextURL(r, next)
	d.Awaiting, err = c.o.Store.PendingApprovals(r.Context())
	d.AwaitingErr = err != nil
	v.Data = d
	return "incidents", http.StatusOK
}

// listFail is the error page of a list: 400 for a bad cursor, else storeFail's.
func (c *console) listFail(v *view, what string, err error) (string, int) {
	if strings.Contains(err.Error(), "invalid cursor") {
		return c.fail(v, http.StatusBadRequest, "Invalid page cursor.")
	}
	return c.storeFail(v, what, err)
}

// nextURL is the request's URL with cursor, or "" without one.
func nextURL(r *http.Request, cursor string) string {
	if cursor == "" {
		return ""
	}
	q := r.URL.Query()
	q.Set("cursor", cursor)
	return r.URL.Path + "?" + q.Encode()
}

func (c *console) incident(w http.ResponseWriter, r *http.Request, v *view) (string, int) {
	v.Title, v.Nav = "Incident", "incidents"
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return c.fail(v, http.StatusNotFound, "There is no such incident.")
	}
	inc, err := c.o.Store.Incident(r.Context(), id)
	if err != nil {
		return c.storeFail(v, "incident", err)
	}
	c.setRefresh(r, v)
	v.Title = fmt.Sprintf("Incident %d: %s", inc.ID, inc.Rule)
	v.Data = c.incidentView(inc, v)
	return "incident", http.StatusOK
}

// actionsData is the page of the actions awaiting approval.
type actionsData struct {
	Items []actionView
	TTL   time.Duration
}

func (c *console) actions(w http.ResponseWriter, r *http.Request, v *view) (string, int) {
	v.Title, v.Nav = "Awaiting approval", "actions"
	c.setRefresh(r, v)
	acts, err := c.o.Store.AwaitingApproval(r.Context())
	if err != nil {
		return c.storeFail(v, "actions", err)
	}
	d := &actionsData{TTL: c.o.ApprovalTTL}
	for i := range acts {
		d.Items = append(d.Items, c.actionView(acts[i], nil, v))
	}
	v.Data = d
	return "actions", http.StatusOK
}

// statusData is the status page.
type statusData struct {
	Status
	Durations []string // suggestions for the pause's duration
}

func (c *console) status(w http.ResponseWriter, r *http.Request, v *view) (string, int) {
	v.Title, v.Nav = "Status", "status"
	// Bounded: a store or bus that hangs must not hold the page (its parts say "unavailable").
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	v.Data = &statusData{Status: c.o.Store.Status(ctx), Durations: []string{"15m", "30m", "1h", "2h", "4h", "12h"}}
	return "status", http.StatusOK
}

// auditData is the audit search page.
type auditData struct {
	Incident, Rule, Since, Until string
	Rules                        []string
	Items                        []auditRow
	Next                         string
	Error                        string
}

// timeForms are the forms the audit search's times may take: datetime-local's (UTC), RFC 3339,
// a date.
var timeForms = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339, "2006-01-02 15:04", "2006-01-02"}

func parseTime(s string) (time.Time, error) {
	for _, f := range timeForms {
		if t, err := time.ParseInLocation(f, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (YYYY-MM-DDTHH:MM, UTC)", s)
}

func (c *console) audit(w http.ResponseWriter, r *http.Request, v *view) (string, int) {
	v.Title, v.Nav = "Audit", "audit"
	q := r.URL.Query()
	d := &auditData{Incident: q.Get("incident"), Rule: q.Get("rule"), Since: q.Get("since"), Until: q.Get("until"), Rules: c.o.Store.RuleNames()}
	v.Data = d
	f, err := auditFilter(d)
	if err != nil {
		d.Error = err.Error()
		return "audit", http.StatusBadRequest
	}
	f.Page = store.Page{Limit: pageLimit, Cursor: q.Get("cursor")}
	items, next, err := c.o.Store.Audit(r.Context(), f)
	if err != nil {
		return c.listFail(v, "audit trail", err)
	}
	for _, e := range items {
		d.Items = append(d.Items, newAuditRow(e))
	}
	d.Next = nextURL(r, next)
	return "audit", http.StatusOK
}

// auditFilter reads the audit search's fields.
func auditFilter(d *auditData) (store.AuditFilter, error) {
	f := store.AuditFilter{Rule: d.Rule}
	var err error
	if d.Incident != "" {
		if f.IncidentID, err = strconv.ParseInt(d.Incident, 10, 64); err != nil || f.IncidentID <= 0 {
			return f, fmt.Errorf("incident: %q is not an incident id", d.Incident)
		}
	}
	if d.Since != "" {
		if f.Since, err = parseTime(d.Since); err != nil {
			return f, fmt.Errorf("since: %w", err)
		}
	}
	if d.Until != "" {
		if f.Until, err = parseTime(d.Until); err != nil {
			return f, fmt.Errorf("until: %w", err)
		}
	}
	return f, nil
}

// safeLink is s when it is an absolute http(s) URL with a host, else "": an annotation or a
// generator URL becomes a link only then (never javascript:, data: or a relative path).
func safeLink(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	return u.String()
}

// drillsData is the page of the drill runs.
type drillsData struct {
	Name  string
	Items []drillView
	Next  string
}

// drillView is one drill run as the page shows it.
type drillView struct {
	store.DrillRun
	// Outcome is running, passed or failed.
	Outcome string
	// Recover is the recovery time against the RTO ("12s of 5m0s"); "" when it did not recover.
	Recover string
	// Late: it recovered, after its RTO.
	Late bool
	RTO  string
}

func newDrillView(d store.DrillRun) drillView {
	rto := time.Duration(d.RTOSeconds * float64(time.Second))
	v := drillView{DrillRun: d, Outcome: "running", RTO: human(rto)}
	if d.Passed != nil {
		v.Outcome = "failed"
		if *d.Passed {
			v.Outcome = "passed"
		}
	}
	if d.RecoverSeconds != nil {
		rec := time.Duration(*d.RecoverSeconds * float64(time.Second))
		v.Recover = human(rec) + " of " + human(rto)
		v.Late = rec > rto
	}
	return v
}

func (c *console) drills(w http.ResponseWriter, r *http.Request, v *view) (string, int) {
	v.Title, v.Nav = "Drills", "drills"
	c.setRefresh(r, v)
	q := r.URL.Query()
	d := &drillsData{Name: q.Get("name")}
	items, next, err := c.o.Store.Drills(r.Context(), store.DrillFilter{Name: d.Name, Limit: pageLimit, Cursor: q.Get("cursor")})
	if err != nil {
		return c.listFail(v, "drill runs", err)
	}
	for _, it := range items {
		d.Items = append(d.Items, newDrillView(it))
	}
	d.Next = nextURL(r, next)
	v.Data = d
	return "drills", http.StatusOK
}
