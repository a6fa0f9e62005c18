package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// Config is the responder configuration file (DESIGN.md §4). Field names and YAML keys are a
// contract with users: extend, never rename.
type Config struct {
	NATS      NATSConfig      `yaml:"nats"`
	Database  DatabaseConfig  `yaml:"database"`
	Webhook   WebhookConfig   `yaml:"webhook"`
	API       APIConfig       `yaml:"api"`
	RuleFiles []string        `yaml:"rule_files"`
	Probes    []ProbeConfig   `yaml:"probes,omitempty"`
	Handlers  HandlersConfig  `yaml:"handlers"`
	Slack     SlackConfig     `yaml:"slack,omitempty"`
	Web       WebConfig       `yaml:"web"`
	Approvals ApprovalsConfig `yaml:"approvals"`
	Safety    SafetyConfig    `yaml:"safety"`
	Bus       BusConfig       `yaml:"bus"`
	Limits    LimitsConfig    `yaml:"limits"`
	Drills    DrillsConfig    `yaml:"drills,omitempty"`

	// Secrets are the named secrets rule templates reference with secret("NAME") and
	// handlers.postgres fence headers with {{ secret("NAME") }}: each a file, read when a handler
	// calls out (see config/secrets.go).
	Secrets map[string]SecretFile `yaml:"secrets,omitempty"`

	// Dir is the directory of the config file; relative paths resolve against it. Not YAML.
	Dir string `yaml:"-"`
	// File is the path the config was loaded from ("" for embedded defaults). Not YAML.
	File string `yaml:"-"`
}

// NATSConfig selects the bus. An empty URL runs an embedded JetStream server under
// --storage.path/jetstream.
type NATSConfig struct {
	URL string `yaml:"url"`
	// Credentials for an external server (nats.url), at most one kind: user with password_file,
	// token_file, creds_file (a JWT and its NKey seed, as nsc writes them) or nkey_seed_file.
	// Paths are relative to the config file. The embedded server has its own token, generated at
	// each start. Password and Token are read from their files; never logged.
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"`
	Password     Secret `yaml:"-"`
	TokenFile    string `yaml:"token_file"`
	Token        Secret `yaml:"-"`
	CredsFile    string `yaml:"creds_file"`
	NkeySeedFile string `yaml:"nkey_seed_file"`
	// TLS to an external server: the CA that signed its certificate, a client certificate when
	// the server asks for one, and the name its certificate must hold.
	TLS NATSTLSConfig `yaml:"tls"`
}

// NATSTLSConfig is nats.tls. Paths are relative to the config file.
type NATSTLSConfig struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// Enabled reports whether any nats.tls key is set.
func (t NATSTLSConfig) Enabled() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// DatabaseConfig is the PostgreSQL connection. RESPONDER_DATABASE_URL overrides URL.
type DatabaseConfig struct {
	URL     Secret `yaml:"url"`
	URLFile string `yaml:"url_file"`
	// MaxConns bounds the pool (default 10).
	MaxConns int32 `yaml:"max_conns"`
}

// WebhookConfig is the Alertmanager webhook receiver.
type WebhookConfig struct {
	// BearerToken accepts one token or a list of two for rotation.
	BearerToken     Secrets `yaml:"bearer_token"`
	BearerTokenFile string  `yaml:"bearer_token_file"`
	MaxBodyBytes    Bytes   `yaml:"max_body_bytes"` // default 8MiB
}

// APIConfig holds the admin token (read and act), the optional read-only token, and the named
// tokens (see web.go).
type APIConfig struct {
	Token         Secret `yaml:"token"`
	TokenFile     string `yaml:"token_file"`
	ReadToken     Secret `yaml:"read_token"`
	ReadTokenFile string `yaml:"read_token_file"`
	// Tokens are named tokens: what one does is recorded under its name.
	Tokens []APITokenConfig `yaml:"tokens,omitempty"`
}

// HandlersConfig configures the built-in handlers.
type HandlersConfig struct {
	HTTP       HTTPHandlerConfig       `yaml:"http"`
	Kubernetes KubernetesHandlerConfig `yaml:"kubernetes,omitempty"`
	Postgres   PostgresHandlerConfig   `yaml:"postgres,omitempty"`
	Page       PageConfig              `yaml:"page"`
}

// HTTPHandlerConfig configures http.request.
type HTTPHandlerConfig struct {
	// AllowedHosts lists the hosts (host or host:port) http.request may call.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// Timeout bounds one request (default 10s).
	Timeout Duration `yaml:"timeout"`
	// Retries is how many times a 5xx or timeout is retried (default 2).
	Retries *int `yaml:"retries"`
	// SecretPathHosts are hosts whose URL paths embed a secret (incoming webhooks), in addition
	// to the built-in Slack, Teams and Discord ones: targets, errors and logs show no path for
	// them. "*.example.com" matches the subdomains.
	SecretPathHosts []string `yaml:"secret_path_hosts,omitempty"`
}

// PageConfig configures the page.* handlers.
type PageConfig struct {
	Webhook PageWebhookConfig `yaml:"webhook"`
	Teams   PageTeamsConfig   `yaml:"teams"` // config/page.go
	Email   PageEmailConfig   `yaml:"email"` // config/page.go
}

// PageWebhookConfig is page.webhook's endpoint: a PagerDuty Events API v2 URL (or a compatible
// receiver) and its routing key. Both are secrets; each has a *_file variant.
type PageWebhookConfig struct {
	URL            Secret   `yaml:"url"`
	URLFile        string   `yaml:"url_file"`
	RoutingKey     Secret   `yaml:"routing_key"`
	RoutingKeyFile string   `yaml:"routing_key_file"`
	Timeout        Duration `yaml:"timeout"` // per attempt, default 10s
}

// ApprovalsConfig configures human approvals.
type ApprovalsConfig struct {
	TTL Duration `yaml:"ttl"` // default 15m
	// Approvers are who may decide through the console (Slack's are slack.approvers).
	Approvers ApproversConfig `yaml:"approvers"`
}

// ApproversConfig names the console users who may approve and deny from the console.
type ApproversConfig struct {
	Web []string `yaml:"web,omitempty"`
}

// SafetyConfig bounds what responder may do.
type SafetyConfig struct {
	Paused               bool     `yaml:"paused"`
	DryRun               bool     `yaml:"dry_run"`
	MaxAlertAge          Duration `yaml:"max_alert_age"`          // default 15m
	Retention            Duration `yaml:"retention"`              // default 90d
	MaxConcurrentActions int      `yaml:"max_concurrent_actions"` // default 8
	ActionTimeout        Duration `yaml:"action_timeout"`         // default 5m: bound on one handler call when the handler has none
	// LeaseDuration is how long a running action stays owned without renewal (default 30s); after
	// it another replica records the action unknown.
	LeaseDuration Duration         `yaml:"lease_duration"`
	Budgets       []BudgetConfig   `yaml:"budgets,omitempty"`
	Breaker       BreakerConfig    `yaml:"breaker"`
	StormGuard    StormGuardConfig `yaml:"storm_guard"`
}

// StormGuardConfig refuses a rule's disruptive actions when, within Window, they would touch more
// than MaxTargets distinct targets (0 disables). MaxWorkloadFraction (0 disables) bounds the
// share of one workload's members (handlers.WorkloadMember: a Deployment's pods) a rule touches
// within Window; at least one member is always allowed.
type StormGuardConfig struct {
	Window              Duration `yaml:"window"`      // default 5m
	MaxTargets          int      `yaml:"max_targets"` // default 0: off
	MaxWorkloadFraction float64  `yaml:"max_workload_fraction"`
}

// BreakerConfig tunes the circuit breakers, one per (handler, scope): Failures consecutive
// failures of disruptive actions open it for OpenFor; then one trial runs, cluster-wide.
type BreakerConfig struct {
	Failures int      `yaml:"failures"` // default 3
	OpenFor  Duration `yaml:"open_for"` // default 5m
}

// BudgetConfig is one budget shared by all rules: at most Max disruptive actions whose handler
// matches Match (a glob: "k8s.*") per Per (namespace|cluster|global: the action's scope, or one
// count for everything) in any Window.
type BudgetConfig struct {
	Name   string   `yaml:"name"`
	Match  string   `yaml:"match"`
	Per    string   `yaml:"per"`
	Max    int      `yaml:"max"`
	Window Duration `yaml:"window"`
}

// BusConfig tunes the JetStream stream (defaults suit most installs).
type BusConfig struct {
	Stream          string   `yaml:"stream"`           // default RESPONDER_ALERTS
	MaxBytes        Bytes    `yaml:"max_bytes"`        // default 1GiB
	MaxMsgs         int64    `yaml:"max_msgs"`         // default 1,000,000
	MaxAge          Duration `yaml:"max_age"`          // default 0: no age limit
	DuplicateWindow Duration `yaml:"duplicate_window"` // default 20m, at least 10m
	Replicas        int      `yaml:"replicas"`         // default 3 with nats.url, else 1 (0 means the default)
	// Consumers is how many batches this replica processes at once (default 2).
	Consumers int `yaml:"consumers"`
	// AckWait is how long a fetched message stays with one replica before JetStream hands it to
	// another (default 10s): after a crash, its alerts wait at most this long.
	AckWait Duration `yaml:"ack_wait"`
	// SigningKeyFile holds the key of the HMAC every bus message carries (the same file for
	// every replica). Required with nats.url; the embedded server's key is generated at each start.
	SigningKeyFile string `yaml:"signing_key_file"`
	// SigningKey is read from SigningKeyFile; never logged.
	SigningKey Secret `yaml:"-"`
}

// Duration is a time.Duration written in YAML as a Prometheus duration ("90s", "15m", "90d",
// "2w", "1h30m") or a Go one ("1.5h", "250ms"). Negative durations are rejected.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d the Prometheus way ("15m", "12w6d"), or the Go way below a millisecond.
func (d Duration) String() string {
	if time.Duration(d)%time.Millisecond != 0 {
		return time.Duration(d).String()
	}
	return model.Duration(d).String()
}

// ParseDuration parses a Prometheus or Go duration; it rejects empty and negative ones.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	if d, err := model.ParseDuration(s); err == nil {
		return Duration(d), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 90s, 15m, 1h30m, 90d)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return Duration(d), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeErr(n, "want a duration such as 90s, 15m or 90d")
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return typeErr(n, "%v", err)
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalText implements encoding.TextMarshaler (JSON shows "15m", not nanoseconds).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Bytes is a size written in YAML as an integer number of bytes (8388608) or an integer with a
// unit: B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), as in "8MiB", "512KB".
type Bytes int64

var byteUnits = []struct {
	name string
	mult int64
}{
	// Binary first so String prefers them.
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
}

// ParseBytes parses "8MiB", "512KB", "1GiB", "100B" or a bare integer; it rejects negative sizes.
func ParseBytes(s string) (Bytes, error) {
	s = strings.TrimSpace(s)
	num, mult := s, int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.name) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(s, u.name)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || num == "" || num[0] == '+' {
		return 0, fmt.Errorf("invalid size %q (want e.g. 8MiB, 512KB, 1GiB or a number of bytes)", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Bytes(n * mult), nil
}

// String formats b with the largest unit that divides it exactly ("8MiB", "512KB", "100B").
func (b Bytes) String() string {
	if b == 0 {
		return "0B"
	}
	for _, u := range byteUnits {
		if int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *Bytes) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeErr(n, "want a size such as 8MiB, 512KB or 1GiB")
	}
	v, err := ParseBytes(n.Value)
	if err != nil {
		return typeErr(n, "%v", err)
	}
	*b = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (b Bytes) MarshalYAML() (any, error) { return b.String(), nil }

// MarshalText implements encoding.TextMarshaler.
func (b Bytes) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *Bytes) UnmarshalText(t []byte) error {
	v, err := ParseBytes(string(t))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Redacted is what a non-empty Secret prints as.
const Redacted = "<secret>"

// Secret is a string that never prints: fmt (every verb), String, GoString, YAML, JSON, text
// and slog all show "<secret>" ("" when the secret is empty, so an unset secret is visible as
// such). Value returns the secret itself.
type Secret string

// Value returns the secret.
func (s Secret) Value() string { return string(s) }

func (s Secret) redacted() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// String implements fmt.Stringer.
func (s Secret) String() string { return s.redacted() }

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return s.redacted() }

// Format implements fmt.Formatter, so no verb (%x, %d, %q...) can print the secret.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprint(f, strconv.Quote(s.redacted()))
		return
	}
	fmt.Fprint(f, s.redacted())
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.redacted()) }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return s.redacted(), nil }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.redacted()) }

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.redacted()), nil }

// UnmarshalYAML takes the scalar as written (a number stays its digits) and never echoes it in
// an error.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeErr(n, "want a string")
	}
	*s = Secret(n.Value)
	return nil
}

// Secrets is one or more secrets; in YAML a single string or a list of strings. An empty string
// means none.
type Secrets []Secret

// Values returns the secrets.
func (ss Secrets) Values() []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.Value())
	}
	return out
}

// LogValue implements slog.LogValuer.
func (ss Secrets) LogValue() slog.Value {
	r := make([]string, len(ss))
	for i, s := range ss {
		r[i] = s.redacted()
	}
	return slog.AnyValue(r)
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (ss *Secrets) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value == "" {
			*ss = nil
		} else {
			*ss = Secrets{Secret(n.Value)}
		}
		return nil
	case yaml.SequenceNode:
		out := make(Secrets, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind == yaml.AliasNode && c.Alias != nil {
				c = c.Alias
			}
			if c.Kind != yaml.ScalarNode {
				return typeErr(c, "want a string")
			}
			if c.Value == "" {
				return typeErr(c, "empty string in a list of secrets")
			}
			out = append(out, Secret(c.Value))
		}
		*ss = out
		return nil
	}
	return typeErr(n, "want a string or a list of strings")
}

// typeErr returns the error type yaml.v3 collects with the others, in its "line N: msg" form.
func typeErr(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: ", n.Line) + fmt.Sprintf(format, args...)}}
}
