package app

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/identity"
)

// access is the role an API route needs (identity.RoleRead or identity.RoleAdmin).
type access = identity.Role

// The roles of the API's routes.
const (
	accessRead  = identity.RoleRead
	accessAdmin = identity.RoleAdmin
)

// noAuthPrincipal is who a request is under --web.no-auth without a valid token: the shared
// admin token, so that "by" names the human as before.
var noAuthPrincipal = identity.Principal{Name: identity.LegacyAdminName, Role: identity.RoleAdmin, Via: identity.ViaAPI}

// newIdentity builds the API's token authenticator (api.token, api.read_token, api.tokens) and
// the console's (web.users, web.auth, approvals.approvers.web; nil when neither users nor a proxy
// header are configured). The console's counter (responder_web_logins_total) goes to the app's
// registry.
func (a *App) newIdentity() error {
	toks, err := newTokens(a.conf())
	if err != nil {
		return err
	}
	web, logins, err := a.newWebAuth(a.conf())
	if err != nil {
		return err
	}
	a.setLive(func(l *live) { l.tokens, l.webAuth, l.webLogins = toks, web, logins })
	a.reg.MustRegister(webLoginsCollector{a})
	return nil
}

// newTokens builds the API's token authenticator of cfg.
func newTokens(cfg *config.Config) (*identity.Tokens, error) {
	toks, err := identity.NewTokens(cfg.APITokens())
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	return toks, nil
}

// newWebAuth builds the console's authenticator of cfg, and its responder_web_logins_total;
// nil without web.users and web.auth.proxy_header.
func (a *App) newWebAuth(cfg *config.Config) (*identity.Web, prometheus.Collector, error) {
	if !cfg.Web.Configured() {
		return nil, nil, nil
	}
	users := make(map[string]identity.WebUser, len(cfg.Web.Users))
	for name, u := range cfg.Web.Users {
		role, _ := identity.ParseRole(u.Role)
		users[name] = identity.WebUser{PasswordHash: u.PasswordHash.Value(), Role: role}
	}
	defaultRole, _ := identity.ParseRole(cfg.Web.Auth.DefaultRole)
	logins := &captured{}
	web, err := identity.NewWeb(identity.WebOptions{
		Users:          users,
		ProxyHeader:    cfg.Web.Auth.ProxyHeader,
		TrustedProxies: cfg.Web.Auth.TrustedPrefixes(),
		DefaultRole:    defaultRole,
		Approvers:      cfg.Approvals.Approvers.Web,
		Logger:         a.log.With("component", "web"),
		Registerer:     logins,
	})
	return web, logins.c, err
}

// captured is the Registerer a console authenticator is built with: it keeps the collector
// (responder_web_logins_total) for webLoginsCollector to serve, so that the authenticator a
// reload builds counts on in the same series.
type captured struct{ c prometheus.Collector }

func (r *captured) Register(c prometheus.Collector) error { r.c = c; return nil }

func (r *captured) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		r.c = c
	}
}

func (r *captured) Unregister(prometheus.Collector) bool { return false }

// webLoginsCollector serves responder_web_logins_total from the console authenticator in force
// (an unchecked collector: what it serves changes with a reload).
type webLoginsCollector struct{ a *App }

func (webLoginsCollector) Describe(chan<- *prometheus.Desc) {}

func (c webLoginsCollector) Collect(ch chan<- prometheus.Metric) {
	if l := c.a.cur().webLogins; l != nil {
		l.Collect(ch)
	}
}

// carryLogins adds the counts of the console authenticator going out of force to the one coming
// in, so that responder_web_logins_total does not drop at a reload.
func carryLogins(from, to prometheus.Collector) {
	fv, ok1 := from.(*prometheus.CounterVec)
	tv, ok2 := to.(*prometheus.CounterVec)
	if !ok1 || !ok2 || fv == tv {
		return
	}
	ch := make(chan prometheus.Metric, 16)
	go func() { fv.Collect(ch); close(ch) }()
	for m := range ch {
		var pb dto.Metric
		if m.Write(&pb) != nil || pb.Counter == nil {
			continue
		}
		for _, l := range pb.GetLabel() {
			if l.GetName() == "outcome" {
				tv.WithLabelValues(l.GetValue()).Add(pb.GetCounter().GetValue())
			}
		}
	}
}

// WebAuth is the console's authenticator (nil when the config has no web.users and no
// web.auth.proxy_header): the console calls its Authenticate on every /ui/ request and its
// MayDecide before offering Approve and Deny.
func (a *App) WebAuth() *identity.Web { return a.cur().webAuth }

// WebApprovers is approvals.approvers.web: the console users who may approve and deny.
func (a *App) WebApprovers() []string {
	return append([]string(nil), a.conf().Approvals.Approvers.Web...)
}

// auth authenticates the bearer token (identity.Tokens: constant-time digest comparisons), puts
// its principal in the request's context (identity.FromContext) and refuses a role below need:
// 401 without a known token, 403 with a read-only one. Under --web.no-auth a request without a
// valid token is the shared admin token's.
func (a *App) auth(need access, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := a.cur().tokens.Authenticate(r)
		if !ok && a.o.NoAuth {
			p, ok = noAuthPrincipal, true
		}
		if !ok {
			a.unauthorized.Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="responder"`)
			writeError(w, http.StatusUnauthorized, "missing or invalid bearer token")
			return
		}
		if !p.Can(need) {
			a.unauthorized.Inc()
			msg := "the read-only token may not do this"
			if p.Name != identity.LegacyReadName {
				msg = fmt.Sprintf("token %q is read-only: it may not do this", p.Name)
			}
			writeError(w, http.StatusForbidden, msg)
			return
		}
		h(w, r.WithContext(identity.NewContext(r.Context(), p)))
	})
}

// actorOf names who does what r asks (decides, pauses, resets, replays), from the principal auth
// put in r's context and the body's "by":
//   - a named token (api.tokens) is its name: a request no longer chooses its own "by", so a "by"
//     naming anyone else is an error (the handler answers 400 with it);
//   - the shared admin token (api.token, or --web.no-auth) keeps the deprecated "by": "api:<by>",
//     or "api" without one; named returns false, and the handler keeps its own handling of "by".
func actorOf(r *http.Request, by string) (actor string, named bool, err error) {
	p, ok := identity.FromContext(r.Context())
	if !ok || p.Name == identity.LegacyAdminName {
		return "", false, nil
	}
	if by != "" && by != p.Name {
		return "", true, fmt.Errorf("by %q is not this token's name %q: a named token acts as itself (leave \"by\" out)", by, p.Name)
	}
	return p.Name, true, nil
}
