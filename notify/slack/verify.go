package slack

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// MaxSkew is how far a request's X-Slack-Request-Timestamp may be from now, either way.
const MaxSkew = 5 * time.Minute

// VerifyError says why a request was not verified; Reason is one of the Reason* constants.
type VerifyError struct {
	Reason string
	Err    error
}

func (e *VerifyError) Error() string {
	return "slack request not verified: " + e.Reason + ": " + e.Err.Error()
}
func (e *VerifyError) Unwrap() error { return e.Err }

// Verify checks Slack's v0 signature of a request: X-Slack-Request-Timestamp within MaxSkew of now
// (either way), X-Slack-Signature "v0=" + hex HMAC-SHA256 of "v0:timestamp:body" under secret,
// compared in constant time (slack.SecretsVerifier, which also checks the timestamp against the
// wall clock). Every failure is a *VerifyError.
func Verify(h http.Header, body []byte, secret string, now time.Time) error {
	if secret == "" {
		return &VerifyError{Reason: ReasonBadSignature, Err: errors.New("no signing secret configured")}
	}
	sig, tsText := h.Get("X-Slack-Signature"), h.Get("X-Slack-Request-Timestamp")
	if sig == "" || tsText == "" {
		return &VerifyError{Reason: ReasonMissingHeaders, Err: errors.New("X-Slack-Signature or X-Slack-Request-Timestamp missing")}
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil || ts <= 0 {
		return &VerifyError{Reason: ReasonStaleTimestamp, Err: errors.New("X-Slack-Request-Timestamp is not a Unix time")}
	}
	if d := now.Sub(time.Unix(ts, 0)); d > MaxSkew || d < -MaxSkew {
		return &VerifyError{Reason: ReasonStaleTimestamp, Err: errors.New("X-Slack-Request-Timestamp is more than 5 minutes away")}
	}
	if !strings.HasPrefix(sig, "v0=") {
		return &VerifyError{Reason: ReasonBadSignature, Err: errors.New("X-Slack-Signature lacks the v0= prefix")}
	}
	sv, err := slack.NewSecretsVerifier(h, secret)
	if errors.Is(err, slack.ErrExpiredTimestamp) {
		return &VerifyError{Reason: ReasonStaleTimestamp, Err: err}
	}
	if err != nil {
		return &VerifyError{Reason: ReasonBadSignature, Err: errors.New("malformed signature")}
	}
	if _, err := sv.Write(body); err != nil {
		return &VerifyError{Reason: ReasonBadSignature, Err: err}
	}
	if err := sv.Ensure(); err != nil {
		return &VerifyError{Reason: ReasonBadSignature, Err: err}
	}
	return nil
}
