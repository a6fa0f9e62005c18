package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"strings"

	"github.com/responder-sre/responder/identity"
)

// CSRF: a form carries HMAC(key, principal's name, nonce), where the nonce is a random value in a
// cookie (SameSite=Strict, HttpOnly, Path=/ui/, Secure over TLS) and the key is the console's
// (Options.CSRFKey). A POST is accepted only with the token of its cookie and its principal: a
// page of another site can neither read the cookie nor compute the token, and a token stolen from
// one user is worth nothing under another's name.

const (
	csrfCookie  = "responder_csrf"
	csrfField   = "csrf"
	flashCookie = "responder_flash"
	nonceBytes  = 24
)

var b64 = base64.RawURLEncoding

// cookie is one of the console's cookies: only for /ui/, never sent cross-site, never readable
// by a script, Secure when the request came over TLS.
func cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: Prefix, MaxAge: maxAge, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil}
}

// csrfToken is the token of p's forms, setting the nonce cookie when the request has none (or a
// malformed one).
func (c *console) csrfToken(w http.ResponseWriter, r *http.Request, p identity.Principal) string {
	nonce := csrfNonce(r)
	if nonce == "" {
		b := make([]byte, nonceBytes)
		_, _ = rand.Read(b) // never fails (crypto/rand)
		nonce = b64.EncodeToString(b)
		http.SetCookie(w, cookie(r, csrfCookie, nonce, 0))
	}
	return c.sign("csrf", p.Name, nonce)
}

// csrfNonce is the request's nonce cookie, or "" when it has none of the right form.
func csrfNonce(r *http.Request) string {
	ck, err := r.Cookie(csrfCookie)
	if err != nil {
		return ""
	}
	if b, err := b64.DecodeString(ck.Value); err != nil || len(b) != nonceBytes {
		return ""
	}
	return ck.Value
}

// checkCSRF reports whether the form's token is the one of the request's cookie and principal.
func (c *console) checkCSRF(r *http.Request, p identity.Principal) bool {
	nonce := csrfNonce(r)
	got := r.PostFormValue(csrfField)
	if nonce == "" || got == "" {
		return false
	}
	return hmac.Equal([]byte(got), []byte(c.sign("csrf", p.Name, nonce)))
}

// sign is the console key's HMAC of the parts (each length-prefixed: no two lists of parts sign
// the same bytes), base64url.
func (c *console) sign(parts ...string) string {
	m := hmac.New(sha256.New, c.csrfKey)
	for _, s := range parts {
		m.Write(binary.BigEndian.AppendUint32(nil, uint32(len(s))))
		m.Write([]byte(s))
	}
	return b64.EncodeToString(m.Sum(nil))
}

// flash is the short message a POST leaves for the page it redirects to.
type flash struct {
	Error bool
	Text  string
}

// setFlash leaves f for the next page, in a signed cookie that lives a minute.
func (c *console) setFlash(w http.ResponseWriter, r *http.Request, f flash) {
	kind := "ok"
	if f.Error {
		kind = "error"
	}
	v := kind + "." + b64.EncodeToString([]byte(f.Text))
	http.SetCookie(w, cookie(r, flashCookie, v+"."+c.sign("flash", v), 60))
}

// takeFlash returns the message a POST left (nil when none, or when its signature is wrong) and
// clears it: it is shown once.
func (c *console) takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	ck, err := r.Cookie(flashCookie)
	if err != nil {
		return nil
	}
	http.SetCookie(w, cookie(r, flashCookie, "", -1))
	i := strings.LastIndexByte(ck.Value, '.')
	if i < 0 || !hmac.Equal([]byte(ck.Value[i+1:]), []byte(c.sign("flash", ck.Value[:i]))) {
		return nil
	}
	kind, text, ok := strings.Cut(ck.Value[:i], ".")
	b, err := b64.DecodeString(text)
	if !ok || err != nil {
		return nil
	}
	return &flash{Error: kind == "error", Text: string(b)}
}
