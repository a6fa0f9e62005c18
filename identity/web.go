package identity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
)

// WebUser is a console user (web.users.NAME).
type WebUser struct {
	// PasswordHash is a bcrypt hash ($2a$, $2b$, $2y$: `htpasswd -nB`, exporter-toolkit's
	// basic_auth_users); empty for a user who logs in only through the authenticating proxy.
	PasswordHash string
	Role         Role
}

// WebOptions configure the console's authenticator (the web: section).
type WebOptions struct {
	Users map[string]WebUser
	// ProxyHeader names the header an authenticating proxy (oauth2-proxy) puts the user's name
	// in ("" for none). It is believed only on requests whose peer is in TrustedProxies.
	ProxyHeader    string
	TrustedProxies []netip.Prefix
	// DefaultRole is the role of a proxy-authenticated user missing from Users (default read).
	DefaultRole Role
	// Approvers are who may approve and deny from the console (approvals.approvers.web).
	Approvers []string
	// CacheSize bounds the verified passwords remembered (default 1024).
	CacheSize int
	// Logger receives the failed logins (default: discarded).
	Logger *slog.Logger
	// Registerer receives responder_web_logins_total (nil: not registered).
	Registerer prometheus.Registerer
}

// The errors of Web.Authenticate.
var (
	// ErrNoCredentials: the request carries neither basic auth nor a believed proxy header; the
	// console answers 401 with the WWW-Authenticate challenge so that the browser asks.
	ErrNoCredentials = errors.New("no credentials")
	// ErrBadCredentials: a wrong user name or password, or a proxy header naming no valid user.
	ErrBadCredentials = errors.New("wrong user name or password")
	// ErrBusy: the request ended while it waited for its password to be checked (bcrypt checks
	// run one at a time; the console answers 429).
	ErrBusy = errors.New("too many logins are being checked")
)

// WWWAuthenticate is the challenge the console sends with a 401 so that a browser asks for the
// user name and password.
const WWWAuthenticate = `Basic realm="responder", charset="UTF-8"`

// The outcomes of responder_web_logins_total.
const (
	LoginSuccess       = "success"        // a password verified by bcrypt (cached afterwards: counted once)
	LoginWrongPassword = "wrong_password" // a known user, a wrong password
	LoginUnknownUser   = "unknown_user"   // no such user, or one without a password (proxy only)
	LoginInvalidUser   = "invalid_user"   // a trusted proxy's header holding no valid name, or several
)

// maxPasswordBytes is bcrypt's limit: it ignores what follows, so longer passwords are refused.
const maxPasswordBytes = 72

// defaultCacheSize bounds the verified passwords a Web remembers.
const defaultCacheSize = 1024

// Web authenticates the console's users: a user named by a trusted authenticating proxy, or HTTP
// basic auth against the users' bcrypt hashes. A verified user and password is remembered (by an
// HMAC under a key drawn at start, never the password itself), so that the requests of a page load
// do not each cost a bcrypt; failed attempts are never remembered. Safe for concurrent use.
type Web struct {
	users       map[string]WebUser
	header      string
	trusted     []netip.Prefix
	defaultRole Role
	approvers   map[string]bool
	approverLst []string
	dummyHash   []byte // compared for an unknown user, so that its answer takes as long
	cache       *verified
	// checking admits one bcrypt comparison at a time: a flood of wrong passwords costs at most
	// one core, and the remediation work keeps the other. Remembered passwords need none.
	checking chan struct{}
	log      *slog.Logger
	logins   *prometheus.CounterVec
}

// NewWeb builds the console's authenticator. The config package has validated the web: section;
// NewWeb checks again what it relies on.
func NewWeb(o WebOptions) (*Web, error) {
	w := &Web{users: make(map[string]WebUser, len(o.Users)), header: http.CanonicalHeaderKey(strings.TrimSpace(o.ProxyHeader)),
		defaultRole: o.DefaultRole, approvers: map[string]bool{}, log: o.Logger, checking: make(chan struct{}, 1)}
	if w.defaultRole == RoleNone {
		w.defaultRole = RoleRead
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.header != "" && len(o.TrustedProxies) == 0 {
		return nil, errors.New("web: a proxy header needs trusted proxies")
	}
	for _, p := range o.TrustedProxies {
		w.trusted = append(w.trusted, netip.PrefixFrom(p.Addr().Unmap(), unmappedBits(p)).Masked())
	}
	cost, err := w.addUsers(o.Users)
	if err != nil {
		return nil, err
	}
	if cost > 0 {
		if w.dummyHash, err = bcrypt.GenerateFromPassword([]byte(rand.Text()), cost); err != nil {
			return nil, fmt.Errorf("web: %w", err)
		}
	}
	for _, a := range o.Approvers {
		if !w.approvers[a] {
			w.approverLst = append(w.approverLst, a)
		}
		w.approvers[a] = true
	}
	if w.cache, err = newVerified(o.CacheSize); err != nil {
		return nil, err
	}
	w.logins = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "responder", Name: "web_logins_total",
		Help: "Console logins by outcome: success counts passwords verified (remembered afterwards), the others refused logins."},
		[]string{"outcome"})
	for _, o := range []string{LoginSuccess, LoginWrongPassword, LoginUnknownUser, LoginInvalidUser} {
		w.logins.WithLabelValues(o)
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(w.logins); err != nil {
			return nil, fmt.Errorf("web: %w", err)
		}
	}
	return w, nil
}

// addUsers checks and adds the users; it returns the highest bcrypt cost among them (0: none has
// a password).
func (w *Web) addUsers(users map[string]WebUser) (int, error) {
	maxCost := 0
	for name, u := range users {
		if !ValidName(name) || Reserved(name) {
			return 0, fmt.Errorf("web: user name %q: want 1 to 64 letters, digits or ._@-, not api or api-read", name)
		}
		if u.Role != RoleRead && u.Role != RoleAdmin {
			return 0, fmt.Errorf("web: user %q: no role", name)
		}
		if u.PasswordHash != "" {
			c, err := bcrypt.Cost([]byte(u.PasswordHash))
			if err != nil {
				return 0, fmt.Errorf("web: user %q: the password hash is not a bcrypt hash", name)
			}
			maxCost = max(maxCost, c)
		}
		w.users[name] = u
	}
	return maxCost, nil
}

// unmappedBits is p's prefix length once an IPv4-mapped IPv6 prefix is written as IPv4.
func unmappedBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return max(p.Bits()-96, 0)
	}
	return p.Bits()
}

// Authenticate returns the console user r comes from (Via web): the user a trusted proxy names
// in the proxy header, else the user of r's basic auth, verified against their bcrypt hash. It
// returns ErrNoCredentials when r carries neither, ErrBadCredentials when they are wrong (logged
// with the user name and remote address, never the password, and counted).
func (w *Web) Authenticate(r *http.Request) (Principal, error) {
	if w.header != "" && w.fromTrustedProxy(r.RemoteAddr) {
		if vals := r.Header.Values(w.header); len(vals) > 1 || len(vals) == 1 && strings.TrimSpace(vals[0]) != "" {
			return w.proxyUser(r, vals)
		}
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return Principal{}, ErrNoCredentials
	}
	return w.basicUser(r, user, pass)
}

// proxyUser is the principal a trusted proxy names: exactly one header value, a valid name.
func (w *Web) proxyUser(r *http.Request, vals []string) (Principal, error) {
	name := strings.TrimSpace(vals[0])
	if len(vals) != 1 || !ValidName(name) || Reserved(name) {
		return Principal{}, w.fail(r, "proxy", strings.Join(vals, ","), LoginInvalidUser)
	}
	role := w.defaultRole
	if u, ok := w.users[name]; ok {
		role = u.Role
	}
	return Principal{Name: name, Role: role, Via: ViaWeb}, nil
}

// basicUser verifies a basic-auth user and password: from the cache, else with bcrypt.
func (w *Web) basicUser(r *http.Request, user, pass string) (Principal, error) {
	u, known := w.users[user]
	if known && u.PasswordHash != "" && w.cache.has(user, pass) {
		return Principal{Name: user, Role: u.Role, Via: ViaWeb}, nil
	}
	select {
	case w.checking <- struct{}{}:
		defer func() { <-w.checking }()
	case <-r.Context().Done():
		return Principal{}, ErrBusy
	}
	if !known || u.PasswordHash == "" || len(pass) > maxPasswordBytes {
		if w.dummyHash != nil {
			_ = bcrypt.CompareHashAndPassword(w.dummyHash, []byte(pass)) // as long as a known user's
		}
		outcome := LoginUnknownUser
		if known && u.PasswordHash != "" {
			outcome = LoginWrongPassword
		}
		return Principal{}, w.fail(r, "basic", user, outcome)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(pass)); err != nil {
		return Principal{}, w.fail(r, "basic", user, LoginWrongPassword)
	}
	w.cache.add(user, pass)
	w.logins.WithLabelValues(LoginSuccess).Inc()
	return Principal{Name: user, Role: u.Role, Via: ViaWeb}, nil
}

// fail logs and counts a refused login and returns ErrBadCredentials.
func (w *Web) fail(r *http.Request, method, user, outcome string) error {
	w.logins.WithLabelValues(outcome).Inc()
	w.log.Warn("console login refused", "user", clip(user, 64), "remote_addr", r.RemoteAddr, "method", method, "reason", outcome)
	return ErrBadCredentials
}

// clip shortens s to at most n bytes (a user name typed by anyone).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// fromTrustedProxy reports whether the request's peer (r.RemoteAddr, "ip:port") is in the
// trusted proxies.
func (w *Web) fromTrustedProxy(remoteAddr string) bool {
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		ip = ap.Addr()
	} else if ip, err = netip.ParseAddr(remoteAddr); err != nil {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range w.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// IsApprover reports whether the console user name may approve and deny (approvals.approvers.web).
func (w *Web) IsApprover(name string) bool { return w.approvers[name] }

// MayDecide reports whether p may approve and deny from the console: a console user with the
// admin role who is in approvals.approvers.web.
func (w *Web) MayDecide(p Principal) bool {
	return p.Via == ViaWeb && p.Can(RoleAdmin) && w.approvers[p.Name]
}

// Approvers returns approvals.approvers.web, in the config's order.
func (w *Web) Approvers() []string { return append([]string(nil), w.approverLst...) }

// verified remembers verified (user, password) pairs as HMAC-SHA256 digests under a key drawn at
// start: a bounded set, the oldest forgotten first.
type verified struct {
	key   []byte
	mu    sync.Mutex
	set   map[[sha256.Size]byte]struct{}
	ring  [][sha256.Size]byte
	next  int
	limit int
}

func newVerified(limit int) (*verified, error) {
	if limit <= 0 {
		limit = defaultCacheSize
	}
	v := &verified{key: make([]byte, 32), set: make(map[[sha256.Size]byte]struct{}, limit), limit: limit}
	if _, err := rand.Read(v.key); err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	return v, nil
}

// mac is the digest of a (user, password) pair; the user's length prefix keeps ("ab", "c") and
// ("a", "bc") apart.
func (v *verified) mac(user, pass string) [sha256.Size]byte {
	h := hmac.New(sha256.New, v.key)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(user)))
	h.Write(n[:])
	h.Write([]byte(user))
	h.Write([]byte(pass))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

func (v *verified) has(user, pass string) bool {
	d := v.mac(user, pass)
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.set[d]
	return ok
}

func (v *verified) add(user, pass string) {
	d := v.mac(user, pass)
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.set[d]; ok {
		return
	}
	if len(v.ring) < v.limit {
		v.ring = append(v.ring, d)
	} else {
		delete(v.set, v.ring[v.next])
		v.ring[v.next] = d
		v.next = (v.next + 1) % v.limit
	}
	v.set[d] = struct{}{}
}

// len is the number of pairs remembered (tests).
func (v *verified) len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.set)
}
