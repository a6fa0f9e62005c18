// Package identity says who a request comes from: a console user (HTTP basic auth against
// web.users, or a user named by a trusted authenticating proxy), a named API token (api.tokens,
// api.token, api.read_token), or a Slack user. Every decision is recorded with the principal's
// name and the channel it came through (Via), so the audit trail always says who decided and how.
package identity

import "context"

// Role is what a principal may do: read, or also act (approve, deny, pause, resume, reset).
type Role int

// Roles, least to most.
const (
	RoleNone Role = iota
	RoleRead
	RoleAdmin
)

// String is the role's name in the config file ("read", "admin"); "" for RoleNone.
func (r Role) String() string {
	switch r {
	case RoleRead:
		return "read"
	case RoleAdmin:
		return "admin"
	}
	return ""
}

// ParseRole reads a role name of the config file.
func ParseRole(s string) (Role, bool) {
	switch s {
	case "read":
		return RoleRead, true
	case "admin":
		return RoleAdmin, true
	}
	return RoleNone, false
}

// Via is the channel a decision came through; it is recorded with the decision.
type Via string

// The channels.
const (
	ViaWeb   Via = "web"
	ViaAPI   Via = "api"
	ViaSlack Via = "slack"
	// ViaDrill: a drill run approving its own actions (approve: auto) as drill:<name>, through
	// POST /api/v1/drills/{id}/approve/{action}.
	ViaDrill Via = "drill"
)

// Principal is an authenticated caller.
type Principal struct {
	Name string // a console user, an API token's name, a Slack user ID
	Role Role
	Via  Via
}

// Can reports whether p has at least role need.
func (p Principal) Can(need Role) bool { return need != RoleNone && p.Role >= need }

type ctxKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal NewContext put in ctx.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}
