package handlers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/vocab"
)

// Secrets resolves named secrets (the config's secrets:) when a handler calls out. Rendered params
// and fence headers hold references ({{ secret("NAME") }}, see config.SecretRef), never values;
// handlers never read secret files themselves. *config.SecretFiles implements it.
type Secrets interface {
	Secret(ctx context.Context, name string) (string, error)
}

// Revealed records the secret values one call resolved, so that the handler can scrub them from
// whatever it returns or logs (a downstream may echo a header back in its error). Use one per Do.
type Revealed struct {
	names, values []string
}

// Reveal returns s with every secret reference replaced by the secret's value, read from src now.
// A secret that cannot be read fails with bad_param; the error names the secret, never a value.
func (rv *Revealed) Reveal(ctx context.Context, src Secrets, s string) (string, error) {
	refs := config.FindSecretRefs(s)
	if len(refs) == 0 {
		return s, nil
	}
	if src == nil {
		return "", Fail(vocab.ReasonBadParam, "secret %q: no secrets are configured", refs[0].Name)
	}
	var b strings.Builder
	last := 0
	for _, r := range refs {
		v, err := src.Secret(ctx, r.Name)
		if err != nil {
			return "", &Error{Reason: vocab.ReasonBadParam, Err: errors.New(rv.Scrub(err.Error()))}
		}
		rv.add(r.Name, v)
		b.WriteString(s[last:r.Start])
		b.WriteString(v)
		last = r.End
	}
	b.WriteString(s[last:])
	return b.String(), nil
}

func (rv *Revealed) add(name, value string) {
	if slices.Contains(rv.values, value) {
		return
	}
	rv.names, rv.values = append(rv.names, name), append(rv.values, value)
}

// Scrub returns s with every revealed value replaced by <secret NAME>, longest value first (so a
// value containing another is scrubbed whole).
func (rv *Revealed) Scrub(s string) string {
	if rv == nil || len(rv.values) == 0 {
		return s
	}
	idx := make([]int, len(rv.values))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(len(rv.values[b]), len(rv.values[a])) })
	for _, i := range idx {
		s = strings.ReplaceAll(s, rv.values[i], "<secret "+rv.names[i]+">")
	}
	return s
}

// Error returns err with its message scrubbed (nil for nil), as Redacted does.
func (rv *Revealed) Error(err error) error {
	if err == nil || rv == nil || len(rv.values) == 0 {
		return err
	}
	return Redacted(err, rv.Scrub(err.Error()))
}

// Redacted returns an error whose message is msg: err's message made fit to keep (secrets scrubbed,
// URLs redacted). errors.Is still sees err's chain (context errors, sentinels, an interruption)
// and ReasonOf gives err's reason, but nothing can reach err itself and print it. Nil for nil.
func Redacted(err error, msg string) error {
	if err == nil {
		return nil
	}
	return &redactedError{msg: msg, err: err, reason: ReasonOf(err)}
}

// redactedError is an error whose message no longer holds a secret.
type redactedError struct {
	msg    string
	err    error // never unwrapped: only asked Is
	reason vocab.Reason
}

func (e *redactedError) Error() string        { return e.msg }
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }

// As gives ReasonOf the original reason through an *Error carrying the redacted message.
func (e *redactedError) As(target any) bool {
	if t, ok := target.(**Error); ok {
		*t = &Error{Reason: e.reason, Err: errors.New(e.msg)}
		return true
	}
	return false
}

// secretParamError is the load-time error of a secret reference in a param that cannot hold one.
func secretParamError(spec Spec, name string) error {
	return fmt.Errorf(`param %q of handler %q cannot hold a secret("...") reference`, name, spec.Name)
}
