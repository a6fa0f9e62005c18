// Package alertmanager receives Alertmanager webhook notifications (payload version 4) on
// POST /webhook/alertmanager and hands their alerts to Emit, which must return only once they are
// durable (the bus publish).
//
// Contract (Alertmanager retries only 5xx and network errors; any 4xx drops the group for good):
//   - 200 only after Emit returned nil for the valid alerts of the request (or when none is valid);
//     the body is {"status":"ok","accepted":N,"rejected":M}.
//   - 400 only for a body that cannot be decoded or whose version is not "4".
//   - 401 for a missing or wrong bearer token (WWW-Authenticate: Bearer), 405 for a method other
//     than POST, 413 for a body over MaxBodyBytes or for more alerts than MaxAlerts (reason
//     too_many_alerts: every alert counted, the request audited once through OnReject).
//   - 503 (Retry-After) when Emit fails, whatever the error: the sender must retry. Except an
//     *alert.RejectedError: Emit stored every other alert, so the answer is 200.
//   - An individual invalid alert (alert.Validate), one over Limits, or one Emit refused by itself
//     (larger than the bus's maximum payload) is counted, passed to OnReject and skipped; the rest
//     of the group is accepted.
//
// Send posts a payload file to a receiver; `responder send` uses it.
package alertmanager

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/alert"
)

// Path is where the handler listens.
const Path = "/webhook/alertmanager"

// DefaultMaxBodyBytes is used when Options.MaxBodyBytes is zero.
const DefaultMaxBodyBytes = 8 << 20

// retryAfterSeconds is sent with 503 answers.
const retryAfterSeconds = "5"

// Options configures the webhook handler.
type Options struct {
	// Tokens are the accepted bearer tokens (two during a rotation). Required unless NoAuth.
	Tokens []string
	NoAuth bool
	// MaxBodyBytes bounds the request body (DefaultMaxBodyBytes when zero).
	MaxBodyBytes int64
	// MaxAlerts bounds the alerts of one request (limits.max_alerts_per_request); 0 = no bound.
	MaxAlerts int
	// Limits bounds each alert (limits:); an alert over them is rejected by itself.
	Limits alert.Limits
	// Emit makes the alerts durable (the bus publish). Required. An *alert.RejectedError means
	// every alert but the ones it lists is durable.
	Emit func(ctx context.Context, alerts []alert.Alert) error
	// OnReject is called for each rejected alert (the audit hook); may be nil. A request over
	// MaxAlerts is reported once, with an alert holding the group's common labels.
	OnReject func(ctx context.Context, a alert.Alert, err *alert.InvalidError)
	// Now stamps ReceivedAt (time.Now when nil).
	Now func() time.Time

	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// codes are the status codes the handler answers; their metric series are pre-initialised.
var codes = []int{http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable}

// Handler serves POST /webhook/alertmanager.
type Handler struct {
	o        Options
	log      *slog.Logger
	tokens   atomic.Pointer[[][sha256.Size]byte] // SetTokens
	requests map[int]prometheus.Counter
	duration map[int]prometheus.Observer
	reqVec   *prometheus.CounterVec
	durVec   *prometheus.HistogramVec
	received map[alert.Status]prometheus.Counter
	rejected map[string]prometheus.Counter
	rejVec   *prometheus.CounterVec
	trunc    prometheus.Counter
	bufs     sync.Pool
}

// NewHandler returns the handler of POST /webhook/alertmanager.
func NewHandler(o Options) (*Handler, error) {
	if o.Emit == nil {
		return nil, errors.New("alertmanager webhook: Emit is required")
	}
	if !o.NoAuth && len(o.Tokens) == 0 {
		return nil, errors.New("alertmanager webhook: a bearer token is required (or disable auth explicitly)")
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	h := &Handler{o: o, log: o.Logger.With("source", alert.SourceAlertmanager)}
	h.bufs.New = func() any { return new(bytes.Buffer) }
	if err := h.SetTokens(o.Tokens); err != nil {
		return nil, err
	}
	if err := h.registerMetrics(o.Registerer); err != nil {
		return nil, err
	}
	return h, nil
}

// SetTokens replaces the accepted bearer tokens (a configuration reload rotating
// webhook.bearer_token); requests authenticated from then on compare against these. Without
// NoAuth at least one is required.
func (h *Handler) SetTokens(tokens []string) error {
	if !h.o.NoAuth && len(tokens) == 0 {
		return errors.New("alertmanager webhook: a bearer token is required (or disable auth explicitly)")
	}
	sums := make([][sha256.Size]byte, 0, len(tokens))
	for _, t := range tokens {
		if t == "" {
			return errors.New("alertmanager webhook: empty bearer token")
		}
		sums = append(sums, sha256.Sum256([]byte(t)))
	}
	h.tokens.Store(&sums)
	return nil
}

func (h *Handler) registerMetrics(reg prometheus.Registerer) error {
	h.reqVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "responder", Name: "webhook_requests_total",
		Help: "Alertmanager webhook requests by HTTP status code.",
	}, []string{"code"})
	h.durVec = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "responder", Name: "webhook_request_duration_seconds",
		Help:    "Alertmanager webhook request duration (until the publish is acked) by HTTP status code.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"code"})
	recVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "responder", Name: "alerts_received_total",
		Help: "Alerts accepted (durably published) by source and status.",
	}, []string{"source", "status"})
	h.rejVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "responder", Name: "alerts_rejected_total",
		Help: "Invalid alerts skipped, by reason.",
	}, []string{"reason"})
	h.trunc = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "responder", Name: "webhook_truncated_alerts_total",
		Help: "Alerts Alertmanager dropped from notifications because of its max_alerts setting.",
	})
	h.requests = map[int]prometheus.Counter{}
	h.duration = map[int]prometheus.Observer{}
	for _, c := range codes {
		s := strconv.Itoa(c)
		h.requests[c] = h.reqVec.WithLabelValues(s)
		h.duration[c] = h.durVec.WithLabelValues(s)
	}
	h.received = map[alert.Status]prometheus.Counter{
		alert.StatusFiring:   recVec.WithLabelValues(alert.SourceAlertmanager, string(alert.StatusFiring)),
		alert.StatusResolved: recVec.WithLabelValues(alert.SourceAlertmanager, string(alert.StatusResolved)),
	}
	h.rejected = map[string]prometheus.Counter{}
	for _, r := range alert.RejectReasons {
		h.rejected[r] = h.rejVec.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{h.reqVec, h.durVec, recVec, h.rejVec, h.trunc} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("alertmanager webhook: register metrics: %w", err)
		}
	}
	return nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != Path {
		http.NotFound(w, r)
		return
	}
	start := time.Now()
	code := h.serve(w, r)
	if c, ok := h.requests[code]; ok {
		c.Inc()
		h.duration[code].Observe(time.Since(start).Seconds())
		return
	}
	s := strconv.Itoa(code)
	h.reqVec.WithLabelValues(s).Inc()
	h.durVec.WithLabelValues(s).Observe(time.Since(start).Seconds())
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) int {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return fail(w, http.StatusMethodNotAllowed, "method not allowed: use POST")
	}
	if !h.o.NoAuth && !h.authorized(r.Header.Get("Authorization")) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="responder"`)
		return fail(w, http.StatusUnauthorized, "missing or invalid bearer token")
	}
	if r.ContentLength > h.o.MaxBodyBytes {
		return h.tooLarge(w)
	}
	buf := h.bufs.Get().(*bytes.Buffer)
	defer h.putBuf(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.o.MaxBodyBytes)); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return h.tooLarge(w)
		}
		// Not the sender's fault for sure (timeouts, resets): let it retry.
		h.log.Warn("reading webhook body failed", "err", err)
		w.Header().Set("Retry-After", retryAfterSeconds)
		return fail(w, http.StatusServiceUnavailable, "reading body: "+err.Error())
	}

	p, err := decode(buf.Bytes(), h.o.Now(), h.o.MaxAlerts, h.o.Limits)
	if tm, ok := errors.AsType[*tooManyError](err); ok {
		return h.tooMany(w, r, tm)
	}
	if err != nil {
		h.log.Warn("webhook payload rejected", "err", err)
		return fail(w, http.StatusBadRequest, err.Error())
	}
	if p.truncated > 0 {
		h.trunc.Add(float64(p.truncated))
		h.log.Warn("alertmanager truncated the notification (max_alerts): some alerts were not sent",
			"group_key", p.groupKey, "truncated_alerts", p.truncated)
	}
	for _, rej := range p.rejected {
		h.Reject(r.Context(), rej.Alert, rej.Err, "group_key", p.groupKey)
	}
	accepted, refused := len(p.alerts), 0
	if len(p.alerts) > 0 {
		stored, rejected, err := h.emit(r.Context(), p.alerts)
		if err != nil {
			h.log.Warn("webhook alerts not stored; asking the sender to retry", "alerts", len(p.alerts), "group_key", p.groupKey, "err", err)
			w.Header().Set("Retry-After", retryAfterSeconds)
			return fail(w, http.StatusServiceUnavailable, "alerts not stored, retry later: "+err.Error())
		}
		for _, rej := range rejected {
			h.Reject(r.Context(), rej.Alert, rej.Err, "group_key", p.groupKey)
		}
		for _, a := range stored {
			h.received[a.Status].Inc()
		}
		accepted, refused = len(stored), len(rejected)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	var out [64]byte
	b := append(out[:0], `{"status":"ok","accepted":`...)
	b = strconv.AppendInt(b, int64(accepted), 10)
	b = append(b, `,"rejected":`...)
	b = strconv.AppendInt(b, int64(len(p.rejected)+refused), 10)
	b = append(b, "}\n"...)
	_, _ = w.Write(b)
	return http.StatusOK
}

// emit publishes alerts. When the publisher refused some by themselves (*alert.RejectedError) the
// others are durable: it returns them as stored, the refused ones as rejected, and no error.
func (h *Handler) emit(ctx context.Context, alerts []alert.Alert) (stored []alert.Alert, rejected []alert.Rejection, err error) {
	err = h.o.Emit(ctx, alerts)
	re, ok := errors.AsType[*alert.RejectedError](err)
	if !ok {
		if err != nil {
			return nil, nil, err
		}
		return alerts, nil, nil
	}
	// Several alerts of one payload may share an id (a duplicate): drop as many as were refused.
	refused := map[string]int{}
	for _, rej := range re.Rejected {
		refused[rej.Alert.ID()]++
	}
	stored = make([]alert.Alert, 0, len(alerts))
	for _, a := range alerts {
		if refused[a.ID()] > 0 {
			refused[a.ID()]--
			continue
		}
		stored = append(stored, a)
	}
	return stored, re.Rejected, nil
}

// Reject counts, logs and audits (OnReject) one rejected alert. The probes report theirs through
// it too, so every rejection lands in the same metric and audit trail. logArgs are added to the log.
func (h *Handler) Reject(ctx context.Context, a alert.Alert, err *alert.InvalidError, logArgs ...any) {
	c, ok := h.rejected[err.Reason]
	if !ok {
		c = h.rejVec.WithLabelValues(err.Reason)
	}
	c.Inc()
	h.log.Warn("invalid alert skipped", append([]any{"reason", err.Reason, "detail", err.Detail, "alert_source", a.Source}, logArgs...)...)
	if h.o.OnReject != nil {
		h.o.OnReject(ctx, a, err)
	}
}

// tooMany refuses a request holding more alerts than MaxAlerts: 413, every alert counted, one
// audit entry for the request (not one per alert: that would be the flood the bound prevents).
func (h *Handler) tooMany(w http.ResponseWriter, r *http.Request, tm *tooManyError) int {
	h.rejected[alert.ReasonTooManyAlerts].Add(float64(tm.n))
	ie := &alert.InvalidError{Reason: alert.ReasonTooManyAlerts, Detail: tm.Error()}
	h.log.Warn("webhook request refused: too many alerts", "alerts", tm.n, "max_alerts_per_request", tm.max, "group_key", tm.groupKey)
	if h.o.OnReject != nil {
		h.o.OnReject(r.Context(), alert.Alert{Source: alert.SourceAlertmanager, Labels: tm.commonLabels}, ie)
	}
	return fail(w, http.StatusRequestEntityTooLarge, tm.Error()+": set max_alerts in the Alertmanager receiver to at most this, or raise limits.max_alerts_per_request")
}

func (h *Handler) putBuf(b *bytes.Buffer) {
	if b.Cap() <= 1<<20 {
		h.bufs.Put(b)
	}
}

func (h *Handler) tooLarge(w http.ResponseWriter) int {
	return fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes: lower max_alerts in the Alertmanager receiver", h.o.MaxBodyBytes))
}

// authorized compares the bearer token with every configured token in constant time.
func (h *Handler) authorized(header string) bool {
	const scheme = "bearer "
	if len(header) < len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(header[len(scheme):])))
	ok := 0
	for _, t := range *h.tokens.Load() {
		ok |= subtle.ConstantTimeCompare(got[:], t[:])
	}
	return ok == 1
}

func fail(w http.ResponseWriter, code int, msg string) int {
	body, _ := json.Marshal(struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	}{"error", msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
	return code
}

// payload is a decoded notification.
type payload struct {
	groupKey  string
	truncated uint64
	alerts    []alert.Alert
	rejected  []alert.Rejection
}

// tooManyError is decode's answer to a notification with more alerts than allowed (413).
type tooManyError struct {
	n, max       int
	groupKey     string
	commonLabels map[string]string
}

func (e *tooManyError) Error() string {
	return fmt.Sprintf("%d alerts in one request, more than limits.max_alerts_per_request %d", e.n, e.max)
}

// decode parses a v4 notification and validates each alert, against limits too. Its error (400)
// means the whole body is unusable, a *tooManyError (413) that it holds more than maxAlerts
// alerts (0: no bound); invalid alerts are returned in rejected. The body is decoded without
// reflection (parseMessage) unless it holds JSON the fast path does not handle, then by encoding/json.
func decode(body []byte, now time.Time, maxAlerts int, limits alert.Limits) (payload, error) {
	var msg webhook.Message
	if !parseMessage(body, &msg) {
		msg = webhook.Message{}
		if err := json.Unmarshal(body, &msg); err != nil {
			return payload{}, fmt.Errorf("undecodable body: %w", err)
		}
	}
	if msg.Version != "4" {
		return payload{}, fmt.Errorf("unsupported payload version %q: want \"4\"", msg.Version)
	}
	p := payload{groupKey: msg.GroupKey, truncated: msg.TruncatedAlerts}
	if msg.Data == nil {
		return p, nil
	}
	if maxAlerts > 0 && len(msg.Alerts) > maxAlerts {
		return payload{}, &tooManyError{n: len(msg.Alerts), max: maxAlerts, groupKey: msg.GroupKey, commonLabels: msg.CommonLabels}
	}
	p.alerts = make([]alert.Alert, 0, len(msg.Alerts))
	for _, in := range msg.Alerts {
		a := alert.Alert{
			Source:       alert.SourceAlertmanager,
			Status:       alert.Status(in.Status),
			Labels:       in.Labels,
			Annotations:  in.Annotations,
			StartsAt:     in.StartsAt,
			EndsAt:       in.EndsAt,
			GeneratorURL: in.GeneratorURL,
			Fingerprint:  in.Fingerprint,
			ReceivedAt:   now,
		}
		err := a.Validate()
		if err == nil {
			err = limits.Check(a)
		}
		if err != nil {
			ie, ok := errors.AsType[*alert.InvalidError](err)
			if !ok {
				ie = &alert.InvalidError{Reason: alert.ReasonInvalidLabel, Detail: err.Error()}
			}
			p.rejected = append(p.rejected, alert.Rejection{Alert: a, Err: ie})
			continue
		}
		p.alerts = append(p.alerts, a)
	}
	return p, nil
}

// Send posts an Alertmanager payload to a responder webhook, as Alertmanager would, and returns the
// answer's status and body. A url without a path gets Path appended. c may be nil.
func Send(ctx context.Context, c *http.Client, rawURL, token string, body []byte) (status int, respBody []byte, err error) {
	if c == nil {
		c = http.DefaultClient
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, nil, fmt.Errorf("send: %w", err)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = Path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("send: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "responder-send")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("send: %w", err)
	}
	defer resp.Body.Close()
	respBody, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, respBody, fmt.Errorf("send: read answer: %w", err)
	}
	return resp.StatusCode, respBody, nil
}
