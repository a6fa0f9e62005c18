package config

import (
	"crypto/x509"
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/common/model"
)

// Probe kinds, as written in the config and in the probe_kind label.
const (
	ProbeHTTP       = "http"
	ProbeTCP        = "tcp"
	ProbePostgres   = "postgres"
	ProbeRedis      = "redis"
	ProbeDisk       = "disk"
	ProbeTLS        = "tls"
	ProbePrometheus = "prometheus"
	ProbeBackup     = "backup"
)

// States an http probe's status_map maps a status code to.
const (
	StatusOK      = "ok"      // the run succeeds (body_regexp still applies)
	StatusFailing = "failing" // the run fails
)

// LabelHTTPStatus is the label an http probe with a status_map adds to the alert: the status code
// of the episode's first failure that got an answer.
const LabelHTTPStatus = "http_status"

// ProbeConfig is one health-check probe (the probes issue): a name, a schedule, labels and exactly
// one kind. The probe package owns its semantics; this file owns its YAML shape and validation.
// Validation fills the defaults (interval 30s, timeout 5s, failures_to_fire and
// successes_to_resolve 1, http method GET and expect_status [200]).
type ProbeConfig struct {
	// Name is the alert's name (its alertname label); unique among probes.
	Name     string            `yaml:"name"`
	Interval Duration          `yaml:"interval"` // default 30s
	Timeout  Duration          `yaml:"timeout"`  // default 5s; at most interval
	Labels   map[string]string `yaml:"labels"`
	// FiringWhen is an expr-lang condition over `value` (float64) that makes a measured value a
	// failure, e.g. "value < 0.10". Empty: only errors fail.
	FiringWhen string `yaml:"firing_when"`
	// FailuresToFire consecutive failures start firing (default 1); SuccessesToResolve
	// consecutive successes resolve (default 1).
	FailuresToFire     int `yaml:"failures_to_fire"`
	SuccessesToResolve int `yaml:"successes_to_resolve"`

	HTTP       *HTTPProbe       `yaml:"http,omitempty"`
	TCP        *TCPProbe        `yaml:"tcp,omitempty"`
	Postgres   *PostgresProbe   `yaml:"postgres,omitempty"`
	Redis      *RedisProbe      `yaml:"redis,omitempty"`
	Disk       *DiskProbe       `yaml:"disk,omitempty"`
	TLS        *TLSProbe        `yaml:"tls,omitempty"`
	Prometheus *PrometheusProbe `yaml:"prometheus,omitempty"`
	Backup     *BackupProbe     `yaml:"backup,omitempty"`
}

// Kind returns the probe's kind (ProbeHTTP, ...), or "" when none or several are set.
func (p ProbeConfig) Kind() string {
	kinds := p.kinds()
	if len(kinds) != 1 {
		return ""
	}
	return kinds[0]
}

func (p ProbeConfig) kinds() []string {
	var k []string
	for _, c := range []struct {
		set  bool
		kind string
	}{
		{p.HTTP != nil, ProbeHTTP}, {p.TCP != nil, ProbeTCP}, {p.Postgres != nil, ProbePostgres},
		{p.Redis != nil, ProbeRedis}, {p.Disk != nil, ProbeDisk}, {p.TLS != nil, ProbeTLS},
		{p.Prometheus != nil, ProbePrometheus}, {p.Backup != nil, ProbeBackup},
	} {
		if c.set {
			k = append(k, c.kind)
		}
	}
	return k
}

// HTTPProbe requests URL; it succeeds when the status is one of ExpectStatus (or one StatusMap
// maps to StatusOK) and the body matches BodyRegexp. Its value is the latency in seconds.
type HTTPProbe struct {
	URL          string `yaml:"url"`
	Method       string `yaml:"method"`        // default GET
	ExpectStatus []int  `yaml:"expect_status"` // default [200] (unless status_map is set)
	// StatusMap maps status codes to StatusOK or StatusFailing (Vault's /v1/sys/health: 200 and
	// 429 ok, 503 failing); a status it does not list fails. It replaces expect_status (setting
	// both is an error), and a failure that got an answer labels the alert http_status=<code>.
	StatusMap  map[int]string    `yaml:"status_map"`
	BodyRegexp string            `yaml:"body_regexp"` // Go regexp syntax; searched in the first 1MiB
	Headers    map[string]Secret `yaml:"headers"`     // values never print (they may hold credentials)
	TLS        ProbeTLSConfig    `yaml:"tls"`
}

// ProbeTLSConfig is how an http probe verifies the server.
type ProbeTLSConfig struct {
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	CAFile             string `yaml:"ca_file"` // PEM; relative to the config file
	ServerName         string `yaml:"server_name"`
	// CA is the content of CAFile, read at load. Not YAML.
	CA []byte `yaml:"-"`
}

// TCPProbe connects to Address (host:port); its value is the connect latency in seconds.
type TCPProbe struct {
	Address string `yaml:"address"`
}

// PostgresProbe connects with DSN and runs SELECT 1. It labels the alert role=primary|standby
// and its value is the replication lag in seconds on a standby, the latency on a primary.
type PostgresProbe struct {
	DSN     Secret `yaml:"dsn"`
	DSNFile string `yaml:"dsn_file"`
}

// RedisProbe sends AUTH (when a password is set) and PING to Address; its value is the latency.
// With LLEN it also sends SELECT DB (when DB is not 0) and LLEN: the value is then the length of
// that list (a queue's depth, such as Celery's "celery"); a missing key is 0.
type RedisProbe struct {
	Address      string `yaml:"address"`
	Password     Secret `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	LLEN         string `yaml:"llen"` // a list's key; empty: PING only
	DB           int    `yaml:"db"`   // the database LLEN reads (default 0)
}

// DiskProbe measures the free ratio (0..1, space available to unprivileged users) of the file
// system holding Path, on the host responder runs on.
type DiskProbe struct {
	Path string `yaml:"path"` // relative to the config file
}

// TLSProbe handshakes with Address; its value is the number of days until the leaf certificate
// expires (negative once expired). A certificate that does not verify is a failure.
type TLSProbe struct {
	Address    string `yaml:"address"`
	ServerName string `yaml:"server_name"` // default: the host of Address
	CAFile     string `yaml:"ca_file"`     // PEM; default: the system roots
	CA         []byte `yaml:"-"`           // the content of CAFile, read at load. Not YAML.
}

// PrometheusProbe runs the PromQL instant Query against the Prometheus at URL; its value is the
// scalar result or the first sample of a vector. No data is a failure.
type PrometheusProbe struct {
	URL   string `yaml:"url"`
	Query string `yaml:"query"`
}

var probeName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:-]*$`)

// reservedProbeLabels are set by the probe itself.
var reservedProbeLabels = []string{"alertname", "probe_kind"}

// CompileFiringWhen checks a firing_when expression: it must be a boolean over `value`.
func CompileFiringWhen(src string) error {
	_, err := expr.Compile(src, expr.Env(map[string]any{"value": float64(0)}), expr.AsBool())
	return err
}

// validateProbes checks the probes section (fillDefaults filled it).
func (c *Config) validateProbes(ch *checker) {
	seen := map[string]int{}
	for i := range c.Probes {
		c.validateProbe(ch, i, &c.Probes[i], seen)
	}
}

// validateProbe checks probes[i]; seen maps the names of the probes before it to their index.
func (c *Config) validateProbe(ch *checker, i int, p *ProbeConfig, seen map[string]int) {
	key := fmt.Sprintf("probes[%d]", i)
	switch {
	case p.Name == "":
		ch.errorf(key+".name", "a probe needs a name")
	case !probeName.MatchString(p.Name):
		ch.errorf(key+".name", "%q: want letters, digits, '_', '.', ':' or '-'", p.Name)
	default:
		if j, dup := seen[p.Name]; dup {
			ch.errorf(key+".name", "probe %q is already defined by probes[%d]", p.Name, j)
		}
		seen[p.Name] = i
	}
	if p.Interval.D() < 100*time.Millisecond {
		ch.errorf(key+".interval", "must be at least 100ms, got %s", p.Interval)
	}
	if p.Timeout > p.Interval {
		ch.errorf(key+".timeout", "%s is longer than interval %s", p.Timeout, p.Interval)
	}
	if p.FailuresToFire < 1 {
		ch.errorf(key+".failures_to_fire", "must be at least 1, got %d", p.FailuresToFire)
	}
	if p.SuccessesToResolve < 1 {
		ch.errorf(key+".successes_to_resolve", "must be at least 1, got %d", p.SuccessesToResolve)
	}
	for k, v := range p.Labels {
		c.validateProbeLabel(ch, key, p, k, v)
	}
	if p.FiringWhen != "" {
		if err := CompileFiringWhen(p.FiringWhen); err != nil {
			ch.wrapf(key+".firing_when", err, "%s", oneLine(err))
		}
	}
	switch kinds := p.kinds(); len(kinds) {
	case 0:
		ch.errorf(key, "probe %q needs one kind: http, tcp, postgres, redis, disk, tls, prometheus or backup", p.Name)
	case 1:
		c.validateProbeKind(ch, key+"."+kinds[0], p)
	default:
		ch.errorf(key+"."+kinds[1], "probe %q has several kinds (%s); want exactly one", p.Name, strings.Join(kinds, ", "))
	}
}

// validateProbeLabel checks the label k=v of the probe at key: a valid name and value, within
// limits:, and not one the probe sets itself.
func (c *Config) validateProbeLabel(ch *checker, key string, p *ProbeConfig, k, v string) {
	switch {
	case !model.UTF8Validation.IsValidLabelName(k) || strings.ContainsRune(k, 0):
		ch.errorf(key+".labels", "%q is not a valid label name", k)
	case !model.LabelValue(v).IsValid() || strings.ContainsRune(v, 0):
		ch.errorf(key+".labels."+k, "not a valid label value")
	default:
		c.checkProbeLabelSize(ch, key, k, v)
	}
	if slices.Contains(reservedProbeLabels, k) {
		ch.errorf(key+".labels."+k, "label %q is set by the probe", k)
	}
	if k == "role" && p.Postgres != nil {
		ch.errorf(key+".labels.role", "label \"role\" is set by a postgres probe")
	}
	if k == LabelHTTPStatus && p.HTTP != nil && len(p.HTTP.StatusMap) > 0 {
		ch.errorf(key+".labels."+k, "label %q is set by an http probe with a status_map", k)
	}
}

// validateProbeKind checks the settings of the probe's one kind; key names them
// ("probes[0].http"). A disk probe's path is resolved against the config file's directory.
func (c *Config) validateProbeKind(ch *checker, key string, p *ProbeConfig) {
	switch {
	case p.HTTP != nil:
		validateHTTPProbe(ch, key, p.HTTP)
	case p.TCP != nil:
		checkAddress(ch, key+".address", p.TCP.Address)
	case p.Postgres != nil:
		if p.Postgres.DSN == "" {
			ch.errorf(key+".dsn", "set postgres.dsn or postgres.dsn_file")
		} else if _, err := pgconn.ParseConfig(p.Postgres.DSN.Value()); err != nil {
			// pgconn may echo the connection string, password included: never show it.
			ch.errorf(key+".dsn", "invalid connection string")
		}
	case p.Redis != nil:
		checkAddress(ch, key+".address", p.Redis.Address)
		if p.Redis.DB < 0 {
			ch.errorf(key+".db", "must not be negative, got %d", p.Redis.DB)
		}
	case p.Disk != nil:
		if p.Disk.Path == "" {
			ch.errorf(key+".path", "a disk probe needs a path")
		} else {
			p.Disk.Path = absPath(c.Dir, p.Disk.Path)
		}
	case p.TLS != nil:
		checkAddress(ch, key+".address", p.TLS.Address)
		if p.TLS.CAFile != "" {
			checkCA(ch, key+".ca_file", p.TLS.CA)
		}
	case p.Prometheus != nil:
		checkProbeURL(ch, key+".url", p.Prometheus.URL)
		if strings.TrimSpace(p.Prometheus.Query) == "" {
			ch.errorf(key+".query", "a prometheus probe needs a query")
		}
	case p.Backup != nil:
		c.validateBackupProbe(ch, key, p.Backup)
	}
}

func validateHTTPProbe(ch *checker, key string, h *HTTPProbe) {
	checkProbeURL(ch, key+".url", h.URL)
	if !validMethod(h.Method) {
		ch.errorf(key+".method", "%q is not an HTTP method", h.Method)
	}
	for j, s := range h.ExpectStatus {
		if s < 100 || s > 599 {
			ch.errorf(fmt.Sprintf("%s.expect_status[%d]", key, j), "%d is not an HTTP status", s)
		}
	}
	validateStatusMap(ch, key, h)
	if h.BodyRegexp != "" {
		if _, err := regexp.Compile(h.BodyRegexp); err != nil {
			ch.wrapf(key+".body_regexp", err, "%v", err)
		}
	}
	checkHeaders(ch, key+".headers", h.Headers)
	if h.TLS.CAFile != "" {
		checkCA(ch, key+".tls.ca_file", h.TLS.CA)
	}
}

// validateStatusMap checks an http probe's status_map: HTTP statuses mapped to ok or failing, at
// least one ok, and no expect_status beside it.
func validateStatusMap(ch *checker, key string, h *HTTPProbe) {
	if len(h.StatusMap) == 0 {
		return
	}
	if len(h.ExpectStatus) > 0 {
		ch.errorf(key+".expect_status", "set expect_status or status_map, not both")
	}
	anyOK := false
	for _, code := range slices.Sorted(maps.Keys(h.StatusMap)) {
		k := fmt.Sprintf("%s.status_map.%d", key, code)
		if code < 100 || code > 599 {
			ch.errorf(k, "%d is not an HTTP status", code)
		}
		switch st := h.StatusMap[code]; st {
		case StatusOK:
			anyOK = true
		case StatusFailing:
		default:
			ch.errorf(k, "%q is not a state: want %s or %s", st, StatusOK, StatusFailing)
		}
	}
	if !anyOK {
		ch.errorf(key+".status_map", "no status maps to %s: the probe could never succeed", StatusOK)
	}
}

// checkHeaders checks request headers (an http probe's, a backup url's): names are HTTP tokens,
// values hold no line break or NUL.
func checkHeaders(ch *checker, key string, headers map[string]Secret) {
	for name, v := range headers {
		if !validMethod(name) { // a header name is an HTTP token, like a method
			ch.errorf(key, "%q is not a header name", name)
		}
		if strings.ContainsAny(v.Value(), "\r\n\x00") {
			ch.errorf(key+"."+name, "header value contains a line break or NUL")
		}
	}
}

// validMethod reports whether s is an RFC 9110 token.
func validMethod(s string) bool {
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

func checkProbeURL(ch *checker, key, s string) {
	u, err := url.Parse(s)
	switch {
	case s == "":
		ch.errorf(key, "a URL is required")
	case err != nil:
		ch.errorf(key, "invalid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		ch.errorf(key, "want an http or https URL, got scheme %q", u.Scheme)
	case u.Host == "":
		ch.errorf(key, "the URL has no host")
	}
}

func checkAddress(ch *checker, key, addr string) {
	if addr == "" {
		ch.errorf(key, "an address (host:port) is required")
		return
	}
	h, port, err := net.SplitHostPort(addr)
	if err != nil || h == "" || port == "" {
		ch.errorf(key, "%q: want host:port", addr)
	}
}

func checkCA(ch *checker, key string, pem []byte) {
	if pem == nil {
		return // not read (a config built in code): the probe reads the file
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		ch.errorf(key, "holds no PEM certificate")
	}
}

// oneLine flattens expr's multi-line error (source excerpt and caret) into its first line.
func oneLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// resolveProbeSecrets reads the probes' *_file secrets and CA files.
func resolveProbeSecrets(cfg *Config, c *checker, o options) {
	for i := range cfg.Probes {
		p := &cfg.Probes[i]
		key := fmt.Sprintf("probes[%d]", i)
		if p.Postgres != nil {
			readOne(cfg, c, o, key+".postgres.dsn", &p.Postgres.DSN, p.Postgres.DSNFile)
		}
		if p.Redis != nil {
			readOne(cfg, c, o, key+".redis.password", &p.Redis.Password, p.Redis.PasswordFile)
		}
		if p.HTTP != nil && p.HTTP.TLS.CAFile != "" {
			p.HTTP.TLS.CAFile = absPath(cfg.Dir, p.HTTP.TLS.CAFile)
			if b, ok := readFile(cfg, c, o, key+".http.tls.ca_file", p.HTTP.TLS.CAFile); ok {
				p.HTTP.TLS.CA = b
			}
		}
		if p.TLS != nil && p.TLS.CAFile != "" {
			p.TLS.CAFile = absPath(cfg.Dir, p.TLS.CAFile)
			if b, ok := readFile(cfg, c, o, key+".tls.ca_file", p.TLS.CAFile); ok {
				p.TLS.CA = b
			}
		}
		if p.Backup != nil {
			resolveBackupSecrets(cfg, c, o, key+".backup", p.Backup)
		}
	}
}
