package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/responder-sre/responder/identity"
)

// WebConfig configures who may use the web console under /ui/: its users (web.users, HTTP basic
// auth against bcrypt hashes) and an authenticating proxy in front of it (web.auth). The rest of
// the listener keeps its own authentication (webhook token, Slack signatures, API tokens).
type WebConfig struct {
	Users map[string]WebUserConfig `yaml:"users,omitempty"`
	Auth  WebAuthConfig            `yaml:"auth"`
}

// WebUserConfig is a console user (web.users.NAME).
type WebUserConfig struct {
	// PasswordHash is a bcrypt hash as `htpasswd -nB NAME` writes after the colon, or
	// exporter-toolkit's basic_auth_users ($2a$, $2b$ or $2y$). Optional when web.auth.proxy_header
	// is set: such a user logs in only through the proxy, and is listed for their role.
	PasswordHash     Secret `yaml:"password_hash"`
	PasswordHashFile string `yaml:"password_hash_file"`
	// Role is admin (read and act) or read (default).
	Role string `yaml:"role"`
}

// WebAuthConfig trusts an authenticating proxy (oauth2-proxy): a request from one of
// TrustedProxies naming a user in ProxyHeader is that user, with the role web.users gives them,
// or DefaultRole when they are not listed.
type WebAuthConfig struct {
	ProxyHeader    string   `yaml:"proxy_header"`
	TrustedProxies []string `yaml:"trusted_proxies"` // CIDRs or IPs
	DefaultRole    string   `yaml:"default_role"`    // default read
}

// APITokenConfig is a named API token (api.tokens[i]): what it does (approve, pause, reset) is
// recorded under its name.
type APITokenConfig struct {
	Name      string `yaml:"name"`
	TokenFile string `yaml:"token_file"`
	Role      string `yaml:"role"` // admin or read (default read)
	// Token is read from TokenFile at load; never in YAML, never printed.
	Token Secret `yaml:"-"`
}

// Configured reports whether the console authenticates anyone: users, or a proxy header.
func (w WebConfig) Configured() bool {
	return len(w.Users) > 0 || w.Auth.ProxyHeader != ""
}

// TrustedPrefixes returns web.auth.trusted_proxies as prefixes (an IP as a /32 or /128),
// leaving out what does not parse (Parse has refused it).
func (a WebAuthConfig) TrustedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range a.TrustedProxies {
		if p, err := ParseTrustedProxy(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// ParseTrustedProxy parses a CIDR ("10.0.0.0/8") or an IP ("10.1.2.3", "::1"); IPv4-mapped IPv6
// is written as IPv4.
func ParseTrustedProxy(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR like 10.0.0.0/8", s)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		return p.Masked(), nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is neither an IP nor a CIDR", s)
	}
	ip = ip.Unmap()
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

// APITokens returns every API token with its principal: api.token as "api" (admin),
// api.read_token as "api-read" (read), then api.tokens.
func (c *Config) APITokens() []identity.Token {
	var out []identity.Token
	if t := c.APIToken(); t != "" {
		out = append(out, identity.Token{Name: identity.LegacyAdminName, Secret: t, Role: identity.RoleAdmin})
	}
	if t := c.APIReadToken(); t != "" {
		out = append(out, identity.Token{Name: identity.LegacyReadName, Secret: t, Role: identity.RoleRead})
	}
	for _, t := range c.API.Tokens {
		role, _ := identity.ParseRole(t.Role)
		out = append(out, identity.Token{Name: t.Name, Secret: t.Token.Value(), Role: role})
	}
	return out
}

// HasAdminToken reports whether some API token may act: api.token or an admin in api.tokens.
func (c *Config) HasAdminToken() bool {
	for _, t := range c.APITokens() {
		if t.Role == identity.RoleAdmin {
			return true
		}
	}
	return false
}

// WebUserRole is the role of a console user: web.users' role, or web.auth.default_role for a
// user only the proxy knows; false when name cannot log in at all.
func (c *Config) WebUserRole(name string) (identity.Role, bool) {
	if u, ok := c.Web.Users[name]; ok {
		r, ok := identity.ParseRole(u.Role)
		return r, ok
	}
	if c.Web.Auth.ProxyHeader == "" {
		return identity.RoleNone, false
	}
	r, ok := identity.ParseRole(c.Web.Auth.DefaultRole)
	return r, ok
}

// resolveWebSecrets reads the named API tokens' files and the console users' password_hash_file.
func resolveWebSecrets(cfg *Config, c *checker, o options) {
	for i := range cfg.API.Tokens {
		t := &cfg.API.Tokens[i]
		readOne(cfg, c, o, sliceKey("api.tokens", i)+".token", &t.Token, t.TokenFile)
	}
	for _, name := range sortedKeys(cfg.Web.Users) {
		u := cfg.Web.Users[name]
		readOne(cfg, c, o, "web.users."+name+".password_hash", &u.PasswordHash, u.PasswordHashFile)
		cfg.Web.Users[name] = u
	}
}

// validateNamedTokens checks api.tokens: safe unique names other than the legacy tokens', a
// role, a token file; and that no two tokens (the legacy two included) are the same token.
func (c *Config) validateNamedTokens(ch *checker) {
	type known struct{ key, what string }
	seen := map[string]known{} // token → where it was first set
	add := func(tok Secret, key, what string) {
		if tok == "" {
			return
		}
		if first, dup := seen[tok.Value()]; dup {
			ch.errorf(key, "the same token as %s (every token must differ)", first.what)
			return
		}
		seen[tok.Value()] = known{key, what}
	}
	if c.API.ReadToken != c.API.Token { // validateAPI reports that one
		add(c.API.Token, fileKey("api.token", c.API.TokenFile), "api.token")
	}
	add(c.API.ReadToken, fileKey("api.read_token", c.API.ReadTokenFile), "api.read_token")
	names := map[string]int{}
	for i, t := range c.API.Tokens {
		key := sliceKey("api.tokens", i)
		switch first, dup := names[t.Name]; {
		case !identity.ValidName(t.Name):
			ch.errorf(key+".name", "%q: a token's name is 1 to 64 letters, digits or ._@-", t.Name)
		case identity.Reserved(t.Name):
			ch.errorf(key+".name", "%q is reserved for the legacy api.token and api.read_token", t.Name)
		case dup:
			ch.errorf(key+".name", "%q is also the name of api.tokens[%d]", t.Name, first)
		default:
			names[t.Name] = i
		}
		if _, ok := identity.ParseRole(t.Role); !ok {
			ch.errorf(key+".role", "%q: want admin or read", t.Role)
		}
		if t.TokenFile == "" && t.Token == "" {
			ch.errorf(key+".token_file", "a named token needs token_file (a file holding the token)")
		}
		add(t.Token, key+".token_file", key)
	}
}

// fileKey is key, or key_file when the secret was read from a file.
func fileKey(key, file string) string {
	if file != "" {
		return key + "_file"
	}
	return key
}

// reBcrypt is a bcrypt hash in its modular crypt form: version, two-digit cost, 22 characters of
// salt and 31 of hash.
var reBcrypt = regexp.MustCompile(`^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$`)

// checkBcryptHash checks the form and the cost of a bcrypt hash; its message never quotes it.
func checkBcryptHash(h string) error {
	if !reBcrypt.MatchString(h) {
		return fmt.Errorf("not a bcrypt hash (want $2a$, $2b$ or $2y$ followed by the cost and 53 characters, as `htpasswd -nB` writes)")
	}
	cost, err := bcrypt.Cost([]byte(h))
	if err != nil || cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return fmt.Errorf("bcrypt cost must be between %d and %d", bcrypt.MinCost, bcrypt.MaxCost)
	}
	return nil
}

// validateWeb checks web (users, auth) and approvals.approvers.web.
func (c *Config) validateWeb(ch *checker) {
	w := c.Web
	for _, name := range sortedKeys(w.Users) {
		u, key := w.Users[name], "web.users."+name
		if !identity.ValidName(name) || identity.Reserved(name) {
			ch.errorf(key, "user name %q: want 1 to 64 letters, digits or ._@-, other than api and api-read", name)
		}
		if _, ok := identity.ParseRole(u.Role); !ok {
			ch.errorf(key+".role", "%q: want admin or read", u.Role)
		}
		hashKey := key + ".password_hash"
		if u.PasswordHashFile != "" {
			hashKey += "_file"
		}
		switch {
		case u.PasswordHash == "" && u.PasswordHashFile != "": // the file's problem is reported
		case u.PasswordHash == "" && w.Auth.ProxyHeader == "":
			ch.errorf(hashKey, "required (a bcrypt hash: htpasswd -nB %s) unless web.auth.proxy_header is set", name)
		case u.PasswordHash != "":
			if err := checkBcryptHash(u.PasswordHash.Value()); err != nil {
				ch.errorf(hashKey, "%v", err)
			}
		}
	}
	c.validateWebAuth(ch)
	c.validateWebApprovers(ch)
}

// validateWebAuth checks web.auth: a header name, believed only from trusted proxies, and a
// default role.
func (c *Config) validateWebAuth(ch *checker) {
	a := c.Web.Auth
	switch {
	case a.ProxyHeader != "" && !isHeaderName(a.ProxyHeader):
		ch.errorf("web.auth.proxy_header", "%q is not an HTTP header name", a.ProxyHeader)
	case strings.EqualFold(a.ProxyHeader, "Authorization"):
		ch.errorf("web.auth.proxy_header", "the header of a user's name, such as X-Forwarded-User, not Authorization")
	case a.ProxyHeader != "" && len(a.TrustedProxies) == 0:
		ch.errorf("web.auth.proxy_header", "needs web.auth.trusted_proxies: the header is believed only from them")
	case a.ProxyHeader == "" && len(a.TrustedProxies) > 0:
		ch.errorf("web.auth.trusted_proxies", "set without web.auth.proxy_header, which names the header they send")
	}
	for i, s := range a.TrustedProxies {
		key := sliceKey("web.auth.trusted_proxies", i)
		p, err := ParseTrustedProxy(s)
		switch {
		case err != nil:
			ch.errorf(key, "%v", err)
		case p.Bits() == 0:
			ch.errorf(key, "%q trusts every address: anyone could name themselves in %s", s, a.ProxyHeader)
		}
	}
	if _, ok := identity.ParseRole(a.DefaultRole); !ok {
		ch.errorf("web.auth.default_role", "%q: want admin or read", a.DefaultRole)
	}
}

// validateWebApprovers checks approvals.approvers.web: console users (listed, or any name when a
// proxy is trusted) with the admin role, each once.
func (c *Config) validateWebApprovers(ch *checker) {
	seen := map[string]bool{}
	for i, name := range c.Approvals.Approvers.Web {
		key := sliceKey("approvals.approvers.web", i)
		if !identity.ValidName(name) || identity.Reserved(name) {
			ch.errorf(key, "%q is not a console user name (1 to 64 letters, digits or ._@-)", name)
			continue
		}
		if seen[name] {
			ch.errorf(key, "%q is listed twice", name)
			continue
		}
		seen[name] = true
		_, listed := c.Web.Users[name]
		switch role, ok := c.WebUserRole(name); {
		case listed && !ok: // its role is reported with the user
		case !ok && !c.Web.Configured():
			ch.errorf(key, "%q: no console users (web.users or web.auth.proxy_header)", name)
		case !ok:
			ch.errorf(key, "%q is not in web.users", name)
		case role != identity.RoleAdmin:
			ch.errorf(key, "%q has the read role: an approver needs role admin", name)
		}
	}
}

// isHeaderName reports whether s is an HTTP field name (RFC 9110 token).
func isHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !isAlnum(r) && !strings.ContainsRune("!#$%&'*+-.^_`|~", r) {
			return false
		}
	}
	return true
}
