package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/delivery"
	"github.com/responder-sre/responder/vocab"
)

// maxPatroniBody bounds what responder reads of one Patroni answer.
const maxPatroniBody = 1 << 20

// patroni talks to one cluster's REST API.
type patroni struct {
	b    *base
	urls []string // configured member URLs, without a trailing slash
	user string
	pass string
}

func (b *base) patroni(c config.PostgresCluster) *patroni {
	p := &patroni{b: b, user: c.PatroniUsername, pass: c.PatroniPassword.Value()}
	for _, u := range c.Patroni {
		p.urls = append(p.urls, strings.TrimRight(u, "/"))
	}
	return p
}

// member is one member as GET /cluster shows it, plus its own GET /patroni when read.
type member struct {
	Name     string          `json:"name"`
	Role     string          `json:"role"`  // leader, replica, sync_standby, standby_leader
	State    string          `json:"state"` // running, streaming, stopped, starting...
	APIURL   string          `json:"api_url"`
	Host     string          `json:"host"`
	Port     int             `json:"port"`
	Timeline int             `json:"timeline"`
	Lag      json.RawMessage `json:"lag"` // bytes, or "unknown"
	Tags     map[string]any  `json:"tags"`

	status *memberStatus // GET /patroni of the member; nil when unread
	err    error         // why status is nil
}

func (m member) isLeader() bool  { return m.Role == "leader" || m.Role == "standby_leader" }
func (m member) isRunning() bool { return m.State == "running" || m.State == "streaming" }

// lag returns Patroni's lag in bytes (computed from max(received, replayed)); ok is false when
// Patroni does not know it.
func (m member) lag() (int64, bool) {
	n, err := strconv.ParseInt(string(m.Lag), 10, 64)
	return n, err == nil
}

// base is the member's REST API root (api_url without /patroni).
func (m member) base() string {
	return strings.TrimSuffix(strings.TrimRight(m.APIURL, "/"), "/patroni")
}

func (m member) noFailover() bool {
	v, ok := m.Tags["nofailover"].(bool)
	return ok && v
}

type clusterStatus struct {
	Members []member `json:"members"`
	Pause   bool     `json:"pause"`
}

func (c *clusterStatus) leader() *member {
	for i := range c.Members {
		if c.Members[i].isLeader() {
			return &c.Members[i]
		}
	}
	return nil
}

func (c *clusterStatus) member(name string) *member {
	for i := range c.Members {
		if c.Members[i].Name == name {
			return &c.Members[i]
		}
	}
	return nil
}

// memberStatus is GET /patroni (the member's own PostgreSQL).
type memberStatus struct {
	State    string `json:"state"`
	Role     string `json:"role"` // master/primary or replica
	Timeline int    `json:"timeline"`
	XLog     struct {
		Location         *int64 `json:"location"`
		ReceivedLocation *int64 `json:"received_location"`
		ReplayedLocation *int64 `json:"replayed_location"`
		Paused           bool   `json:"paused"`
	} `json:"xlog"`
	Pause bool `json:"pause"`
}

// httpError is a Patroni answer that is not 2xx.
type httpError struct {
	status  int
	body    string           // an excerpt (delivery.MaxExcerpt bytes, one line)
	verdict delivery.Verdict // what the status means (delivery.Classify)
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.body) }

// do sends one request (no retry: a GET falls through to the next member or the next poll, and a
// leader change is never sent twice) and decodes a 2xx answer into out.
func (p *patroni) do(ctx context.Context, method, u string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	rctx, cancel := context.WithTimeout(ctx, p.b.connect)
	if method != http.MethodGet {
		cancel()
		// Switchover and failover answer when done (Patroni waits up to ~30s for the new leader).
		rctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	}
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if p.user != "" {
		req.SetBasicAuth(p.user, p.pass)
	}
	resp, err := delivery.Send(p.b.http, req, maxPatroniBody)
	if err != nil {
		return err
	}
	if resp.ReadErr != nil {
		return resp.ReadErr
	}
	if v := delivery.Classify(resp.StatusCode, resp.Header, p.b.now()); !v.Delivered() {
		return &httpError{status: resp.StatusCode, body: resp.Excerpt(nil), verdict: v}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(resp.Body, out); err != nil {
		return fmt.Errorf("%s %s: decode: %w", method, redactURL(u), err)
	}
	return nil
}

func redactURL(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return "(invalid URL)"
	}
	pu.User = nil
	return pu.String()
}

// cluster reads GET /cluster from the first configured member that answers, then each member's
// GET /patroni (best effort: a member that does not answer has err set).
func (p *patroni) cluster(ctx context.Context) (*clusterStatus, error) {
	var errs []error
	for _, u := range p.urls {
		var c clusterStatus
		if err := p.do(ctx, http.MethodGet, u+"/cluster", nil, &c); err != nil {
			errs = append(errs, fmt.Errorf("GET %s/cluster: %w", u, err))
			continue
		}
		for i := range c.Members {
			m := &c.Members[i]
			if m.APIURL == "" {
				m.err = errors.New("no api_url in /cluster")
				continue
			}
			var st memberStatus
			if err := p.do(ctx, http.MethodGet, m.base()+"/patroni", nil, &st); err != nil {
				m.err = err
				continue
			}
			m.status = &st
		}
		return &c, nil
	}
	return nil, handlers.Fail(vocab.ReasonServerError, "no Patroni member answered: %v", errors.Join(errs...))
}

// receivedLag is the candidate's received lag in bytes: the leader's current WAL location minus
// the candidate's received location, both read live from the members' GET /patroni. Only when
// either is unavailable does it fall back to /cluster's lag, which Patroni computes from
// max(received, replayed) positions members publish to the DCS once per loop_wait (it trails,
// either way). ok is false when neither is known.
func receivedLag(leader, cand *member) (lag int64, how string, ok bool) {
	pl, pok := cand.lag()
	live := leader != nil && leader.status != nil && leader.status.XLog.Location != nil &&
		cand.status != nil && cand.status.XLog.ReceivedLocation != nil
	switch {
	case live:
		ll, rl := *leader.status.XLog.Location, *cand.status.XLog.ReceivedLocation
		return max(ll-rl, 0), fmt.Sprintf("leader at %s, candidate received %s, live from /patroni; Patroni's /cluster lag %s",
			LSN(ll), LSN(rl), string(cand.Lag)), true
	case pok:
		return pl, fmt.Sprintf("Patroni's /cluster lag %d (from the DCS; live positions unavailable)", pl), true
	}
	return 0, "lag unknown", false
}

// primaries asks every member GET /primary and returns the names of those answering 200.
func (p *patroni) primaries(ctx context.Context, c *clusterStatus) ([]string, error) {
	var names []string
	for _, m := range c.Members {
		if m.APIURL == "" {
			continue
		}
		err := p.do(ctx, http.MethodGet, m.base()+"/primary", nil, nil)
		var he *httpError
		switch {
		case err == nil:
			names = append(names, m.Name)
		case errors.As(err, &he):
			// 503: not the primary
		default:
			// An unreachable member is not a primary as far as clients can tell.
		}
	}
	return names, nil
}

// history is GET /history: [timeline, lsn, reason, timestamp, new_leader] per promotion.
func (p *patroni) lastChange(ctx context.Context, base string) (at time.Time, leader string, tl int, err error) {
	var lines [][]any
	if err := p.do(ctx, http.MethodGet, base+"/history", nil, &lines); err != nil {
		return time.Time{}, "", 0, err
	}
	if len(lines) == 0 {
		return time.Time{}, "", 0, nil
	}
	last := lines[len(lines)-1]
	if len(last) >= 4 {
		if s, ok := last[3].(string); ok {
			at, _ = time.Parse("2006-01-02T15:04:05.999999-07:00", s)
			if at.IsZero() {
				at, _ = time.Parse(time.RFC3339Nano, s)
			}
		}
	}
	if len(last) >= 5 {
		leader, _ = last[4].(string)
	}
	if f, ok := last[0].(float64); ok {
		tl = int(f)
	}
	return at, leader, tl, nil
}

// postError maps a refused switchover or failover to a reason: delivery.Classify's for an answer
// (server_error for 5xx, client_error for a refusal), server_error when none came.
func postError(what string, err error) error {
	var he *httpError
	if errors.As(err, &he) {
		if he.verdict.Reason == vocab.ReasonServerError {
			return handlers.Fail(vocab.ReasonServerError, "%s: Patroni answered %v", what, err)
		}
		return handlers.Fail(he.verdict.Reason, "%s: Patroni refused: %v", what, err)
	}
	return handlers.Fail(vocab.ReasonServerError, "%s: %v", what, err)
}

// waitLeader polls until exactly one member answers 200 on /primary, it is want, and its
// timeline is above oldTL (when oldTL > 0).
func (p *patroni) waitLeader(ctx context.Context, j *journal, want string, oldTL int, timeout time.Duration) error {
	b := p.b
	start := b.now()
	deadline := start.Add(timeout)
	var last string
	for {
		c, err := p.cluster(ctx)
		if err == nil {
			prims, _ := p.primaries(ctx, c)
			tl := 0
			m := c.member(want)
			if m != nil {
				tl = m.Timeline
				if m.status != nil && m.status.Timeline > tl {
					tl = m.status.Timeline
				}
			}
			last = fmt.Sprintf("/primary answered 200 on %v, %s timeline %d", prims, want, tl)
			if len(prims) == 1 && prims[0] == want && (oldTL == 0 || tl > oldTL) {
				j.add("verify", "exactly one member answers 200 on /primary: %s; timeline %d → %d (after %s)",
					want, oldTL, tl, b.now().Sub(start).Round(time.Millisecond))
				j.set("new_primary_name", want)
				j.set("timeline", tl)
				if m != nil && m.Host != "" {
					j.set("new_primary", net.JoinHostPort(m.Host, strconv.Itoa(m.Port)))
				}
				return nil
			}
		} else {
			last = err.Error()
		}
		if !b.now().Before(deadline) {
			return handlers.Fail(vocab.ReasonNotRecovered, "verify: after %s: %s (want only %s, timeline above %d)", timeout, last, want, oldTL)
		}
		if err := b.sleep(ctx, min(b.poll, deadline.Sub(b.now()))); err != nil {
			return err
		}
	}
}

func describeMembers(c *clusterStatus) string {
	var parts []string
	for _, m := range c.Members {
		s := fmt.Sprintf("%s %s %s tl %d", m.Name, m.Role, m.State, m.Timeline)
		if !m.isLeader() {
			s += " lag " + string(m.Lag)
		}
		if st := m.status; st != nil {
			switch {
			case st.XLog.Location != nil:
				s += " at " + LSN(*st.XLog.Location).String()
			case st.XLog.ReceivedLocation != nil:
				s += " received " + LSN(*st.XLog.ReceivedLocation).String()
				if st.XLog.ReplayedLocation != nil {
					s += " replayed " + LSN(*st.XLog.ReplayedLocation).String()
				}
			}
		} else if m.err != nil {
			s += " (GET /patroni: " + m.err.Error() + ")"
		}
		parts = append(parts, s)
	}
	if c.Pause {
		parts = append(parts, "cluster PAUSED")
	}
	return strings.Join(parts, "; ")
}
