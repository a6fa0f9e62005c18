package bus

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/internal/clock"
	"github.com/responder-sre/responder/vocab"
)

// Message is one stored group of alerts as the Processor sees it.
type Message struct {
	ID        string        // Nats-Msg-Id: alert.BatchID of the group, or derived from those of the Publish calls it combines
	Alerts    []alert.Alert // the alerts of every Publish call the message holds, in order
	Delivered uint64        // 1 on the first delivery
	Published time.Time
}

// Processor consumes messages. Process gets all decoded messages of one fetch in one call and
// must be idempotent (a message can be delivered again after a crash). It returns nil when every
// message is durably handled (they are then acked), a Permanent error when retrying cannot help,
// and any other error when it can (the batch is kept and retried without limit).
// DeadLetter records a message that will never be processed; the message is terminated only
// after it returned nil.
type Processor interface {
	Process(ctx context.Context, msgs []Message) error
	DeadLetter(ctx context.Context, msgID string, data []byte, reason string) error
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as permanent: the message cannot be processed, however often it is retried.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err (or an error it wraps) was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

const (
	fetchWait = 10 * time.Second
	// availableWait is how long a fetch of what is available waits for the server to answer.
	availableWait = 5 * time.Millisecond
	// fetchOverheadBytes is the most a message's subject, reply subject and headers add to its
	// payload (the server's max_payload bounds headers and data together).
	fetchOverheadBytes = 4 << 10
	retryInitial       = 100 * time.Millisecond
	retryCap           = 5 * time.Second
	fetchErrorCap      = 2 * time.Second
	undecodablePrefix  = "undecodable: "
	permanentPrefix    = "permanent: "
	maxTermReasonBytes = 256
)

type item struct {
	raw *delivery
	msg Message
	// data, when set, is what a dead letter keeps instead of the stored message: the alerts of a
	// combined message that failed alone (isolate).
	data []byte
}

// deadData is the message body a dead letter of it keeps.
func (it item) deadData() []byte {
	if it.data != nil {
		return it.data
	}
	return it.raw.Data()
}

// Consume fetches messages and hands them to p until ctx is done or the Bus is closed. Several
// Consume calls (in one process or in several replicas) share the work: each message goes to one
// of them.
func (b *Bus) Consume(ctx context.Context, p Processor) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errors.New("bus: consume: closed")
	}
	b.consumers.Add(1)
	b.mu.Unlock()
	defer b.consumers.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-b.closing:
			cancel()
		case <-ctx.Done():
		}
	}()

	pl, err := newPuller(b.nc, b.o.Stream, b.o.Durable, b.o.FetchBatch, b.consumerConfig().MaxAckPending)
	if err != nil {
		return err
	}
	hctx, stopHold := context.WithCancel(ctx)
	held := make(chan struct{})
	go func() { defer close(held); pl.holdEvery(hctx, max(b.o.AckWait/4, time.Millisecond)) }()
	defer func() {
		stopHold()
		<-held
		// Messages that came for this consumer and were not handled go back now, to another
		// replica, rather than after AckWait.
		for _, m := range pl.close() {
			_ = m.Nak()
		}
	}()
	bo := newBackoff(fetchErrorCap)
	for ctx.Err() == nil {
		raw, err := b.fetch(ctx, pl)
		if ctx.Err() != nil {
			for _, m := range raw {
				_ = m.Nak()
			}
			break
		}
		if len(raw) > 0 {
			b.handle(ctx, p, raw)
		}
		if errors.Is(err, errPullRefused) {
			b.log.Debug("bus pull refused; pulling again after a pause", "err", err)
			_ = clock.Sleep(ctx, bo.NextBackOff())
			continue
		}
		if err != nil {
			b.log.Warn("bus fetch failed", "err", err)
			if errors.Is(err, errConsumerGone) || errors.Is(err, ErrUnavailable) {
				// A pull to a deleted consumer is answered "no responders", as one to a server
				// without JetStream is: ask whether the consumer is still there.
				if made, rerr := b.restoreConsumer(ctx); made {
					b.log.Error("bus durable consumer was gone; created it again (messages not purged yet are delivered again)", "consumer", b.o.Durable)
					continue
				} else if rerr != nil {
					b.log.Warn("bus consumer check failed", "err", rerr)
				}
			}
			_ = clock.Sleep(ctx, bo.NextBackOff()) // a cancelled ctx ends the loop
			continue
		}
		bo.Reset()
	}
	return nil
}

// fetch returns what is available at once; when nothing is, it waits for one message and returns
// it (the next fetch takes whatever arrived meanwhile). Low latency when idle, full batches under
// load. A fetch is bounded in messages (FetchBatch) and in bytes (fetchBudget), so a backlog of
// large messages cannot exhaust memory.
func (b *Bus) fetch(ctx context.Context, pl *puller) ([]*delivery, error) {
	budget := b.fetchBudget()
	msgs, err := pl.pull(ctx, b.o.FetchBatch, budget, availableWait)
	if err != nil || len(msgs) > 0 {
		return msgs, err
	}
	fctx, cancel := context.WithTimeout(ctx, fetchWait)
	defer cancel()
	// A reconnect cancels the wait: the server may have lost the pull request.
	b.fetchMu.Lock()
	if b.fetchCancel == nil {
		b.fetchCancel = map[*puller]context.CancelFunc{}
	}
	b.fetchCancel[pl] = cancel
	b.fetchMu.Unlock()
	defer func() {
		b.fetchMu.Lock()
		delete(b.fetchCancel, pl)
		b.fetchMu.Unlock()
	}()
	// One message: not followed by a pull of what else arrived, which would wait availableWait
	// for the server's answer, and this message with it.
	return pl.pull(fctx, 1, budget, fetchWait)
}

// fetchBudget is the byte bound of one fetch: FetchMaxBytes, but never less than the largest
// message can take. The server answers a pull whose budget the next message exceeds with an
// empty "409 Message Size Exceeds MaxBytes" and leaves the message where it is: a smaller
// budget would stall the consumer on that message for good.
func (b *Bus) fetchBudget() int {
	return max(b.o.FetchMaxBytes, int(b.nc.MaxPayload())+fetchOverheadBytes)
}

// handle decodes a fetched batch, dead-letters what cannot be decoded and processes the rest in
// chunks of at most MaxBatchAlerts alerts (a message larger than that alone): one fetch of
// group-committed messages can hold tens of thousands of alerts, and decoding and planning them
// at once would hold them all in memory. Each chunk is decoded when its turn comes and acked
// once processed; the messages still waiting are kept in progress meanwhile.
func (b *Bus) handle(ctx context.Context, p Processor, raw []*delivery) {
	c := chunker{b: b, p: p, raw: raw}
	touched := time.Now()
	for ctx.Err() == nil {
		items := c.next(ctx)
		if len(items) == 0 {
			break
		}
		b.handleChunk(ctx, p, items)
		if time.Since(touched) > b.o.AckWait/4 {
			c.touch()
			touched = time.Now()
		}
	}
	if ctx.Err() != nil {
		if c.ahead != nil {
			b.nakAll([]item{*c.ahead})
		}
		for _, m := range c.raw {
			_ = m.Nak()
		}
	}
}

// chunker cuts a fetched batch into chunks of decoded messages.
type chunker struct {
	b     *Bus
	p     Processor
	raw   []*delivery // not decoded yet
	ahead *item       // decoded, for the next chunk: it did not fit in the last one
}

// next decodes messages while they hold at most MaxBatchAlerts alerts together (the first one
// whatever it holds), dead-letters the undecodable ones and returns the chunk; empty when nothing
// is left.
func (c *chunker) next(ctx context.Context) []item {
	var items []item
	n := 0
	if c.ahead != nil {
		items, n, c.ahead = append(items, *c.ahead), len(c.ahead.msg.Alerts), nil
	}
	for len(c.raw) > 0 && n < c.b.o.MaxBatchAlerts {
		m := c.raw[0]
		c.raw[0] = nil // the chunk holds it now; once acked, it can be freed before the fetch ends
		c.raw = c.raw[1:]
		it, err := decode(c.b.o.SigningKey, m)
		if it.msg.Delivered > 1 {
			c.b.m.redeliveries.Inc()
		}
		if errors.Is(err, errBadSignature) {
			// Not decoded: nothing it says (its source, a probe fence) is read.
			c.b.log.Error("bus message with a bad signature; dead-lettering it unread", "msg_id", it.msg.ID, "err", err)
			c.b.deadLetter(ctx, c.p, it, badSignaturePrefix+strings.TrimPrefix(err.Error(), errBadSignature.Error()+": "))
			continue
		}
		if err != nil {
			c.b.log.Error("bus message undecodable", "msg_id", it.msg.ID, "err", err)
			c.b.deadLetter(ctx, c.p, it, undecodablePrefix+err.Error())
			continue
		}
		if len(items) > 0 && n+len(it.msg.Alerts) > c.b.o.MaxBatchAlerts {
			c.ahead = &it
			break
		}
		items = append(items, it)
		n += len(it.msg.Alerts)
	}
	return items
}

// touch tells the server the fetched messages not processed yet are still being worked on.
func (c *chunker) touch() {
	rest := c.raw
	if c.ahead != nil {
		rest = append([]*delivery{c.ahead.raw}, rest...)
	}
	for _, m := range rest {
		if err := m.InProgress(); err != nil {
			c.b.log.Debug("bus in-progress failed", "err", err)
		}
	}
}

// handleChunk processes decoded messages as one batch and settles them.
func (b *Bus) handleChunk(ctx context.Context, p Processor, items []item) {
	err := b.processRetrying(ctx, p, items, items)
	switch {
	case err == nil:
		b.ackAll(items)
	case ctx.Err() != nil:
		b.nakAll(items)
	default:
		// Permanent: find the culprit(s) by processing each message alone.
		if len(items) > 1 {
			b.log.Warn("bus batch failed permanently; retrying its messages one by one", "messages", len(items), "err", err)
		}
		for i, it := range items {
			if ctx.Err() != nil {
				b.nakAll(items[i:])
				return
			}
			if len(items) > 1 {
				// The messages still waiting their turn stay in progress meanwhile.
				err = b.processRetrying(ctx, p, items[i:i+1], items[i:])
			}
			if err != nil && IsPermanent(err) && len(it.msg.Alerts) > 1 {
				it, err = b.isolate(ctx, p, it, items[i:], err)
			}
			b.settleOne(ctx, p, it, err)
		}
	}
}

// isolate processes the alerts of a message that failed permanently one at a time (a message
// combines the alerts of several requests: group commit), so that the alerts that can be
// processed are, and only those that cannot stay with the message: it returns the message
// narrowed to its failing alerts, the data a dead letter would keep, and the last of their errors
// (nil when every alert went through alone). Processing is idempotent, so the alerts that went
// through are not harmed when the whole message is delivered again.
func (b *Bus) isolate(ctx context.Context, p Processor, it item, hold []item, err error) (item, error) {
	var failed []alert.Alert
	var last error
	for j, a := range it.msg.Alerts {
		one := item{raw: it.raw, msg: it.msg}
		one.msg.ID, one.msg.Alerts = fmt.Sprintf("%s#%d", it.msg.ID, j), []alert.Alert{a}
		e := b.processRetrying(ctx, p, []item{one}, hold)
		switch {
		case e == nil:
		case ctx.Err() != nil:
			return it, ctx.Err()
		default:
			failed, last = append(failed, a), e
		}
	}
	if len(failed) == len(it.msg.Alerts) {
		return it, err
	}
	b.log.Warn("bus message failed permanently; its other alerts were processed one by one", "msg_id", it.msg.ID,
		"alerts", len(it.msg.Alerts), "failed", len(failed))
	if last == nil {
		return it, nil
	}
	data, encErr := alert.AppendListJSON(nil, failed)
	if encErr != nil {
		return it, err // keep the whole message: it is what the stream holds
	}
	it.msg.Alerts, it.data = failed, data
	return it, last
}

// settleOne acks a message, or after a permanent error naks it with a delay or, once its
// deliveries reach MaxPermanentDeliveries, dead-letters it.
func (b *Bus) settleOne(ctx context.Context, p Processor, it item, err error) {
	switch {
	case err == nil:
		b.ackAll([]item{it})
	case ctx.Err() != nil:
		b.nakAll([]item{it})
	case it.msg.Delivered >= uint64(b.o.MaxPermanentDeliveries):
		b.log.Error("bus message failed permanently; dead-lettering", "msg_id", it.msg.ID, "delivered", it.msg.Delivered, "err", err)
		b.deadLetter(ctx, p, it, permanentPrefix+err.Error())
	default:
		delay := min(b.o.NakDelay*time.Duration(it.msg.Delivered), b.o.AckWait)
		b.log.Warn("bus message failed permanently; will retry", "msg_id", it.msg.ID, "delivered", it.msg.Delivered, "retry_in", delay, "err", err)
		if err := it.raw.NakWithDelay(delay); err != nil {
			b.log.Warn("bus nak failed", "msg_id", it.msg.ID, "err", err)
		}
	}
}

// processRetrying calls Process on items until it succeeds, fails permanently, or ctx is done.
// While a transient error persists it keeps hold (items and any others this consumer still owns)
// in progress and makes Processing fail.
func (b *Bus) processRetrying(ctx context.Context, p Processor, items, hold []item) error {
	msgs := make([]Message, len(items))
	for i := range items {
		msgs[i] = items[i].msg
	}
	bo := newBackoff(retryCap)
	var f failure
	defer f.clear(b)
	for {
		err := b.process(ctx, p, msgs)
		if err == nil || IsPermanent(err) {
			if f.clear(b) {
				b.log.Info("bus processing recovered")
			}
			if err != nil {
				b.m.processErrors.WithLabelValues("permanent").Inc()
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.m.processErrors.WithLabelValues("transient").Inc()
		err = fmt.Errorf("transient: %w", err)
		f.set(b, err)
		d := bo.NextBackOff()
		b.log.Warn("bus processing failed; retrying", "messages", len(items), "retry_in", d, "err", err)
		if !b.waitInProgress(ctx, hold, d) {
			return ctx.Err()
		}
	}
}

// internalErrorReason starts the error of a batch whose processing panicked (the action reason
// of the same name).
const internalErrorReason = string(vocab.ReasonInternalError)

// process calls p.Process. A panic in it (a bug, most likely triggered by what the messages hold)
// fails the batch with a permanent internal_error instead of ending the process: the batch is
// split, and each message that still panics alone is nak'ed with a delay and, after
// MaxPermanentDeliveries, dead-lettered (replayable once the bug is fixed), never lost.
func (b *Bus) process(ctx context.Context, p Processor, msgs []Message) (err error) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		b.log.Error("panic recovered while processing a batch; it fails as a permanent error", "kind", "batch",
			"panic", fmt.Sprint(v), "msg_ids", ids, "stack", string(debug.Stack()))
		if b.o.OnPanic != nil {
			b.o.OnPanic()
		}
		err = Permanent(fmt.Errorf("%s: panic while processing: %v", internalErrorReason, v))
	}()
	return p.Process(ctx, msgs)
}

// deadLetter hands a message to the Processor's DeadLetter (retried until it succeeds or ctx is
// done) and then terminates it.
func (b *Bus) deadLetter(ctx context.Context, p Processor, it item, reason string) {
	bo := newBackoff(retryCap)
	var f failure
	defer f.clear(b)
	for {
		err := recordDeadLetter(ctx, p, it, reason)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			b.nakAll([]item{it})
			return
		}
		err = fmt.Errorf("dead letter: %w", err)
		f.set(b, err)
		d := bo.NextBackOff()
		b.log.Warn("bus dead letter failed; retrying", "msg_id", it.msg.ID, "retry_in", d, "err", err)
		if !b.waitInProgress(ctx, []item{it}, d) {
			b.nakAll([]item{it})
			return
		}
	}
	f.clear(b)
	if len(reason) > maxTermReasonBytes {
		reason = reason[:maxTermReasonBytes]
	}
	if err := it.raw.TermWithReason(reason); err != nil {
		b.log.Warn("bus term failed", "msg_id", it.msg.ID, "err", err)
	}
	b.m.terminated.Inc()
}

// waitInProgress waits d while telling the server the messages are still being worked on, so they
// are not redelivered. It returns false when ctx is done.
func (b *Bus) waitInProgress(ctx context.Context, items []item, d time.Duration) bool {
	tick := max(b.o.AckWait/4, time.Millisecond)
	deadline := time.Now().Add(d)
	for {
		for _, it := range items {
			if err := it.raw.InProgress(); err != nil {
				b.log.Debug("bus in-progress failed", "msg_id", it.msg.ID, "err", err)
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			return ctx.Err() == nil
		}
		if clock.Sleep(ctx, min(left, tick)) != nil {
			return false
		}
	}
}

func (b *Bus) ackAll(items []item) {
	for _, it := range items {
		if err := it.raw.Ack(); err != nil {
			// The message is redelivered after AckWait; processing is idempotent.
			b.log.Warn("bus ack failed", "msg_id", it.msg.ID, "err", err)
		}
	}
}

// nakAll hands messages back for immediate redelivery (to another replica when shutting down).
func (b *Bus) nakAll(items []item) {
	for _, it := range items {
		if err := it.raw.Nak(); err != nil {
			b.log.Debug("bus nak failed", "msg_id", it.msg.ID, "err", err)
		}
	}
}

// decode verifies m's signature against key, then decodes its alerts; an unsigned or badly
// signed message (errBadSignature) is not decoded at all.
func decode(key []byte, m *delivery) (item, error) {
	it := item{raw: m, msg: Message{ID: m.Headers().Get("Nats-Msg-Id")}}
	if md, err := m.Metadata(); err == nil {
		it.msg.Delivered = md.NumDelivered
		it.msg.Published = md.Timestamp
	}
	if it.msg.ID == "" {
		it.msg.ID = fmt.Sprintf("seq-%d", seq(m))
	}
	if err := verify(key, m.Subject(), m.Headers(), m.Data()); err != nil {
		return it, err
	}
	var err error
	if it.msg.Alerts, err = alert.ParseListJSON(m.Data()); err != nil {
		return it, fmt.Errorf("decode alerts: %w", err)
	}
	if len(it.msg.Alerts) == 0 {
		return it, errors.New("decode alerts: no alerts")
	}
	return it, nil
}

func seq(m *delivery) uint64 {
	md, err := m.Metadata()
	if err != nil {
		return 0
	}
	return md.Sequence.Stream
}

func newBackoff(maxInterval time.Duration) *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = retryInitial
	bo.MaxInterval = maxInterval
	bo.Reset()
	return bo
}

// failure tracks whether one retry loop currently counts in Bus.failing.
type failure struct{ on bool }

func (f *failure) set(b *Bus, err error) {
	b.lastErr.Store(&err)
	if !f.on {
		f.on = true
		b.failing.Add(1)
	}
}

// clear reports whether the loop was failing.
func (f *failure) clear(b *Bus) bool {
	if !f.on {
		return false
	}
	f.on = false
	b.failing.Add(-1)
	return true
}
