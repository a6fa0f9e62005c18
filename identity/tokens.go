package identity

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// The principal names of the two legacy API tokens (api.token and api.read_token). They are
// reserved: no named token, console user or approver may take them. A decision made with the
// shared admin token still names its human with the request's "by" ("api:<by>"); "api" alone is
// the anonymous shared token (two-person approval refuses it).
const (
	LegacyAdminName = "api"
	LegacyReadName  = "api-read"
)

// reName is what a principal's name may be: a console user, an API token's name, an approver.
var reName = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// ValidName reports whether s may name a principal: 1 to 64 letters, digits, '.', '_', '@' or
// '-'. The names are recorded in the audit trail and compared byte for byte.
func ValidName(s string) bool { return reName.MatchString(s) }

// Reserved reports whether name is one of the legacy tokens' principal names.
func Reserved(name string) bool { return name == LegacyAdminName || name == LegacyReadName }

// Token is an API bearer token with the principal it authenticates.
type Token struct {
	Name   string // the principal's name, recorded with what it does
	Secret string // the bearer token itself
	Role   Role
}

// Tokens authenticates API requests by their bearer token: the named tokens (api.tokens) and the
// legacy two (api.token as "api", api.read_token as "api-read"). Only SHA-256 digests of the
// tokens are kept, and every one is compared in constant time on every request, so neither a
// token's length nor which token matched shows in the timing.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	name   string
	role   Role
	digest [sha256.Size]byte
}

// NewTokens builds the authenticator of ts. Every token needs a valid name, a secret and a role;
// names and secrets are unique. Errors never quote a secret.
func NewTokens(ts []Token) (*Tokens, error) {
	t := &Tokens{entries: make([]tokenEntry, 0, len(ts))}
	names := map[string]bool{}
	digests := map[[sha256.Size]byte]string{}
	for _, tok := range ts {
		switch {
		case !ValidName(tok.Name):
			return nil, fmt.Errorf("API token name %q: want 1 to 64 letters, digits or ._@-", tok.Name)
		case tok.Secret == "":
			return nil, fmt.Errorf("API token %q: empty token", tok.Name)
		case tok.Role != RoleRead && tok.Role != RoleAdmin:
			return nil, fmt.Errorf("API token %q: no role", tok.Name)
		case names[tok.Name]:
			return nil, fmt.Errorf("API token %q: name used twice", tok.Name)
		}
		names[tok.Name] = true
		d := sha256.Sum256([]byte(tok.Secret))
		if other, dup := digests[d]; dup {
			return nil, fmt.Errorf("API tokens %q and %q are the same token", other, tok.Name)
		}
		digests[d] = tok.Name
		t.entries = append(t.entries, tokenEntry{name: tok.Name, role: tok.Role, digest: d})
	}
	return t, nil
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.entries) }

// CanAct reports whether some token has the admin role.
func (t *Tokens) CanAct() bool {
	for _, e := range t.entries {
		if e.role == RoleAdmin {
			return true
		}
	}
	return false
}

// Authenticate returns the principal of r's `Authorization: Bearer <token>` header (Via api), or
// false when the header is missing or holds no known token.
func (t *Tokens) Authenticate(r *http.Request) (Principal, bool) {
	tok, ok := bearer(r)
	if !ok {
		return Principal{}, false
	}
	return t.lookup(tok)
}

// bearer returns the token of an `Authorization: Bearer <token>` header.
func bearer(r *http.Request) (string, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return tok, ok && tok != ""
}

// lookup finds the token whose digest is tok's, comparing every digest (no early exit).
func (t *Tokens) lookup(tok string) (Principal, bool) {
	got := sha256.Sum256([]byte(tok))
	found := -1
	for i := range t.entries {
		eq := subtle.ConstantTimeCompare(got[:], t.entries[i].digest[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return Principal{}, false
	}
	e := t.entries[found]
	return Principal{Name: e.name, Role: e.role, Via: ViaAPI}, true
}
