package config

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// PostgresHandlerConfig configures the postgres.* failover handlers: clusters by name, each
// Patroni-managed (patroni: its members' REST API URLs) or plain streaming replication (primary
// and standbys by DSN).
type PostgresHandlerConfig struct {
	Clusters map[string]PostgresCluster `yaml:"clusters"`
}

// PostgresCluster is one cluster. Exactly one of Patroni and Primary is set: postgres.switchover
// and postgres.failover act on Patroni clusters, postgres.promote on streaming ones. Validation
// fills the defaults (max_lag 1MB, detect 3 failures over 30s, rto 30m, fence timeout 10s).
type PostgresCluster struct {
	// Patroni lists the members' REST API base URLs (http://10.0.0.11:8008).
	Patroni []string `yaml:"patroni,omitempty"`
	// PatroniUsername and PatroniPassword are restapi.authentication, sent on POST requests.
	PatroniUsername     string `yaml:"patroni_username,omitempty"`
	PatroniPassword     Secret `yaml:"patroni_password,omitempty"`
	PatroniPasswordFile string `yaml:"patroni_password_file,omitempty"`
	// MaxLag bounds a switchover candidate's received lag behind the leader (default 1MB).
	MaxLag Bytes `yaml:"max_lag,omitempty"`

	// Primary and Standbys are a plain streaming-replication cluster.
	Primary  *PostgresNode  `yaml:"primary,omitempty"`
	Standbys []PostgresNode `yaml:"standbys,omitempty"`
	// Detect is how postgres.promote confirms the primary is down from responder's side.
	Detect PostgresDetect `yaml:"detect"`
	// Fence is how postgres.promote fences the old primary (default: SQL, when reachable).
	Fence PostgresFence `yaml:"fence"`

	// RTO is the recovery time objective the measured time to recover is reported against
	// (default 30m).
	RTO Duration `yaml:"rto,omitempty"`
}

// IsPatroni reports whether the cluster is Patroni-managed.
func (c PostgresCluster) IsPatroni() bool { return len(c.Patroni) > 0 }

// PostgresNode is one server of a streaming cluster: a name (standbys) and a connection string,
// inline or from a file. The DSN is a secret: it may hold a password.
type PostgresNode struct {
	Name    string `yaml:"name,omitempty"`
	DSN     Secret `yaml:"dsn,omitempty"`
	DSNFile string `yaml:"dsn_file,omitempty"`
}

// PostgresDetect says when the primary is down: when Failures consecutive connection attempts, spread over
// at least MinPeriod, all fail.
type PostgresDetect struct {
	Failures  int      `yaml:"failures"`
	MinPeriod Duration `yaml:"min_period"`
}

// PostgresFence is an HTTP fence (a STONITH or pooler API) called before a promotion instead of
// the SQL fence; empty URL means the SQL fence (ALTER SYSTEM SET default_transaction_read_only,
// pg_reload_conf, terminate sessions) when the old primary is reachable.
type PostgresFence struct {
	URL     string            `yaml:"url,omitempty"`
	Method  string            `yaml:"method,omitempty"` // default POST
	Headers map[string]Secret `yaml:"headers,omitempty"`
	Body    string            `yaml:"body,omitempty"`
	Timeout Duration          `yaml:"timeout,omitempty"` // default 10s
}

var postgresClusterName = regexp.MustCompile(`^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$`)

// validatePostgres checks handlers.postgres (fillDefaults filled it). It runs after the secrets
// are read, so DSNs are checked whether inline or from a file (never printed).
func (c *Config) validatePostgres(ch *checker) {
	for _, name := range sortedKeys(c.Handlers.Postgres.Clusters) {
		cl := c.Handlers.Postgres.Clusters[name]
		key := "handlers.postgres.clusters." + name
		if !postgresClusterName.MatchString(name) {
			ch.errorf(key, "cluster name %q: want lower-case letters, digits, '_', '.' or '-' (at most 63)", name)
		}
		switch {
		case cl.IsPatroni() && cl.Primary != nil:
			ch.errorf(key+".primary", "cluster %q sets both patroni and primary: a cluster is Patroni-managed or plain streaming replication", name)
		case cl.IsPatroni():
			validatePatroni(ch, key, &cl)
		case cl.Primary != nil:
			validateStreaming(ch, key, &cl)
		default:
			ch.errorf(key, "cluster %q needs patroni (member URLs) or primary and standbys (DSNs)", name)
		}
		c.Handlers.Postgres.Clusters[name] = cl
	}
}

func validatePatroni(ch *checker, key string, cl *PostgresCluster) {
	seen := map[string]bool{}
	for i, raw := range cl.Patroni {
		k := fmt.Sprintf("%s.patroni[%d]", key, i)
		u, err := url.Parse(raw)
		switch {
		case err != nil || u.Host == "":
			ch.errorf(k, "%q is not a URL like http://10.0.0.11:8008", raw)
		case u.Scheme != "http" && u.Scheme != "https":
			ch.errorf(k, "want an http or https URL, got scheme %q", u.Scheme)
		case u.User != nil:
			ch.errorf(k, "credentials in the URL; use patroni_username and patroni_password_file")
		case seen[strings.TrimRight(raw, "/")]:
			ch.errorf(k, "%q is listed twice", raw)
		}
		seen[strings.TrimRight(raw, "/")] = true
	}
	if len(cl.Standbys) > 0 {
		ch.errorf(key+".standbys", "standbys are for plain streaming replication; Patroni knows its members")
	}
	if cl.Detect != (PostgresDetect{}) {
		ch.errorf(key+".detect", "detect applies to postgres.promote on plain streaming clusters; Patroni detects failures itself")
	}
	if cl.Fence.URL != "" {
		ch.errorf(key+".fence", "fence applies to plain streaming clusters; Patroni fences its members itself")
	}
	if cl.PatroniPassword != "" && cl.PatroniUsername == "" {
		ch.errorf(key+".patroni_username", "patroni_password is set without patroni_username")
	}
}

// validateStreaming checks a plain streaming-replication cluster: no Patroni settings, a
// primary, named standbys, detect and the fence.
func validateStreaming(ch *checker, key string, cl *PostgresCluster) {
	if cl.MaxLag != 0 {
		ch.errorf(key+".max_lag", "max_lag applies to Patroni clusters (postgres.promote waits for the standby to replay all it received)")
	}
	if cl.PatroniUsername != "" || cl.PatroniPassword != "" || cl.PatroniPasswordFile != "" {
		ch.errorf(key+".patroni_username", "patroni_username and patroni_password apply to Patroni clusters")
	}
	checkDSN(ch, key+".primary", *cl.Primary)
	validateStandbys(ch, key, cl)
	if cl.Detect.Failures < 1 {
		ch.errorf(key+".detect.failures", "must be at least 1, got %d", cl.Detect.Failures)
	}
	if cl.Detect.Failures == 1 && cl.Detect.MinPeriod > 0 {
		ch.errorf(key+".detect.failures", "1 failure cannot span min_period %s; want at least 2", cl.Detect.MinPeriod)
	}
	validateFence(ch, key+".fence", &cl.Fence)
}

// validateStandbys checks a streaming cluster's standbys: at least one, each named (uniquely,
// and not as the primary) with a valid DSN.
func validateStandbys(ch *checker, key string, cl *PostgresCluster) {
	if len(cl.Standbys) == 0 {
		ch.errorf(key+".standbys", "a streaming cluster needs at least one standby to promote")
	}
	seen := map[string]int{}
	for i, s := range cl.Standbys {
		k := fmt.Sprintf("%s.standbys[%d]", key, i)
		switch {
		case s.Name == "":
			ch.errorf(k+".name", "a standby needs a name (the candidate param names it)")
		case !postgresClusterName.MatchString(s.Name):
			ch.errorf(k+".name", "%q: want lower-case letters, digits, '_', '.' or '-'", s.Name)
		case s.Name == cl.Primary.Name:
			ch.errorf(k+".name", "%q is also the primary's name", s.Name)
		default:
			if j, dup := seen[s.Name]; dup {
				ch.errorf(k+".name", "standby %q is already defined by standbys[%d]", s.Name, j)
			}
			seen[s.Name] = i
		}
		checkDSN(ch, k, s)
	}
}

// validateFence checks a streaming cluster's HTTP fence (key is its "...fence") and upper-cases
// its method: no settings without a url; an http(s) url, a known method, clean headers.
func validateFence(ch *checker, key string, f *PostgresFence) {
	if f.URL == "" {
		if f.Method != "" || len(f.Headers) > 0 || f.Body != "" || f.Timeout != 0 {
			ch.errorf(key+".url", "fence settings without a url")
		}
		return
	}
	u, err := url.Parse(f.URL)
	switch {
	case err != nil || u.Host == "":
		ch.errorf(key+".url", "not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		ch.errorf(key+".url", "want an http or https URL, got scheme %q", u.Scheme)
	}
	f.Method = strings.ToUpper(f.Method)
	if !slices.Contains([]string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodGet}, f.Method) {
		ch.errorf(key+".method", "%q: want POST, PUT, PATCH, DELETE or GET", f.Method)
	}
	for h, v := range f.Headers {
		if strings.ContainsAny(h, " \t\r\n:") || h == "" {
			ch.errorf(key+".headers", "%q is not a header name", h)
		}
		if strings.ContainsAny(v.Value(), "\r\n\x00") {
			ch.errorf(key+".headers."+h, "header value contains a line break or NUL")
		}
	}
}

// checkDSN checks a node's connection string without ever printing it.
func checkDSN(ch *checker, key string, n PostgresNode) {
	switch {
	case n.DSN == "" && n.DSNFile == "":
		ch.errorf(key+".dsn", "set dsn or dsn_file")
	case n.DSN == "":
		// dsn_file could not be read: resolvePostgresSecrets reported it.
	default:
		if _, err := pgconn.ParseConfig(n.DSN.Value()); err != nil {
			ch.errorf(key+".dsn", "invalid connection string")
		}
	}
}

// resolvePostgresSecrets reads the handlers.postgres *_file secrets (DSNs and the Patroni
// password). Contents never appear in errors.
func resolvePostgresSecrets(cfg *Config, c *checker, o options) {
	for _, name := range sortedKeys(cfg.Handlers.Postgres.Clusters) {
		cl := cfg.Handlers.Postgres.Clusters[name]
		key := "handlers.postgres.clusters." + name
		readOne(cfg, c, o, key+".patroni_password", &cl.PatroniPassword, cl.PatroniPasswordFile)
		if cl.Primary != nil {
			p := *cl.Primary
			readOne(cfg, c, o, key+".primary.dsn", &p.DSN, p.DSNFile)
			cl.Primary = &p
		}
		standbys := slices.Clone(cl.Standbys)
		for i := range standbys {
			readOne(cfg, c, o, fmt.Sprintf("%s.standbys[%d].dsn", key, i), &standbys[i].DSN, standbys[i].DSNFile)
		}
		cl.Standbys = standbys
		cfg.Handlers.Postgres.Clusters[name] = cl
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
