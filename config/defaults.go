package config

import (
	"net/http"
	"strings"
	"time"
)

// Every default of the configuration file lives in this file, applied in two steps:
//
//   - Default (and DefaultLimits) is the configuration before the file is decoded: a key the file
//     leaves out keeps its value from here.
//   - fillDefaults runs after decoding, at the start of validation (Parse and Validate): it fills
//     what decoding cannot, the keys of list items and map entries (a probe's interval, a postgres
//     cluster's rto) and keys written as null. A zero written by hand in those items means "the
//     default" too; everywhere else an invalid value is an error, never silently defaulted.
//
// Other packages (bus, source/probe, notify/slack) take their fallbacks for a zero value from the
// exported constants below, so a library user and `responder serve` get the same value.

// Defaults of the bus section. The bus package's own defaults (bus.Options) are these.
const (
	// DefaultBusStream is the JetStream stream name.
	DefaultBusStream = "RESPONDER_ALERTS"
	// DefaultBusMaxBytes bounds the stream's size.
	DefaultBusMaxBytes Bytes = 1 << 30
	// DefaultBusMaxMsgs bounds the stream's message count.
	DefaultBusMaxMsgs = 1_000_000
	// DefaultBusDuplicateWindow is how long JetStream remembers a message id.
	DefaultBusDuplicateWindow = 20 * time.Minute
	// MinDuplicateWindow is the shortest bus.duplicate_window: Alertmanager re-sends a group within
	// minutes, and every re-send inside the window is dropped by JetStream before it costs anything.
	MinDuplicateWindow = 10 * time.Minute
	// DefaultBusReplicas is the stream's replica count on the embedded server (one server).
	DefaultBusReplicas = 1
	// DefaultExternalBusReplicas is the stream's replica count on an external JetStream cluster
	// (nats.url): a message survives the loss of one server of three.
	DefaultExternalBusReplicas = 3
	// DefaultBusConsumers is how many batches one responder processes at once.
	DefaultBusConsumers = 2
	// DefaultBusAckWait is how long a fetched message stays with one replica before JetStream
	// hands it to another.
	DefaultBusAckWait = 10 * time.Second
)

// Probe defaults (probes[].interval and probes[].timeout; the timeout is at most the interval).
const (
	DefaultProbeInterval = 30 * time.Second
	DefaultProbeTimeout  = 5 * time.Second
)

// DefaultBackupQuery is a backup probe's sql query when it gives none: when PostgreSQL last
// archived a WAL segment (archive_mode=on), NULL before the first.
const DefaultBackupQuery = "SELECT last_archived_time FROM pg_stat_archiver"

// Defaults of handlers.postgres.clusters.NAME.
const (
	DefaultPostgresMaxLag          Bytes = 1_000_000 // 1MB
	DefaultPostgresDetectFailures        = 3
	DefaultPostgresDetectMinPeriod       = 30 * time.Second
	DefaultPostgresRTO                   = 30 * time.Minute
	DefaultPostgresFenceTimeout          = 10 * time.Second
)

// DefaultSlackGroupCacheTTL is how long the members of an approvers group are cached
// (slack.group_cache_ttl; notify/slack applies it to a zero value).
const DefaultSlackGroupCacheTTL = 5 * time.Minute

// DefaultRole is the role of a console user, a named token and a proxy-authenticated user left
// without one.
const DefaultRole = "read"

// DefaultSMTPPort is handlers.page.email.smtp.port: mail submission (RFC 6409), with STARTTLS.
const DefaultSMTPPort = 587

// defaultHTTPRetries is handlers.http.retries.
const defaultHTTPRetries = 2

// Default returns the built-in defaults: no tokens, no database URL, no rule files.
func Default() *Config {
	retries := defaultHTTPRetries
	return &Config{
		Database: DatabaseConfig{MaxConns: 10},
		Webhook:  WebhookConfig{MaxBodyBytes: 8 << 20},
		Handlers: HandlersConfig{
			HTTP: HTTPHandlerConfig{
				Timeout: Duration(10 * time.Second),
				Retries: &retries,
			},
			Page: PageConfig{Email: PageEmailConfig{SMTP: SMTPConfig{Port: DefaultSMTPPort, StartTLS: true}}},
		},
		Approvals: ApprovalsConfig{TTL: Duration(15 * time.Minute)},
		Web:       WebConfig{Auth: WebAuthConfig{DefaultRole: DefaultRole}},
		Safety: SafetyConfig{
			MaxAlertAge:          Duration(15 * time.Minute),
			Retention:            Duration(90 * 24 * time.Hour),
			MaxConcurrentActions: 8,
			ActionTimeout:        Duration(5 * time.Minute),
			LeaseDuration:        Duration(30 * time.Second),
			Breaker:              BreakerConfig{Failures: 3, OpenFor: Duration(5 * time.Minute)},
			StormGuard:           StormGuardConfig{Window: Duration(5 * time.Minute)},
		},
		Bus: BusConfig{
			Stream:          DefaultBusStream,
			MaxBytes:        DefaultBusMaxBytes,
			MaxMsgs:         DefaultBusMaxMsgs,
			MaxAge:          0, // an age limit would drop alerts nobody processed
			DuplicateWindow: Duration(DefaultBusDuplicateWindow),
			Replicas:        DefaultBusReplicas, // a file leaving it out gets 3 with nats.url (Parse)
			Consumers:       DefaultBusConsumers,
			AckWait:         Duration(DefaultBusAckWait),
		},
		Limits: DefaultLimits(),
		Drills: DrillsConfig{Budget: DrillBudget{Max: DefaultDrillBudgetMax, Window: Duration(DefaultDrillBudgetWindow)}},
	}
}

// DefaultLimits returns the defaults of the limits: section.
func DefaultLimits() LimitsConfig {
	return LimitsConfig{
		MaxAlertsPerRequest: 5000,
		MaxLabelsPerAlert:   64,
		MaxLabelNameBytes:   256,
		MaxLabelValueBytes:  2 << 10,
		MaxAnnotationsBytes: 64 << 10,
		MaxParamsBytes:      64 << 10,
	}
}

// fillDefaults fills the defaults Default cannot hold: keys written as null, and the keys of
// list items and map entries left out (or written as zero): probes, postgres clusters, console
// users' and named tokens' roles, drill expectations' states. It runs before the checks, which then
// see the values in force.
func (c *Config) fillDefaults() {
	if c.Bus.Replicas == 0 { // unset: one on the embedded server, three on an external cluster
		c.Bus.Replicas = DefaultBusReplicas
		if c.NATS.URL != "" {
			c.Bus.Replicas = DefaultExternalBusReplicas
		}
	}
	if c.Handlers.HTTP.Retries == nil { // "retries: null"
		retries := defaultHTTPRetries
		c.Handlers.HTTP.Retries = &retries
	}
	for i := range c.Probes {
		c.Probes[i].fillDefaults()
	}
	c.fillWebDefaults()
	fillDrillDefaults(c.Drills.Scenarios)
	for name, cl := range c.Handlers.Postgres.Clusters {
		cl.fillDefaults()
		c.Handlers.Postgres.Clusters[name] = cl
	}
}

// fillDefaults fills a probe's interval (30s), timeout (5s, at most the interval),
// failures_to_fire and successes_to_resolve (1), an http probe's method (GET) and expect_status
// ([200], unless it has a status_map), and a backup probe's sql query (DefaultBackupQuery).
func (p *ProbeConfig) fillDefaults() {
	if p.Interval == 0 {
		p.Interval = Duration(DefaultProbeInterval)
	}
	if p.Timeout == 0 {
		p.Timeout = min(Duration(DefaultProbeTimeout), p.Interval)
	}
	if p.FailuresToFire == 0 {
		p.FailuresToFire = 1
	}
	if p.SuccessesToResolve == 0 {
		p.SuccessesToResolve = 1
	}
	if p.Kind() == ProbeHTTP {
		if p.HTTP.Method == "" {
			p.HTTP.Method = http.MethodGet
		}
		if len(p.HTTP.ExpectStatus) == 0 && len(p.HTTP.StatusMap) == 0 {
			p.HTTP.ExpectStatus = []int{http.StatusOK}
		}
	}
	if p.Kind() == ProbeBackup && p.Backup.SQL != nil && strings.TrimSpace(p.Backup.SQL.Query) == "" {
		p.Backup.SQL.Query = DefaultBackupQuery
	}
}

// fillDefaults fills a postgres cluster's rto (30m); on a Patroni cluster max_lag (1MB); on a
// streaming cluster the primary's name ("primary"), detect (3 failures over 30s) and, when the
// fence has a url, its method (POST) and timeout (10s).
func (cl *PostgresCluster) fillDefaults() {
	if cl.RTO == 0 {
		cl.RTO = Duration(DefaultPostgresRTO)
	}
	switch {
	case cl.IsPatroni() && cl.Primary != nil: // invalid: validatePostgres says so
	case cl.IsPatroni():
		if cl.MaxLag == 0 {
			cl.MaxLag = DefaultPostgresMaxLag
		}
	case cl.Primary != nil:
		if cl.Primary.Name == "" {
			cl.Primary.Name = "primary"
		}
		if cl.Detect.Failures == 0 {
			cl.Detect.Failures = DefaultPostgresDetectFailures
		}
		if cl.Detect.MinPeriod == 0 {
			cl.Detect.MinPeriod = Duration(DefaultPostgresDetectMinPeriod)
		}
		if f := &cl.Fence; f.URL != "" {
			if f.Method == "" {
				f.Method = http.MethodPost
			}
			if f.Timeout == 0 {
				f.Timeout = Duration(DefaultPostgresFenceTimeout)
			}
		}
	}
}

// fillWebDefaults fills the roles left out (read) of the console users, the named tokens and
// web.auth.default_role.
func (c *Config) fillWebDefaults() {
	for name, u := range c.Web.Users {
		if u.Role == "" {
			u.Role = DefaultRole
			c.Web.Users[name] = u
		}
	}
	for i := range c.API.Tokens {
		if c.API.Tokens[i].Role == "" {
			c.API.Tokens[i].Role = DefaultRole
		}
	}
	if c.Web.Auth.DefaultRole == "" {
		c.Web.Auth.DefaultRole = DefaultRole
	}
}
