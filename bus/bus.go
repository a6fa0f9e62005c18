// Package bus carries groups of alerts from the sources to the engine over NATS JetStream.
//
// Contract:
//   - Publish returns nil only once its alerts are durable: JetStream acknowledged (PubAck) the
//     message holding them. Calls made while a message is in flight share the next message (group
//     commit, group.go: one fsync for many webhook requests; an idle bus publishes a call at once,
//     with no linger). A message is the JSON array of its calls' alerts, bounded in bytes under the
//     server's maximum payload. When it fails, every call it holds gets the error; a call whose
//     context ends first returns ErrUnavailable, never nil. Close answers every pending call.
//   - The message id (Nats-Msg-Id) of a message holding one call is alert.BatchID, so a group sent
//     twice within the duplicate window is stored once. A message combining several calls has an
//     id derived from theirs (deterministic, but a group sent again into another combination is
//     stored again): deduplication is best effort, and the Processor must be idempotent (the
//     engine is: incident and action keys).
//   - Every error of Publish wraps ErrUnavailable or ErrStreamFull: both mean "try again later"
//     (HTTP 503), never "dropped". Except an *alert.RejectedError: an alert larger than the
//     server's maximum payload by itself is refused (reason alert_too_large) and every other alert
//     of the group is stored. A group larger than the maximum payload is split into several
//     messages.
//   - The stream has file storage and is bounded by MaxBytes/MaxMsgs with DiscardNew: a full stream
//     refuses new messages instead of dropping old ones. Processed messages are removed in bulk: a
//     purger (any replica) purges everything below the consumer's ack floor every PurgeInterval.
//     (A work-queue stream would delete each message on its ack, one more fsync per message, which
//     halves what the embedded server takes with fsync on every write.)
//   - Consume delivers messages in batches to a Processor through one durable pull consumer shared
//     by every replica; a message is acked only after Process returned nil for it. Transient errors
//     are retried without limit (and make Processing fail); permanent errors terminate a message after
//     MaxPermanentDeliveries and hand it to DeadLetter. Undecodable messages are dead-lettered at
//     once.
//   - With no URL, Open runs an embedded JetStream server in-process (loopback, fsync always,
//     a random token generated at each start that only this Bus knows).
//   - Every message carries an HMAC (SignatureHeader, security.go) keyed by SigningKey, the same
//     for every replica. Consume verifies it before decoding: an unsigned or badly signed message
//     is dead-lettered at once, unread, with the reason bad_signature.
package bus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
)

// Sentinel errors of Publish. Both mean the caller should answer 503 and let the sender retry.
var (
	// ErrUnavailable: not connected, timed out, no JetStream responder, or any other failure.
	ErrUnavailable = errors.New("bus unavailable")
	// ErrStreamFull: the stream reached its byte or message limit (DiscardNew).
	ErrStreamFull = errors.New("bus stream full")
)

// ErrStreamConfig is wrapped by Open's error when the stream on the server has a replica count or
// a storage type other than what responder asked for, and JetStream could not change it in place.
var ErrStreamConfig = errors.New("bus stream config mismatch")

// Defaults of Options. Those the config file also sets (the bus: section) are its defaults, so
// a library user gets what `responder serve` gets.
const (
	DefaultStream         = config.DefaultBusStream
	DefaultSubject        = "responder.alerts"
	DefaultDurable        = "responder"
	DefaultFetchBatch     = 256
	DefaultFetchMaxBytes  = 8 << 20
	DefaultMaxBatchAlerts = 2048
	DefaultAckWait        = config.DefaultBusAckWait
	DefaultMaxPermanent   = 3
	DefaultMaxBytes       = int64(config.DefaultBusMaxBytes)
	DefaultMaxMsgs        = config.DefaultBusMaxMsgs
	DefaultReplicas       = config.DefaultBusReplicas
	MinDuplicateWindow    = config.MinDuplicateWindow
	DefaultNakDelay       = time.Second
	embeddedMaxPayload    = 8 << 20
	embeddedReadyTimeout  = 10 * time.Second
	serverShutdownBound   = 30 * time.Second
	defaultPublishTimeout = 10 * time.Second
	pendingScrapeTimeout  = 2 * time.Second
	reconnectWait         = 250 * time.Millisecond
	// pingInterval and maxPingsOut bound how long the bus stays on a server that stopped
	// answering without closing the connection (a frozen VM, a SIGSTOPped process, a network
	// partition that drops packets): about pingInterval × (maxPingsOut+1), 6 s, instead of
	// nats.go's default of 4 minutes. Publishes fail with ErrUnavailable meanwhile (503, so
	// the sender retries), and then the bus reconnects to another server of the cluster.
	pingInterval = 2 * time.Second
	maxPingsOut  = 2
)

// Options configures a Bus. Zero values take the defaults above.
type Options struct {
	// URL of an external NATS server; "" starts an embedded JetStream server with file storage
	// under StoreDir, listening on loopback (Port; 0 = a random port), fsync on every write.
	URL      string
	StoreDir string
	Port     int

	// Credentials of an external server (URL), at most one kind: User and Password, Token,
	// CredsFile (a user JWT and its seed) or NkeySeedFile. The embedded server ignores them: it
	// requires a random token generated at each start, which only this Bus knows.
	User, Password string
	Token          string
	CredsFile      string
	NkeySeedFile   string
	// TLS to an external server; nil = plain (or whatever the URL's scheme says).
	TLS *TLSOptions
	// SigningKey keys the HMAC every message carries (security.go), the same for every replica:
	// required with a URL (at least MinSigningKeyBytes); the embedded server's Bus generates one
	// when it is empty.
	SigningKey []byte

	Stream, Subject string
	// Stream limits. MaxBytes/MaxMsgs default to 1 GiB / 1e6 messages; MaxAge 0 = no age limit
	// (an age limit would silently drop unprocessed alerts). DuplicateWindow is raised to at least
	// MinDuplicateWindow (10 minutes). Replicas defaults to 1.
	MaxBytes, MaxMsgs int64
	MaxAge            time.Duration
	DuplicateWindow   time.Duration
	Replicas          int

	// Durable is the name of the one pull consumer shared by all replicas.
	Durable string
	// FetchBatch and FetchMaxBytes bound one fetch in messages and in bytes (default 256 and
	// 8 MiB; the byte bound is raised to the server's maximum payload when it is smaller, or the
	// largest message could never be fetched).
	FetchBatch    int
	FetchMaxBytes int
	// MaxBatchAlerts bounds the alerts of one Process call (default 4096): a fetch holding more
	// is processed in chunks (a message holding more alone).
	MaxBatchAlerts int
	// AckWait is how long a fetched message stays with this consumer before JetStream redelivers
	// it (default 10s, the config file's bus.ack_wait).
	AckWait time.Duration
	// MaxPermanentDeliveries is how many deliveries failing with a permanent error a message gets
	// before it is terminated and dead-lettered.
	MaxPermanentDeliveries int
	// NakDelay is the base redelivery delay after a permanent failure (times the delivery count,
	// capped at AckWait).
	NakDelay time.Duration
	// PurgeInterval is how often acked messages are purged from the stream (default 1s).
	PurgeInterval time.Duration

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// OnPanic, when set, is called after a panic in Process was recovered (and logged with its
	// stack); the App counts it in responder_panics_total{kind="batch"}.
	OnPanic func()
}

func (o *Options) setDefaults() error {
	o.Stream = cmp.Or(o.Stream, DefaultStream)
	o.Subject = cmp.Or(o.Subject, DefaultSubject)
	o.Durable = cmp.Or(o.Durable, DefaultDurable)
	if o.FetchBatch <= 0 {
		o.FetchBatch = DefaultFetchBatch
	}
	if o.FetchMaxBytes <= 0 {
		o.FetchMaxBytes = DefaultFetchMaxBytes
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.MaxBatchAlerts <= 0 {
		o.MaxBatchAlerts = DefaultMaxBatchAlerts
	}
	if o.MaxPermanentDeliveries <= 0 {
		o.MaxPermanentDeliveries = DefaultMaxPermanent
	}
	if o.NakDelay <= 0 {
		o.NakDelay = DefaultNakDelay
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxMsgs == 0 {
		o.MaxMsgs = DefaultMaxMsgs
	}
	if o.DuplicateWindow < MinDuplicateWindow {
		o.DuplicateWindow = MinDuplicateWindow
	}
	if o.MaxAge > 0 && o.MaxAge < o.DuplicateWindow {
		return fmt.Errorf("bus: max age %s is shorter than the duplicate window %s", o.MaxAge, o.DuplicateWindow)
	}
	if o.Replicas <= 0 {
		o.Replicas = DefaultReplicas
	}
	if o.PurgeInterval <= 0 {
		o.PurgeInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.URL == "" && o.StoreDir == "" {
		return errors.New("bus: an embedded server needs a store directory")
	}
	return o.setSigningKey()
}

// Bus is a connection to the alert stream. Publish, Ready and Pending are safe for concurrent use.
type Bus struct {
	o        Options
	log      *slog.Logger
	emb      *embedded // nil when external
	st       storage   // the embedded server's store (storage.go)
	nc       *nats.Conn
	js       jetstream.JetStream
	stream   jetstream.Stream
	consumer jetstream.Consumer
	m        *metrics
	commit   *committer // group commit of Publish (group.go)

	// failing counts the Consume calls retrying a transient error right now; lastErr is the
	// latest such error. Processing fails while failing > 0 (per consumer, so one consumer's
	// success does not hide another's outage).
	failing  atomic.Int32
	lastErr  atomic.Pointer[error]
	lastPend atomic.Uint64

	fetchMu     sync.Mutex
	fetchCancel map[*puller]context.CancelFunc // cancel the waiting fetch of each Consume

	mu        sync.Mutex // guards closed and consumers.Add
	closed    bool
	closeOnce sync.Once
	closing   chan struct{}
	consumers sync.WaitGroup
	purged    chan struct{} // closed when purgeLoop returned
	// bg bounds the Bus's own background work (purges, metric scrapes); cancelled by Close.
	bg       context.Context
	bgCancel context.CancelFunc
	purgedTo atomic.Uint64 // first sequence not yet purged by this Bus
}

// Open connects to URL (or starts the embedded server), then creates or updates the stream and the
// durable consumer.
func Open(ctx context.Context, o Options) (*Bus, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	b := &Bus{o: o, log: o.Logger, closing: make(chan struct{})}
	b.commit = newCommitter(context.WithoutCancel(ctx), b)
	url, token := o.URL, ""
	if url == "" {
		emb, err := startEmbedded(o)
		if err != nil {
			return nil, err
		}
		b.emb = emb
		url, token = emb.clientURL(), emb.token
	}
	nc, err := nats.Connect(url, append(o.connectOptions(token),
		nats.Name("responder"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		// Fail fast while disconnected instead of buffering publishes that the caller has already
		// answered with an error.
		nats.ReconnectBufSize(-1),
		nats.RetryOnFailedConnect(false),
		// Asynchronous errors: a slow consumer (the consumer's inbox full: the messages dropped come
		// back after AckWait), a permissions violation.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			b.log.Warn("bus connection error", "err", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			b.log.Warn("bus disconnected", "err", err)
			b.commit.disconnected()
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			b.log.Info("bus reconnected", "url", RedactURL(c.ConnectedUrl())) // ConnectedUrlRedacted keeps a token
			b.fetchMu.Lock()
			for _, cancel := range b.fetchCancel {
				cancel()
			}
			b.fetchMu.Unlock()
		}),
	)...)
	if err != nil {
		_ = b.shutdownServer()
		return nil, o.connectError(url, err)
	}
	b.nc = nc
	if err := b.setup(ctx); err != nil {
		nc.Close()
		_ = b.shutdownServer()
		return nil, err
	}
	bg, bgCancel := context.WithCancel(context.WithoutCancel(ctx))
	b.bg, b.bgCancel = bg, bgCancel
	m, err := newMetrics(bg, o.Registerer, b)
	if err != nil {
		b.bgCancel()
		nc.Close()
		_ = b.shutdownServer()
		return nil, err
	}
	b.m = m
	b.purged = make(chan struct{})
	go b.purgeLoop(bg)
	b.st.done = make(chan struct{})
	b.st.kick = make(chan struct{}, 1)
	if b.emb != nil {
		go b.storageLoop()
	} else {
		close(b.st.done)
	}
	return b, nil
}

// purgeLoop removes acked messages in bulk until the Bus closes.
func (b *Bus) purgeLoop(bg context.Context) {
	defer close(b.purged)
	t := time.NewTicker(b.o.PurgeInterval)
	defer t.Stop()
	for {
		select {
		case <-b.closing:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(bg, b.o.PurgeInterval+5*time.Second)
		if err := b.purgeAcked(ctx); err != nil && b.nc.IsConnected() {
			b.log.Debug("bus purge failed", "err", err)
		}
		cancel()
	}
}

// purgeAcked purges the stream below the consumer's ack floor: every message there is acked (or
// terminated), so nothing unprocessed is removed.
func (b *Bus) purgeAcked(ctx context.Context) error {
	info, err := b.consumer.Info(ctx)
	if err != nil {
		return err
	}
	floor := info.AckFloor.Stream
	if floor == 0 || floor < b.purgedTo.Load() || !b.purgeSafe() {
		return nil
	}
	if err := b.stream.Purge(ctx, jetstream.WithPurgeSequence(floor+1)); err != nil {
		return err
	}
	b.purgedTo.Store(floor + 1)
	return nil
}

func (b *Bus) setup(ctx context.Context) error {
	js, err := jetstream.New(b.nc)
	if err != nil {
		return fmt.Errorf("bus: jetstream: %w", err)
	}
	b.js = js
	o := b.o
	maxAge := o.MaxAge
	want := jetstream.StreamConfig{
		Name:        o.Stream,
		Description: "responder alert groups",
		Subjects:    []string{o.Subject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    o.MaxBytes,
		MaxMsgs:     o.MaxMsgs,
		MaxAge:      maxAge,
		Duplicates:  o.DuplicateWindow,
		Replicas:    o.Replicas,
	}
	// JetStream updates most of a stream's config in place (limits, the duplicate window, the
	// replica count on a cluster), never its storage type: refuse that before asking, naming both.
	switch s, err := js.Stream(ctx, o.Stream); {
	case err == nil:
		if got := s.CachedInfo().Config; got.Storage != want.Storage {
			return streamMismatch(o.Stream, "storage", strings.ToLower(got.Storage.String()), strings.ToLower(want.Storage.String()),
				"JetStream cannot change a stream's storage type in place; recreate the stream (after its messages were processed) or point responder at another bus.stream")
		}
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("bus: stream %s: %w: %w", o.Stream, ErrUnavailable, err)
	}
	b.stream, err = js.CreateOrUpdateStream(ctx, want)
	if err != nil {
		return fmt.Errorf("bus: create or update stream %s (%d replicas, %s storage): %w", o.Stream, want.Replicas, strings.ToLower(want.Storage.String()), err)
	}
	// What the server now holds must be what was asked for: a server may accept an update and
	// keep another value.
	got := b.stream.CachedInfo().Config
	if got.Replicas != want.Replicas {
		return streamMismatch(o.Stream, "replicas", strconv.Itoa(got.Replicas), strconv.Itoa(want.Replicas), "the server did not apply bus.replicas")
	}
	if got.Storage != want.Storage {
		return streamMismatch(o.Stream, "storage", strings.ToLower(got.Storage.String()), strings.ToLower(want.Storage.String()), "the server did not apply file storage")
	}
	b.consumer, err = js.CreateOrUpdateConsumer(ctx, o.Stream, b.consumerConfig())
	if err != nil {
		return fmt.Errorf("bus: create or update consumer %s: %w", o.Durable, err)
	}
	return nil
}

// consumerConfig is the durable consumer's config: one for every replica.
func (b *Bus) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       b.o.Durable,
		Description:   "responder engine (shared by all replicas)",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.o.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: max(8*b.o.FetchBatch, 4096),
		FilterSubject: b.o.Subject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// restoreConsumer creates the durable consumer again when it is gone (deleted by hand, or lost
// with its stream's state): without it nothing is consumed while intake goes on storing. It
// reports whether it created it. The new consumer starts at the stream's first message, so
// messages processed but not purged yet are delivered again (processing is idempotent).
func (b *Bus) restoreConsumer(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := b.js.Consumer(ctx, b.o.Stream, b.o.Durable)
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false, nil // there, or the server cannot say: nothing to restore
	}
	if _, err := b.js.CreateOrUpdateConsumer(ctx, b.o.Stream, b.consumerConfig()); err != nil {
		return false, fmt.Errorf("bus: create consumer %s again: %w", b.o.Durable, err)
	}
	return true, nil
}

// streamMismatch is Open's refusal to run on a stream whose key (replicas, storage) has the value
// got on the server where responder asked for want.
func streamMismatch(stream, key, got, want, why string) error {
	return fmt.Errorf("bus: stream %s has %s %s on the server, responder asks for %s: %s: %w", stream, key, got, want, why, ErrStreamConfig)
}

// RedactURL returns a NATS URL list ("nats://user:pass@h1:4222,nats://h2:4222") fit for logs and
// errors: the credentials (userinfo: user and password, or a token) of each URL are replaced.
func RedactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := neturl.Parse(strings.TrimSpace(p))
		switch {
		case err != nil:
			parts[i] = "<invalid url>"
		case u.User != nil:
			u.User = neturl.User("redacted")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// EmbeddedToken is the token the embedded server requires of its clients, generated at each
// start; "" with an external server. It is a secret: never log it.
func (b *Bus) EmbeddedToken() string {
	if b.emb != nil {
		return b.emb.token
	}
	return ""
}

// ClientURL is the URL other clients use to reach the server (the embedded one when embedded,
// which also requires EmbeddedToken).
func (b *Bus) ClientURL() string {
	if b.emb != nil {
		return b.emb.clientURL()
	}
	return b.o.URL
}

// Publish stores alerts and returns once they are durable: after the PubAck of the message holding
// them. Calls that arrive while earlier ones are in flight share one message (group commit, see
// group.go). Groups larger than the server's maximum payload are split (deterministically) into
// several messages.
func (b *Bus) Publish(ctx context.Context, alerts []alert.Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	start := time.Now()
	err := b.publish(ctx, alerts)
	b.m.publishDuration.Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		b.m.published.WithLabelValues("ok").Inc()
	case errors.Is(err, ErrStreamFull):
		b.m.published.WithLabelValues("stream_full").Inc()
	case isRejected(err):
		b.m.published.WithLabelValues("rejected").Inc()
	default:
		b.m.published.WithLabelValues("unavailable").Inc()
	}
	return err
}

func (b *Bus) publish(ctx context.Context, alerts []alert.Alert) error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("bus: publish: %w: %s", ErrUnavailable, strings.ToLower(b.nc.Status().String()))
	}
	if err := b.storageErr(); err != nil {
		return fmt.Errorf("bus: publish: %w: %w", ErrUnavailable, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bus: publish: %w: %w", ErrUnavailable, context.Cause(ctx))
	}
	data, err := alert.AppendListJSON(nil, alerts) // json.Marshal's bytes, without reflection
	if err != nil {
		return fmt.Errorf("bus: encode alerts: %w: %w", ErrUnavailable, err)
	}
	if limit := b.nc.MaxPayload() - headerRoom; int64(len(data)) > limit {
		if len(alerts) > 1 {
			return b.publishSplit(ctx, alerts)
		}
		// Alone and still too large: no retry can store it. Refuse it by itself (the caller
		// audits it) instead of failing its whole group forever.
		return &alert.RejectedError{Rejected: []alert.Rejection{{Alert: alerts[0], Err: &alert.InvalidError{
			Reason: alert.ReasonAlertTooLarge,
			Detail: fmt.Sprintf("the alert is %d bytes encoded, more than the bus's maximum payload %d", len(data), limit),
		}}}}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultPublishTimeout)
		defer cancel()
	}
	return b.commit.submit(ctx, &pubReq{id: alert.BatchID(alerts), data: data, done: make(chan error, 1)})
}

// publishSplit sorts the alerts by ID and publishes halves, so a re-sent oversized group splits the
// same way and is deduplicated. An alert too large by itself does not stop the others: both halves
// are published and the refused alerts are returned together in one *alert.RejectedError.
func (b *Bus) publishSplit(ctx context.Context, alerts []alert.Alert) error {
	sorted := slices.Clone(alerts)
	slices.SortFunc(sorted, func(x, y alert.Alert) int { return strings.Compare(x.ID(), y.ID()) })
	mid := len(sorted) / 2
	var rejected []alert.Rejection
	for _, half := range [][]alert.Alert{sorted[:mid], sorted[mid:]} {
		err := b.publish(ctx, half)
		if re, ok := errors.AsType[*alert.RejectedError](err); ok {
			rejected = append(rejected, re.Rejected...)
			continue
		}
		if err != nil {
			return err
		}
	}
	if len(rejected) > 0 {
		return &alert.RejectedError{Rejected: rejected}
	}
	return nil
}

// isRejected reports whether err is an *alert.RejectedError: the other alerts were stored.
func isRejected(err error) bool {
	_, ok := errors.AsType[*alert.RejectedError](err)
	return ok
}

// classify wraps a publish error in ErrStreamFull or ErrUnavailable.
func classify(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		full := apiErr.ErrorCode == 10023 || // insufficient resources
			(apiErr.ErrorCode == 10077 && strings.Contains(apiErr.Description, "exceeded"))
		if full {
			return fmt.Errorf("bus: publish: %w: %w", ErrStreamFull, err)
		}
	}
	return fmt.Errorf("bus: publish: %w: %w", ErrUnavailable, err)
}

// Ready reports whether the bus is usable for intake: the embedded server's store can write (else
// a StorageError), connected, and the stream exists on the server. A batch stuck on a transient
// processing error (the database is down or failing over) does not make it fail: the webhook only
// needs the bus, and the alerts wait in the stream; see Processing.
func (b *Bus) Ready(ctx context.Context) error {
	if err := b.storageErr(); err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	if !b.nc.IsConnected() {
		return fmt.Errorf("bus: %w: %s", ErrUnavailable, strings.ToLower(b.nc.Status().String()))
	}
	if _, err := b.js.Stream(ctx, b.o.Stream); err != nil {
		return fmt.Errorf("bus: stream %s: %w: %w", b.o.Stream, ErrUnavailable, err)
	}
	return nil
}

// Processing reports whether a batch is stuck on a transient processing error right now (retried
// with a backoff, its messages kept in progress), wrapping the latest such error; nil otherwise.
func (b *Bus) Processing() error {
	if b.failing.Load() > 0 {
		if p := b.lastErr.Load(); p != nil {
			return fmt.Errorf("bus: processing is failing: %w", *p)
		}
		return errors.New("bus: processing is failing")
	}
	return nil
}

// Pending is the number of messages not yet acked by the consumer (undelivered plus in flight).
func (b *Bus) Pending(ctx context.Context) (uint64, error) {
	info, err := b.consumer.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("bus: consumer info: %w", err)
	}
	n := info.NumPending + uint64(info.NumAckPending)
	b.lastPend.Store(n)
	return n, nil
}

// Close refuses new publishes and answers the pending ones (waiting for their acks within ctx, then
// failing them), stops Consume (waiting for it within ctx), closes the connection and shuts the
// embedded server down.
func (b *Bus) Close(ctx context.Context) error {
	var err error
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		close(b.closing)
		b.mu.Unlock()
		b.bgCancel()
		err = b.commit.close(ctx)
		done := make(chan struct{})
		go func() { b.consumers.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			err = errors.Join(err, fmt.Errorf("bus: close: consumers still running: %w", ctx.Err()))
		}
		<-b.purged
		<-b.st.done
		b.m.unregister()
		b.nc.Close()
		err = errors.Join(err, b.shutdownServer())
	})
	return err
}

// shutdownServer shuts the embedded server down, waiting at most serverShutdownBound: a wedged
// server (errWedged) never finishes, and the process is exiting anyway.
func (b *Bus) shutdownServer() error {
	if b.emb == nil {
		return nil
	}
	if !b.emb.wedged().IsZero() {
		return fmt.Errorf("bus: close: embedded server not shut down: %w", errWedged)
	}
	done := make(chan struct{})
	go func() { b.emb.shutdown(); close(done) }()
	t := time.NewTimer(serverShutdownBound)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("bus: close: the embedded server did not shut down within %s", serverShutdownBound)
	}
}
