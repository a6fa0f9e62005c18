package identity

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"
)

// hash is a bcrypt hash of password at bcrypt.MinCost (tests only: production hashes cost 10+).
func hash(t testing.TB, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

type webFixture struct {
	web  *Web
	reg  *prometheus.Registry
	logs *bytes.Buffer
}

// newTestWeb: alice (admin, approver), bob (read), carol (admin, not an approver), proxied (no
// password: only through the proxy, admin); a proxy header believed from 10.0.0.0/8 and fd00::/8.
func newTestWeb(t testing.TB, mutate func(*WebOptions)) webFixture {
	t.Helper()
	f := webFixture{reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}}
	o := WebOptions{
		Users: map[string]WebUser{
			"alice":   {PasswordHash: hash(t, "alice-password"), Role: RoleAdmin},
			"bob":     {PasswordHash: hash(t, "bob-password"), Role: RoleRead},
			"carol":   {PasswordHash: "$2y$" + hash(t, "carol-password")[4:], Role: RoleAdmin}, // as htpasswd -nB writes
			"proxied": {Role: RoleAdmin},
		},
		ProxyHeader:    "x-forwarded-user",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
		Approvers:      []string{"alice", "proxied", "alice"},
		Logger:         slog.New(slog.NewTextHandler(f.logs, nil)),
		Registerer:     f.reg,
	}
	if mutate != nil {
		mutate(&o)
	}
	w, err := NewWeb(o)
	if err != nil {
		t.Fatal(err)
	}
	f.web = w
	return f
}

type webRequest struct {
	remote      string
	user, pass  string // basic auth when user or pass is set
	proxy       []string
	rawAuthz    string // an Authorization header as is
	wantName    string
	wantRole    Role
	wantErr     error
	wantOutcome string // the responder_web_logins_total outcome it counts ("" none)
}

func (tc webRequest) request() *http.Request {
	r := httptest.NewRequest("GET", "/ui/", nil)
	r.RemoteAddr = tc.remote
	if r.RemoteAddr == "" {
		r.RemoteAddr = "192.0.2.1:51234"
	}
	if tc.user != "" || tc.pass != "" {
		r.SetBasicAuth(tc.user, tc.pass)
	}
	if tc.rawAuthz != "" {
		r.Header.Set("Authorization", tc.rawAuthz)
	}
	for _, v := range tc.proxy {
		r.Header.Add("X-Forwarded-User", v)
	}
	return r
}

func TestWebAuthenticate(t *testing.T) {
	for name, tc := range map[string]webRequest{
		"basic admin":                    {user: "alice", pass: "alice-password", wantName: "alice", wantRole: RoleAdmin, wantOutcome: LoginSuccess},
		"basic read":                     {user: "bob", pass: "bob-password", wantName: "bob", wantRole: RoleRead, wantOutcome: LoginSuccess},
		"htpasswd $2y$ hash":             {user: "carol", pass: "carol-password", wantName: "carol", wantRole: RoleAdmin, wantOutcome: LoginSuccess},
		"no credentials":                 {wantErr: ErrNoCredentials},
		"bearer is not basic":            {rawAuthz: "Bearer alice-password", wantErr: ErrNoCredentials},
		"malformed basic":                {rawAuthz: "Basic !!!", wantErr: ErrNoCredentials},
		"basic without colon":            {rawAuthz: "Basic " + base64.StdEncoding.EncodeToString([]byte("alice")), wantErr: ErrNoCredentials},
		"wrong password":                 {user: "alice", pass: "bob-password", wantErr: ErrBadCredentials, wantOutcome: LoginWrongPassword},
		"empty password":                 {user: "alice", pass: "", wantErr: ErrBadCredentials, wantOutcome: LoginWrongPassword},
		"password prefix":                {user: "alice", pass: "alice-passwor", wantErr: ErrBadCredentials, wantOutcome: LoginWrongPassword},
		"another user's password":        {user: "bob", pass: "alice-password", wantErr: ErrBadCredentials, wantOutcome: LoginWrongPassword},
		"unknown user":                   {user: "mallory", pass: "alice-password", wantErr: ErrBadCredentials, wantOutcome: LoginUnknownUser},
		"case matters":                   {user: "Alice", pass: "alice-password", wantErr: ErrBadCredentials, wantOutcome: LoginUnknownUser},
		"proxy-only user, basic auth":    {user: "proxied", pass: "", wantErr: ErrBadCredentials, wantOutcome: LoginUnknownUser},
		"password over 72 bytes":         {user: "alice", pass: "alice-password" + strings.Repeat("x", 70), wantErr: ErrBadCredentials, wantOutcome: LoginWrongPassword},
		"proxy, listed user":             {remote: "10.1.2.3:4000", proxy: []string{"bob"}, wantName: "bob", wantRole: RoleRead},
		"proxy, listed admin":            {remote: "10.1.2.3:4000", proxy: []string{"proxied"}, wantName: "proxied", wantRole: RoleAdmin},
		"proxy, unlisted: default role":  {remote: "10.1.2.3:4000", proxy: []string{"dave@example.com"}, wantName: "dave@example.com", wantRole: RoleRead},
		"proxy, value trimmed":           {remote: "10.1.2.3:4000", proxy: []string{" dave "}, wantName: "dave", wantRole: RoleRead},
		"proxy wins over basic":          {remote: "10.1.2.3:4000", proxy: []string{"bob"}, user: "alice", pass: "alice-password", wantName: "bob", wantRole: RoleRead},
		"proxy, IPv4-mapped peer":        {remote: "[::ffff:10.9.9.9]:4000", proxy: []string{"bob"}, wantName: "bob", wantRole: RoleRead},
		"proxy, IPv6 peer":               {remote: "[fd12::1]:4000", proxy: []string{"bob"}, wantName: "bob", wantRole: RoleRead},
		"proxy, zoned IPv6 peer":         {remote: "[fd12::1%eth0]:4000", proxy: []string{"bob"}, wantName: "bob", wantRole: RoleRead},
		"proxy, peer without port":       {remote: "10.1.2.3", proxy: []string{"bob"}, wantName: "bob", wantRole: RoleRead},
		"proxy, two values":              {remote: "10.1.2.3:4000", proxy: []string{"bob", "alice"}, wantErr: ErrBadCredentials, wantOutcome: LoginInvalidUser},
		"proxy, invalid name":            {remote: "10.1.2.3:4000", proxy: []string{"bob smith"}, wantErr: ErrBadCredentials, wantOutcome: LoginInvalidUser},
		"proxy, reserved name":           {remote: "10.1.2.3:4000", proxy: []string{"api"}, wantErr: ErrBadCredentials, wantOutcome: LoginInvalidUser},
		"proxy, empty value: basic":      {remote: "10.1.2.3:4000", proxy: []string{" "}, user: "bob", pass: "bob-password", wantName: "bob", wantRole: RoleRead, wantOutcome: LoginSuccess},
		"proxy, empty value, no basic":   {remote: "10.1.2.3:4000", proxy: []string{""}, wantErr: ErrNoCredentials},
		"untrusted peer: header ignored": {remote: "192.0.2.7:4000", proxy: []string{"alice"}, wantErr: ErrNoCredentials},
		"untrusted peer, basic":          {remote: "192.0.2.7:4000", proxy: []string{"alice"}, user: "bob", pass: "bob-password", wantName: "bob", wantRole: RoleRead, wantOutcome: LoginSuccess},
		"untrusted IPv6 peer":            {remote: "[2001:db8::1]:4000", proxy: []string{"alice"}, wantErr: ErrNoCredentials},
		"unparsable peer":                {remote: "pipe", proxy: []string{"alice"}, wantErr: ErrNoCredentials},
		"peer 11.0.0.1":                  {remote: "11.0.0.1:1", proxy: []string{"alice"}, wantErr: ErrNoCredentials},
	} {
		t.Run(name, func(t *testing.T) {
			f := newTestWeb(t, nil)
			p, err := f.web.Authenticate(tc.request())
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			want := Principal{}
			if tc.wantErr == nil {
				want = Principal{Name: tc.wantName, Role: tc.wantRole, Via: ViaWeb}
			}
			if p != want {
				t.Errorf("principal = %+v, want %+v", p, want)
			}
			for _, o := range []string{LoginSuccess, LoginWrongPassword, LoginUnknownUser, LoginInvalidUser} {
				want := 0.0
				if o == tc.wantOutcome {
					want = 1
				}
				if got := testutil.ToFloat64(f.web.logins.WithLabelValues(o)); got != want {
					t.Errorf("responder_web_logins_total{outcome=%q} = %v, want %v", o, got, want)
				}
			}
			logged := f.logs.String()
			if errors.Is(tc.wantErr, ErrBadCredentials) {
				if !strings.Contains(logged, "console login refused") || !strings.Contains(logged, "remote_addr=") || !strings.Contains(logged, "reason="+tc.wantOutcome) {
					t.Errorf("refused login not logged with its reason and address: %q", logged)
				}
			} else if logged != "" {
				t.Errorf("logged %q", logged)
			}
			if tc.pass != "" && strings.Contains(logged, tc.pass) {
				t.Errorf("the password is in the log: %q", logged)
			}
		})
	}
}

func TestWebLoginsMetricRegistered(t *testing.T) {
	f := newTestWeb(t, nil)
	n, err := testutil.GatherAndCount(f.reg, "responder_web_logins_total")
	if err != nil || n != 4 {
		t.Fatalf("responder_web_logins_total series = %d, %v; want the 4 outcomes at zero", n, err)
	}
	if _, err := NewWeb(WebOptions{Registerer: f.reg}); err == nil {
		t.Fatal("a second Web registered the same metric")
	}
}

// TestWebCache: a verified password is remembered (no second bcrypt: success is counted once),
// failures are not, and the cache is bounded.
func TestWebCache(t *testing.T) {
	f := newTestWeb(t, func(o *WebOptions) { o.CacheSize = 2 })
	auth := func(user, pass string) error {
		_, err := f.web.Authenticate(webRequest{user: user, pass: pass}.request())
		return err
	}
	for range 3 {
		if err := auth("alice", "alice-password"); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(f.web.logins.WithLabelValues(LoginSuccess)); got != 1 {
		t.Fatalf("bcrypt verifications = %v, want 1 (then the cache)", got)
	}
	for range 3 {
		if err := auth("alice", "wrong"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("wrong password: %v", err)
		}
	}
	if got := testutil.ToFloat64(f.web.logins.WithLabelValues(LoginWrongPassword)); got != 3 {
		t.Fatalf("wrong passwords counted %v, want 3 (never cached)", got)
	}
	if n := f.web.cache.len(); n != 1 {
		t.Fatalf("cache holds %d, want 1", n)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(auth("bob", "bob-password"))
	must(auth("carol", "carol-password"))
	if n := f.web.cache.len(); n != 2 {
		t.Fatalf("cache holds %d, want its bound 2", n)
	}
	must(auth("alice", "alice-password")) // forgotten (the oldest): verified again
	if got := testutil.ToFloat64(f.web.logins.WithLabelValues(LoginSuccess)); got != 4 {
		t.Fatalf("bcrypt verifications = %v, want 4", got)
	}
	// The user is part of the key: alice's cached password does not log bob in.
	if err := auth("bob", "alice-password"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("bob with alice's password: %v", err)
	}
	if a, b := f.web.cache.mac("ab", "c"), f.web.cache.mac("a", "bc"); a == b {
		t.Fatal("(ab, c) and (a, bc) share a cache key")
	}
}

func TestWebConcurrent(t *testing.T) {
	f := newTestWeb(t, nil)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			user, pass, ok := "alice", "alice-password", true
			if i%2 == 1 {
				user, pass, ok = "bob", "nope", false
			}
			for range 20 {
				_, err := f.web.Authenticate(webRequest{user: user, pass: pass}.request())
				if (err == nil) != ok {
					t.Errorf("%s: %v", user, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestWebApprovers(t *testing.T) {
	f := newTestWeb(t, nil)
	if got := f.web.Approvers(); len(got) != 2 || got[0] != "alice" || got[1] != "proxied" {
		t.Fatalf("Approvers() = %q", got)
	}
	for _, tc := range []struct {
		p    Principal
		want bool
	}{
		{Principal{Name: "alice", Role: RoleAdmin, Via: ViaWeb}, true},
		{Principal{Name: "proxied", Role: RoleAdmin, Via: ViaWeb}, true},
		{Principal{Name: "alice", Role: RoleRead, Via: ViaWeb}, false},
		{Principal{Name: "alice", Role: RoleAdmin, Via: ViaAPI}, false},
		{Principal{Name: "carol", Role: RoleAdmin, Via: ViaWeb}, false},
		{Principal{Name: "bob", Role: RoleRead, Via: ViaWeb}, false},
		{Principal{}, false},
	} {
		if got := f.web.MayDecide(tc.p); got != tc.want {
			t.Errorf("MayDecide(%+v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if !f.web.IsApprover("alice") || f.web.IsApprover("carol") {
		t.Error("IsApprover")
	}
}

func TestNewWebErrors(t *testing.T) {
	for _, tc := range []struct {
		o    WebOptions
		want string
	}{
		{WebOptions{ProxyHeader: "X-Forwarded-User"}, "needs trusted proxies"},
		{WebOptions{Users: map[string]WebUser{"a b": {Role: RoleRead}}}, `user name "a b"`},
		{WebOptions{Users: map[string]WebUser{"api": {Role: RoleRead}}}, `user name "api"`},
		{WebOptions{Users: map[string]WebUser{"alice": {}}}, "no role"},
		{WebOptions{Users: map[string]WebUser{"alice": {PasswordHash: "SECRET-plain", Role: RoleRead}}}, "not a bcrypt hash"},
	} {
		_, err := NewWeb(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.o, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "SECRET-") {
			t.Errorf("error quotes the hash: %v", err)
		}
	}
	// Without users or a proxy every request is refused.
	w, err := NewWeb(WebOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Authenticate(webRequest{user: "alice", pass: "x"}.request()); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("empty Web: %v", err)
	}
}

// FuzzWebAuthenticate: whatever the Authorization and proxy headers and the peer address hold,
// Authenticate never panics, and it authenticates only alice with her password, or a valid name
// sent by a trusted proxy.
func FuzzWebAuthenticate(f *testing.F) {
	alice := base64.StdEncoding.EncodeToString([]byte("alice:alice-password"))
	for _, s := range []struct{ authz, proxy, remote string }{
		{"Basic " + alice, "", "192.0.2.1:1"},
		{"Basic " + base64.StdEncoding.EncodeToString([]byte("alice:wrong")), "", "192.0.2.1:1"},
		{"", "bob", "10.0.0.1:1"},
		{"", "bob", "192.0.2.1:1"},
		{"Basic", "a,b", "[::ffff:10.0.0.1]:1"},
		{"basic " + alice, " x ", "10.0.0.1"},
		{"Bearer x", "api", "[fd00::1%lo]:80"},
	} {
		f.Add(s.authz, s.proxy, s.remote)
	}
	w := newTestWeb(f, nil).web
	trusted := func(remote string) bool { return w.fromTrustedProxy(remote) }
	f.Fuzz(func(t *testing.T, authz, proxy, remote string) {
		r := httptest.NewRequest("GET", "/ui/", nil)
		r.RemoteAddr = remote
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		if proxy != "" {
			r.Header.Set("X-Forwarded-User", proxy)
		}
		p, err := w.Authenticate(r)
		if err != nil {
			if !errors.Is(err, ErrNoCredentials) && !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("unexpected error %v", err)
			}
			if p != (Principal{}) {
				t.Fatalf("a principal with an error: %+v", p)
			}
			return
		}
		if p.Via != ViaWeb || !ValidName(p.Name) || Reserved(p.Name) || !p.Can(RoleRead) {
			t.Fatalf("principal %+v", p)
		}
		if trusted(remote) && strings.TrimSpace(proxy) != "" {
			if p.Name != strings.TrimSpace(proxy) {
				t.Fatalf("proxy header %q authenticated %+v", proxy, p)
			}
			return
		}
		user, pass, ok := r.BasicAuth()
		if !ok || user != "alice" && user != "bob" && user != "carol" || pass != user+"-password" || p.Name != user {
			t.Fatalf("authenticated %+v from %q (basic %q:%q) at %q", p, authz, user, pass, remote)
		}
	})
}

// BenchmarkWebAuthenticate compares a remembered password with a bcrypt verification (cost 10,
// htpasswd -B's default): a page load's requests take the first path.
func BenchmarkWebAuthenticate(b *testing.B) {
	h, err := bcrypt.GenerateFromPassword([]byte("alice-password"), 10)
	if err != nil {
		b.Fatal(err)
	}
	w, err := NewWeb(WebOptions{Users: map[string]WebUser{"alice": {PasswordHash: string(h), Role: RoleAdmin}}})
	if err != nil {
		b.Fatal(err)
	}
	r := webRequest{user: "alice", pass: "alice-password"}.request()
	b.Run("cached", func(b *testing.B) {
		if _, err := w.Authenticate(r); err != nil { // verified once, then remembered
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := w.Authenticate(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bcrypt", func(b *testing.B) {
		for b.Loop() {
			w.cache = &verified{key: w.cache.key, set: map[[32]byte]struct{}{}, limit: 1}
			if _, err := w.Authenticate(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestWebChecksOnePasswordAtATime: bcrypt comparisons run one at a time, so a flood of wrong
// passwords costs at most one core; a request that ends while it waits is refused with ErrBusy,
// and a remembered password needs no turn.
func TestWebChecksOnePasswordAtATime(t *testing.T) {
	f := newTestWeb(t, nil)
	ok := webRequest{user: "alice", pass: "alice-password"}
	if _, err := f.web.Authenticate(ok.request()); err != nil {
		t.Fatal(err)
	}
	f.web.checking <- struct{}{} // a check in progress
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	waiting := webRequest{user: "bob", pass: "bob-password"}.request().WithContext(ctx)
	if _, err := f.web.Authenticate(waiting); !errors.Is(err, ErrBusy) {
		t.Errorf("a login waiting for its turn, its request ended: %v, want ErrBusy", err)
	}
	if p, err := f.web.Authenticate(ok.request()); err != nil || p.Name != "alice" {
		t.Errorf("a remembered password waited for a check: %+v, %v", p, err)
	}
	<-f.web.checking
	if p, err := f.web.Authenticate(webRequest{user: "bob", pass: "bob-password"}.request()); err != nil || p.Name != "bob" {
		t.Errorf("after the check: %+v, %v", p, err)
	}
}
