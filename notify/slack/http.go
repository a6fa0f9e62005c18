package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/responder-sre/responder/store"
)

// MaxBodyBytes bounds a request from Slack (a block_actions payload carries the whole message).
const MaxBodyBytes = 256 << 10

// CommandsHandler serves POST /slack/commands: the /responder slash command. Every request is
// verified (Verify) before it is parsed; the answer is an ephemeral message in the response body.
func (s *Slack) CommandsHandler() http.Handler {
	return s.inbound(endpointCommands, func(ctx context.Context, w http.ResponseWriter, req inboundRequest) int {
		form := req.form
		if form.Get("ssl_check") == "1" {
			w.WriteHeader(http.StatusOK)
			return http.StatusOK
		}
		user, text := form.Get("user_id"), form.Get("text")
		if c, err := ParseCommand(text); err == nil && changesState(c.Verb) {
			if answer, refused := s.refuseReplay(ctx, req, user, c.Verb, c.ActionID, decisionOf(c.Verb)); refused {
				writeEphemeral(w, answer)
				return http.StatusOK
			}
		}
		writeEphemeral(w, s.runCommand(ctx, user, text))
		return http.StatusOK
	})
}

// InteractionsHandler serves POST /slack/interactions: the Approve and Deny buttons (block_actions).
// The click is verified, decided through the engine's Decide and acknowledged with an empty 200; the
// clicker gets an ephemeral answer through the payload's response_url, and the incident message is
// updated by Run.
func (s *Slack) InteractionsHandler() http.Handler {
	return s.inbound(endpointInteractions, func(ctx context.Context, w http.ResponseWriter, req inboundRequest) int {
		in, err := ParseInteraction([]byte(req.form.Get("payload")))
		if err != nil {
			if errors.Is(err, ErrNotOurs) {
				w.WriteHeader(http.StatusOK) // another block or interaction type: nothing to do
				return http.StatusOK
			}
			http.Error(w, err.Error(), http.StatusBadRequest)
			return http.StatusBadRequest
		}
		if answer, refused := s.refuseReplay(ctx, req, in.UserID, "button", in.ActionID, in.Decision); refused {
			s.followUp(ctx, in.ResponseURL, answer)
		} else {
			s.interact(ctx, in)
		}
		w.WriteHeader(http.StatusOK)
		return http.StatusOK
	})
}

// inbound wraps an endpoint: POST only, bounded body, signature verified before anything is
// parsed (401 and an audit row otherwise), form decoded, metrics. What changes state is refused
// when it is a replay (refuseReplay), which serve checks once it knows what the request asks.
func (s *Slack) inbound(endpoint string, serve func(ctx context.Context, w http.ResponseWriter, req inboundRequest) int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := s.serveInbound(endpoint, w, r, serve)
		s.m.requests.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
	})
}

func (s *Slack) serveInbound(endpoint string, w http.ResponseWriter, r *http.Request, serve func(context.Context, http.ResponseWriter, inboundRequest) int) int {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return http.StatusMethodNotAllowed
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return http.StatusRequestEntityTooLarge
		}
		http.Error(w, "could not read the request body", http.StatusBadRequest)
		return http.StatusBadRequest
	}
	if err := Verify(r.Header, body, s.conf().cfg.SigningSecret.Value(), s.now()); err != nil {
		var ve *VerifyError
		reason := ReasonBadSignature
		if errors.As(err, &ve) {
			reason = ve.Reason
		}
		s.m.refusals.WithLabelValues(reason).Inc()
		s.auditUnverified(r, endpoint, reason)
		http.Error(w, "invalid Slack signature", http.StatusUnauthorized)
		return http.StatusUnauthorized
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		http.Error(w, "body is not a form", http.StatusBadRequest)
		return http.StatusBadRequest
	}
	return serve(r.Context(), w, newInboundRequest(endpoint, r, form))
}

// auditUnverified records a refused request; rate limited, since anyone can send them.
func (s *Slack) auditUnverified(r *http.Request, endpoint, reason string) {
	s.log.Warn("slack: refused an unverified request", "endpoint", endpoint, "reason", reason, "remote_addr", r.RemoteAddr)
	if !s.auditLimiter.Allow() {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	if err := s.st.Audit(ctx, store.AuditInsert{At: s.now(), Kind: store.AuditSlack, Actor: "slack", Reason: reason,
		Detail: map[string]any{"endpoint": endpoint, "remote_addr": r.RemoteAddr}}); err != nil {
		s.log.Warn("slack: could not audit an unverified request", "err", err)
	}
}

func writeEphemeral(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(ephemeral(text))
}

type ephemeralMsg struct {
	ResponseType    string `json:"response_type"`
	ReplaceOriginal bool   `json:"replace_original"`
	Text            string `json:"text"`
}

func ephemeral(text string) ephemeralMsg {
	return ephemeralMsg{ResponseType: slack.ResponseTypeEphemeral, Text: text}
}

// ErrNotOurs is returned by ParseInteraction for interactions responder does not handle.
var ErrNotOurs = errors.New("not a responder button")

// Interaction is a click on an Approve or Deny button.
type Interaction struct {
	UserID      string
	Decision    string // store.DecisionApprove or store.DecisionDeny
	ActionID    int64
	ResponseURL string
	ChannelID   string
	MessageTS   string
}

// ParseInteraction parses the payload of a block_actions interaction. It returns ErrNotOurs for
// other interaction types and for blocks without a responder button.
func ParseInteraction(payload []byte) (Interaction, error) {
	if len(payload) == 0 {
		return Interaction{}, errors.New("no payload")
	}
	var cb slack.InteractionCallback
	if err := json.Unmarshal(payload, &cb); err != nil {
		return Interaction{}, fmt.Errorf("payload is not an interaction: %w", err)
	}
	return interactionOf(cb)
}

func interactionOf(cb slack.InteractionCallback) (Interaction, error) {
	if cb.Type != slack.InteractionTypeBlockActions {
		return Interaction{}, ErrNotOurs
	}
	for _, ba := range cb.ActionCallback.BlockActions {
		if ba == nil {
			continue
		}
		var decision string
		switch ba.ActionID {
		case ButtonApprove:
			decision = store.DecisionApprove
		case ButtonDeny:
			decision = store.DecisionDeny
		default:
			continue
		}
		id, err := parseID(ba.Value)
		if err != nil {
			return Interaction{}, err
		}
		if cb.User.ID == "" {
			return Interaction{}, errors.New("the interaction names no user")
		}
		return Interaction{UserID: cb.User.ID, Decision: decision, ActionID: id, ResponseURL: cb.ResponseURL,
			ChannelID: cb.Channel.ID, MessageTS: cb.Container.MessageTs}, nil
	}
	return Interaction{}, ErrNotOurs
}

// interact decides a button click and sends the clicker the answer through response_url.
func (s *Slack) interact(ctx context.Context, in Interaction) {
	dctx, cancel := context.WithTimeout(ctx, opTimeout)
	text := s.decide(dctx, in.UserID, in.ActionID, in.Decision, "", "button")
	cancel()
	s.followUp(ctx, in.ResponseURL, text)
}

// followUp posts an ephemeral message to a response_url, in the background (bounded, and not
// cancelled with the request that asked for it).
func (s *Slack) followUp(ctx context.Context, responseURL, text string) {
	if responseURL == "" {
		return
	}
	if !s.responseURLAllowed(responseURL) {
		s.log.Warn("slack: response_url is not Slack's; not answering there", "host", hostOf(responseURL))
		return
	}
	body, _ := json.Marshal(ephemeral(text))
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, responseURL, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.client.Do(req)
		if err != nil {
			s.log.Warn("slack: could not answer through response_url", "err", err)
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			s.log.Warn("slack: response_url refused the answer", "code", resp.StatusCode)
		}
	}()
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Host)
}
