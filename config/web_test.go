package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/responder-sre/responder/identity"
)

func TestLoadWeb(t *testing.T) {
	cfg := mustLoad(t, "conf.web.yml")
	if !cfg.Web.Configured() {
		t.Fatal("web not configured")
	}
	for _, c := range []struct {
		key       string
		got, want any
	}{
		{"web.users.alice.role", cfg.Web.Users["alice"].Role, "admin"},
		{"web.users.bob.role", cfg.Web.Users["bob"].Role, "read"},
		{"web.users.carol.smith.role (default)", cfg.Web.Users["carol.smith"].Role, "read"},
		{"web.users.carol.smith.password_hash (file)", cfg.Web.Users["carol.smith"].PasswordHash.Value(), cfg.Web.Users["alice"].PasswordHash.Value()},
		{"web.users.oncall@example.com.password_hash", cfg.Web.Users["oncall@example.com"].PasswordHash.Value(), ""},
		{"web.auth.proxy_header", cfg.Web.Auth.ProxyHeader, "X-Forwarded-User"},
		{"web.auth.default_role (default)", cfg.Web.Auth.DefaultRole, "read"},
		{"api.tokens[0].role", cfg.API.Tokens[0].Role, "read"},
		{"api.tokens[1].role", cfg.API.Tokens[1].Role, "admin"},
		{"HasAdminToken", cfg.HasAdminToken(), true},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.key, c.got, c.want)
		}
	}
	wantPrefixes := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("172.16.0.0/12")}
	if got := cfg.Web.Auth.TrustedPrefixes(); !cmp.Equal(got, wantPrefixes, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) {
		t.Errorf("TrustedPrefixes() = %v, want %v", got, wantPrefixes)
	}
	want := []identity.Token{
		{Name: "api", Secret: "SECRET-legacy-admin", Role: identity.RoleAdmin},
		{Name: "api-read", Secret: "SECRET-legacy-read", Role: identity.RoleRead},
		{Name: "ci", Secret: "SECRET-file-ci", Role: identity.RoleRead},
		{Name: "deploy-bot", Secret: "SECRET-file-deploy", Role: identity.RoleAdmin},
	}
	if diff := cmp.Diff(want, cfg.APITokens()); diff != "" {
		t.Errorf("APITokens() (-want +got):\n%s", diff)
	}
	if _, err := identity.NewTokens(cfg.APITokens()); err != nil {
		t.Errorf("NewTokens(APITokens()) = %v", err)
	}
	if want := []string{"alice", "oncall@example.com"}; !cmp.Equal(cfg.Approvals.Approvers.Web, want) {
		t.Errorf("approvals.approvers.web = %q", cfg.Approvals.Approvers.Web)
	}
	for _, c := range []struct {
		name string
		role identity.Role
		ok   bool
	}{
		{"alice", identity.RoleAdmin, true},
		{"bob", identity.RoleRead, true},
		{"oncall@example.com", identity.RoleAdmin, true},
		{"someone-the-proxy-knows", identity.RoleRead, true},
	} {
		if role, ok := cfg.WebUserRole(c.name); role != c.role || ok != c.ok {
			t.Errorf("WebUserRole(%q) = %v, %v; want %v, %v", c.name, role, ok, c.role, c.ok)
		}
	}
	// The password hashes are secrets too: they never print.
	out := fmt.Sprintf("%v %+v", cfg, cfg.Web)
	if strings.Contains(out, "$2a$") || strings.Contains(out, "$2y$") || strings.Contains(out, "SECRET-") {
		t.Errorf("a hash or token printed: %s", out)
	}
}

func TestWebDefaults(t *testing.T) {
	cfg := mustLoad(t, "conf.minimal.yml")
	if cfg.Web.Configured() || cfg.Web.Auth.DefaultRole != "read" || len(cfg.API.Tokens) != 0 || len(cfg.Approvals.Approvers.Web) != 0 {
		t.Errorf("web = %+v, api.tokens = %v", cfg.Web, cfg.API.Tokens)
	}
	if want := []identity.Token{{Name: "api", Secret: "change-me-too", Role: identity.RoleAdmin}}; !cmp.Equal(cfg.APITokens(), want) {
		t.Errorf("APITokens() = %+v", cfg.APITokens())
	}
	if role, ok := cfg.WebUserRole("alice"); ok {
		t.Errorf("WebUserRole without console users = %v, true", role)
	}
	// default_role written as null is the default; an approver known only to the proxy needs an
	// admin default_role.
	for _, tc := range []struct{ yaml, wantErr string }{
		{"web: {auth: {default_role: null}}\n", ""},
		{"web: {auth: {proxy_header: X-User, trusted_proxies: [10.0.0.1], default_role: admin}}\napprovals: {approvers: {web: [dave]}}\n", ""},
		{"web: {auth: {proxy_header: X-User, trusted_proxies: [10.0.0.1]}}\napprovals: {approvers: {web: [dave]}}\n",
			`d.yml:2: approvals.approvers.web[0]: "dave" has the read role: an approver needs role admin`},
		{"api: {tokens: [{name: ci, token_file: /nonexistent/SECRET-x}]}\n", "d.yml:1: api.tokens[0].token_file: open /nonexistent/SECRET-x"},
	} {
		cfg, err := Parse([]byte(tc.yaml), "d.yml", noEnv)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tc.yaml, err)
		case tc.wantErr == "" && cfg.Web.Auth.DefaultRole == "":
			t.Errorf("%q: default_role empty", tc.yaml)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%q: err = %v, want %q", tc.yaml, err, tc.wantErr)
		}
	}
}

func TestWebLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string // "file:line: key: message", each
	}{
		{"web-bad-users", []string{
			`conf.web-bad-users.yml:3: web.users.alice.password_hash: not a bcrypt hash`,
			`conf.web-bad-users.yml:4: web.users.bob.password_hash: bcrypt cost must be between 4 and 31`,
			`conf.web-bad-users.yml:5: web.users.carol.smith.role: "owner": want admin or read`,
			`conf.web-bad-users.yml:6: web.users.api: user name "api": want 1 to 64 letters`,
			`conf.web-bad-users.yml:7: web.users.dave.password_hash: required (a bcrypt hash: htpasswd -nB dave) unless web.auth.proxy_header is set`,
			`conf.web-bad-users.yml:8: web.users.al ice: user name "al ice"`,
			`conf.web-bad-users.yml:9: web.users.erin.password_hash_file: set either web.users.erin.password_hash or web.users.erin.password_hash_file, not both`,
			`conf.web-bad-users.yml:10: web.users.frank.password_hash_file: `, `secrets/empty is empty`,
		}},
		{"web-bad-auth", []string{
			`conf.web-bad-auth.yml:4: web.auth.proxy_header: needs web.auth.trusted_proxies`,
			`conf.web-bad-auth.yml:5: web.auth.default_role: "superuser": want admin or read`,
		}},
		{"web-bad-trusted", []string{
			`conf.web-bad-trusted.yml:3: web.auth.proxy_header: "X Forwarded User" is not an HTTP header name`,
			`conf.web-bad-trusted.yml:5: web.auth.trusted_proxies[0]: "10.0.0.0/33" is not a CIDR`,
			`conf.web-bad-trusted.yml:6: web.auth.trusted_proxies[1]: "proxy.internal" is neither an IP nor a CIDR`,
			`conf.web-bad-trusted.yml:7: web.auth.trusted_proxies[2]: "0.0.0.0/0" trusts every address`,
			`conf.web-bad-trusted.yml:8: web.auth.trusted_proxies[3]: "fe80::1%eth0" is neither an IP nor a CIDR`,
		}},
		{"web-bad-trusted-only", []string{`conf.web-bad-trusted-only.yml:3: web.auth.trusted_proxies: set without web.auth.proxy_header`}},
		{"web-bad-approvers", []string{
			`conf.web-bad-approvers.yml:10: approvals.approvers.web[1]: "bob" has the read role`,
			`conf.web-bad-approvers.yml:11: approvals.approvers.web[2]: "mallory" is not in web.users`,
			`conf.web-bad-approvers.yml:12: approvals.approvers.web[3]: "alice" is listed twice`,
			`conf.web-bad-approvers.yml:13: approvals.approvers.web[4]: "api:alice" is not a console user name`,
		}},
		{"web-bad-approvers-nousers", []string{`conf.web-bad-approvers-nousers.yml:2: approvals.approvers.web[0]: "alice": no console users`}},
		{"api-bad-tokens", []string{
			`conf.api-bad-tokens.yml:5: api.tokens[1].name: "ci" is also the name of api.tokens[0]`,
			`conf.api-bad-tokens.yml:6: api.tokens[2].name: "api" is reserved for the legacy api.token and api.read_token`,
			`conf.api-bad-tokens.yml:7: api.tokens[3].name: "ci bot": a token's name is 1 to 64 letters, digits or ._@-`,
			`conf.api-bad-tokens.yml:8: api.tokens[4].token_file: the same token as api.tokens[0]`,
			`conf.api-bad-tokens.yml:9: api.tokens[5].token_file: a named token needs token_file`,
			`conf.api-bad-tokens.yml:10: api.tokens[6].role: "owner": want admin or read`,
			`conf.api-bad-tokens.yml:11: api.tokens[7].token_file: `, `secrets/empty is empty`,
			`conf.api-bad-tokens.yml:12: api.tokens[8].token_file: the same token as api.token`,
		}},
		{"api-bad-token-inline", []string{`conf.api-bad-token-inline.yml:4: unknown key "token"`}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			name := "conf." + tc.file + ".yml"
			cfg, err := load(t, name)
			if err == nil {
				t.Fatalf("Load(%s) = %+v, want an error", name, cfg)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n  %v\nlacks\n  %s", err, w)
				}
			}
			if strings.Contains(err.Error(), "SECRET-") || strings.Contains(err.Error(), "btco6o") {
				t.Errorf("error quotes a secret or a hash: %v", err)
			}
		})
	}
}

// TestBcryptHashForms: what htpasswd -nB and exporter-toolkit write is accepted, and the hash
// generated here verifies; anything else is refused at load.
func TestBcryptHashForms(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	good := string(h)
	for _, tc := range []struct {
		hash string
		ok   bool
	}{
		{good, true},
		{"$2b$" + good[4:], true},
		{"$2y$" + good[4:], true},
		{"$2a$31$" + good[7:], true},
		{"$2x$" + good[4:], false},
		{"$2$" + good[4:], false},
		{"$2a$03$" + good[7:], false},
		{"$2a$32$" + good[7:], false},
		{"$2a$4$" + good[7:], false},
		{good[:59], false},
		{good + "x", false},
		{" " + good, false},
		{strings.Replace(good, good[10:11], "!", 1), false},
		{"{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", false},
		{"pw", false},
	} {
		if err := checkBcryptHash(tc.hash); (err == nil) != tc.ok {
			t.Errorf("checkBcryptHash(%q) = %v, want ok %v", tc.hash, err, tc.ok)
		}
	}
}

func TestParseTrustedProxy(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"10.1.2.3", "10.1.2.3/32"},
		{" 10.1.2.3 ", "10.1.2.3/32"},
		{"::1", "::1/128"},
		{"fd00::/8", "fd00::/8"},
		{"::ffff:10.1.2.3", "10.1.2.3/32"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"10.0.0.0/33", ""},
		{"10.0.0", ""},
		{"localhost", ""},
		{"fe80::1%eth0", ""},
		{"", ""},
	} {
		p, err := ParseTrustedProxy(tc.in)
		got := ""
		if err == nil {
			got = p.String()
		}
		if got != tc.want {
			t.Errorf("ParseTrustedProxy(%q) = %q (%v), want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestNamedTokenSecretsNeverPrint: the named tokens read from files print as <secret>.
func TestNamedTokenSecretsNeverPrint(t *testing.T) {
	cfg := mustLoad(t, "conf.web.yml")
	out := fmt.Sprintf("%v %+v %#v", cfg.API, cfg.API.Tokens, cfg.API.Tokens)
	if strings.Contains(out, "SECRET-") || !strings.Contains(out, Redacted) {
		t.Errorf("named tokens print as %s", out)
	}
	if _, err := Load(filepath.Join("testdata", "conf.web.yml"), noEnv); err != nil {
		t.Fatal(err)
	}
}
