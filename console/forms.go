package console

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/identity"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// maxFormBytes bounds a form's body.
const maxFormBytes = 16 << 10

// maxReason bounds the reason of a pause or a resume.
const maxReason = 500

// formFunc handles a POST from principal p whose CSRF token was checked. It returns the page to go
// back to (a path under Prefix) and the message to show there.
type formFunc func(r *http.Request, p identity.Principal) (back string, f flash, code int)

// form serves a POST: authentication (401), a bounded form body, the CSRF token and the role
// (403: a read-only user, a forged or stale form, a cross-site request), then fn, then a 303 back
// to the page with its message.
func (c *console) form(fn formFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		p, ok := c.authenticate(w, r)
		if !ok {
			return
		}
		r = r.WithContext(identity.NewContext(r.Context(), p))
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "400 bad form", http.StatusBadRequest)
			return
		}
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" || !c.checkCSRF(r, p) {
			c.o.Logger.Warn("console: refused a form without a valid CSRF token", "path", r.URL.Path, "user", p.Name)
			http.Error(w, "403 forbidden: this form is not valid (expired, or from another site); reload the page and try again", http.StatusForbidden)
			return
		}
		if !c.canAct(p) {
			c.o.Logger.Warn("console: refused a change by a read-only user", "path", r.URL.Path, "user", p.Name)
			http.Error(w, "403 forbidden: your role ("+p.Role.String()+") may not change anything", http.StatusForbidden)
			return
		}
		back, f, code := fn(r, p)
		if code != 0 {
			http.Error(w, strconv.Itoa(code)+" "+f.Text, code)
			return
		}
		c.setFlash(w, r, f)
		http.Redirect(w, r, back, http.StatusSeeOther)
	}
}

// backTo is the form's "back" field when it is a page of the console, else def: a redirect never
// leaves the console (no open redirect).
func backTo(r *http.Request, def string) string {
	b := r.PostFormValue("back")
	if !strings.HasPrefix(b, Prefix) || strings.ContainsAny(b, "\\\r\n") || strings.Contains(b, "//") {
		return def
	}
	return b
}

func (c *console) decide(decision string) formFunc {
	return func(r *http.Request, p identity.Principal) (string, flash, int) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil || id <= 0 {
			return "", flash{Text: "no such action"}, http.StatusNotFound
		}
		back := backTo(r, Prefix+"actions")
		if !c.canDecide(p) {
			c.o.Logger.Warn("console: refused a decision by a user who is not an approver", "action_id", id, "user", p.Name)
			return "", flash{Text: "forbidden: " + p.Name + " is not in approvals.approvers.web"}, http.StatusForbidden
		}
		res, err := c.o.Store.Decide(r.Context(), id, p.Name, decision, string(identity.ViaWeb))
		if err != nil {
			return back, c.decisionError(id, err), 0
		}
		c.o.Logger.Info("console: decision recorded", "action_id", id, "decision", decision, "user", p.Name, "replay", res.Replay)
		return back, decisionFlash(id, decision, res), 0
	}
}

// decisionFlash says what a decision did.
func decisionFlash(id int64, decision string, res store.DecisionResult) flash {
	past := map[string]string{store.DecisionApprove: "approved", store.DecisionDeny: "denied"}[decision]
	switch {
	case res.Replay:
		return flash{Text: fmt.Sprintf("Action %d: you had already %s it (a repeated click changes nothing).", id, past)}
	case res.Action == nil:
		return flash{Text: fmt.Sprintf("Action %d %s.", id, past)}
	case res.Action.State == vocab.StateApproved:
		return flash{Text: fmt.Sprintf("Action %d approved: it runs now.", id)}
	case res.Action.State == vocab.StateDenied:
		return flash{Text: fmt.Sprintf("Action %d denied: it will not run.", id)}
	case res.Action.State == vocab.StateAwaitingApproval:
		return flash{Text: fmt.Sprintf("Action %d: your approval is recorded; it needs another approver.", id)}
	}
	return flash{Text: fmt.Sprintf("Action %d %s (now %s).", id, past, res.Action.State)}
}

// decisionError says why a decision was refused.
func (c *console) decisionError(id int64, err error) flash {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return flash{Error: true, Text: fmt.Sprintf("Action %d does not exist.", id)}
	case errors.Is(err, store.ErrNotAwaiting), errors.Is(err, store.ErrAnonymousApprover):
		return flash{Error: true, Text: fmt.Sprintf("Action %d: %v.", id, err)}
	}
	c.o.Logger.Warn("console: decision failed", "action_id", id, "err", err)
	return flash{Error: true, Text: fmt.Sprintf("Action %d: the decision could not be recorded (database unavailable); try again.", id)}
}

// reason is the form's reason field, or a message saying why it is refused.
func reason(r *http.Request) (string, string) {
	s := strings.TrimSpace(r.PostFormValue("reason"))
	if utf8.RuneCountInString(s) > maxReason || !utf8.ValidString(s) {
		return "", fmt.Sprintf("The reason may hold at most %d characters.", maxReason)
	}
	return s, ""
}

func (c *console) pause(r *http.Request, p identity.Principal) (string, flash, int) {
	back := Prefix + "status"
	why, bad := reason(r)
	if bad != "" {
		return back, flash{Error: true, Text: bad}, 0
	}
	var d time.Duration
	if dur := strings.TrimSpace(r.PostFormValue("duration")); dur != "" {
		var err error
		if d, err = handlers.ParseDuration(dur); err != nil || d <= 0 {
			return back, flash{Error: true, Text: "The duration must be a positive duration like 30m or 2h (or empty: until resumed)."}, 0
		}
	}
	ps, err := c.o.Store.Pause(r.Context(), p.Name, why, d)
	if err != nil {
		c.o.Logger.Warn("console: pause failed", "user", p.Name, "err", err)
		return back, flash{Error: true, Text: "The pause could not be recorded (database unavailable); try again."}, 0
	}
	c.o.Logger.Warn("kill switch changed", "paused", true, "by", p.Name, "via", identity.ViaWeb, "reason", why, "until", ps.Until)
	if ps.Until != nil {
		return back, flash{Text: "Paused until " + stamp(*ps.Until) + ": disruptive actions are skipped."}, 0
	}
	return back, flash{Text: "Paused until resumed: disruptive actions are skipped."}, 0
}

func (c *console) resume(r *http.Request, p identity.Principal) (string, flash, int) {
	back := Prefix + "status"
	why, bad := reason(r)
	if bad != "" {
		return back, flash{Error: true, Text: bad}, 0
	}
	if _, err := c.o.Store.Resume(r.Context(), p.Name, why); err != nil {
		c.o.Logger.Warn("console: resume failed", "user", p.Name, "err", err)
		return back, flash{Error: true, Text: "The resume could not be recorded (database unavailable); try again."}, 0
	}
	c.o.Logger.Warn("kill switch changed", "paused", false, "by", p.Name, "via", identity.ViaWeb, "reason", why)
	return back, flash{Text: "Resumed: actions run again (the ones skipped while paused are not replayed)."}, 0
}

func (c *console) resetBreaker(r *http.Request, p identity.Principal) (string, flash, int) {
	back := Prefix + "status"
	h, s := r.PostFormValue("handler"), r.PostFormValue("scope")
	ok, err := c.o.Store.ResetBreaker(r.Context(), h, s, p.Name)
	switch {
	case err != nil:
		c.o.Logger.Warn("console: breaker reset failed", "handler", h, "scope", s, "user", p.Name, "err", err)
		return back, flash{Error: true, Text: "The reset could not be recorded (database unavailable); try again."}, 0
	case !ok:
		return back, flash{Error: true, Text: fmt.Sprintf("There is no breaker for %s on %s.", h, s)}, 0
	}
	c.o.Logger.Warn("circuit breaker reset by hand", "handler", h, "scope", s, "by", p.Name, "via", identity.ViaWeb)
	return back, flash{Text: fmt.Sprintf("Breaker %s on %s reset (closed).", h, s)}, 0
}
