package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Why the bus pulls on its own instead of with jetstream's Fetch:
//
// A consumer with replicas (every consumer on a JetStream cluster) sends a message to a pull only
// once its group has agreed that it was delivered, but it sends the "409 Batch Completed" that
// ends a pull whose message count is used up at once, ahead of those messages. jetstream's Fetch
// ends at that status and drops its reply subject, so the messages that follow reach nobody:
// they come back only after AckWait, and when they come back as a full pull again they are lost
// again. A backlog of FetchBatch messages stalled the consumer for good (nats-server v2.15.2 sends
// the 408 that ends a pull after its replicated deliveries, not the 409).
//
// The puller keeps one inbox for as long as Consume runs. Each pull replies to a subject of its
// own under it, so a status ends only its own pull, and a message that arrives after its pull
// ended waits in the inbox and starts the next pull's result.

const (
	// pullGrace is how long after a pull's expiry the puller waits for the server's answer before
	// it counts the pull as lost (a server gone away, a request dropped at a leader change).
	pullGrace = time.Second
	// owedGrace is how long a pull ended by "409 Batch Completed" waits for the deliveries the
	// server already sent it (they follow once the consumer's group agreed on them); what comes
	// later starts the next pull's result.
	owedGrace = 250 * time.Millisecond
	// inboxFetches is how many full fetches the inbox holds beyond MaxAckPending (nats.go drops
	// what a full channel cannot take; its slots are pointers, the bytes are bounded per pull).
	inboxFetches = 4
)

var (
	errConsumerGone = errors.New("bus: the durable consumer is gone")
	// errPullRefused is a pull the server ended without messages for a reason that a pull made at
	// once would meet again (Exceeded MaxWaiting, Leadership Change): the caller backs off.
	errPullRefused = errors.New("bus: pull refused")
)

// puller pulls messages of the durable consumer into one inbox.
type puller struct {
	nc      *nats.Conn
	subject string // the consumer's next-message API subject
	prefix  string // each pull replies to prefix.<n>
	sub     *nats.Subscription
	ch      chan *nats.Msg
	pulls   atomic.Uint64

	// mu is held by a pull for its whole call, and by hold.
	mu sync.Mutex
	// backlog are deliveries hold took out of the inbox while no pull ran; the next pull returns
	// them first.
	backlog []*delivery
}

// pullRequest is JetStream's request for the next messages of a pull consumer.
type pullRequest struct {
	Batch    int           `json:"batch"`
	MaxBytes int           `json:"max_bytes,omitempty"`
	Expires  time.Duration `json:"expires,omitempty"`
}

// newPuller subscribes the inbox of a consumer fetching up to batch messages a pull, with at most
// maxAckPending delivered and not acked.
func newPuller(nc *nats.Conn, stream, durable string, batch, maxAckPending int) (*puller, error) {
	p := &puller{
		nc:      nc,
		subject: fmt.Sprintf("$JS.API.CONSUMER.MSG.NEXT.%s.%s", stream, durable),
		prefix:  nc.NewRespInbox(),
		ch:      make(chan *nats.Msg, maxAckPending+inboxFetches*batch),
	}
	var err error
	if p.sub, err = nc.ChanSubscribe(p.prefix+".*", p.ch); err != nil {
		return nil, fmt.Errorf("bus: subscribe the consumer's inbox: %w", err)
	}
	return p, nil
}

// close unsubscribes the inbox and returns the deliveries that were waiting: the caller hands
// them back (Nak), so that another consumer gets them now rather than after AckWait.
func (p *puller) close() []*delivery {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.sub.Unsubscribe()
	p.drainInbox()
	left := p.backlog
	p.backlog = nil
	return left
}

// drainInbox moves the deliveries waiting in the inbox to the backlog (statuses are of pulls that
// ended). p.mu is held.
func (p *puller) drainInbox() {
	for {
		select {
		case m := <-p.ch:
			if isDelivery(m) {
				p.backlog = append(p.backlog, &delivery{m, p.nc})
			}
		default:
			return
		}
	}
}

// hold keeps the deliveries no pull has taken yet with this consumer: it moves the inbox to the
// backlog and tells the server each of them is still being worked on. Deliveries that come after
// their pull ended wait for the next pull, and the batch before it may take long (a store outage
// retried without limit): without this they would be redelivered meanwhile, handled twice. A pull
// running takes them itself: hold then does nothing.
func (p *puller) hold() {
	if !p.mu.TryLock() {
		return
	}
	defer p.mu.Unlock()
	p.drainInbox()
	for _, d := range p.backlog {
		_ = d.InProgress()
	}
}

// holdEvery calls hold every interval until ctx is done.
func (p *puller) holdEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.hold()
		}
	}
}

// pull returns up to n messages and maxBytes bytes. Deliveries already with this consumer (the
// backlog, the inbox) are returned at once; otherwise it asks the server for them, waiting at most
// expires for the first (the server answers at the end of expires when none came), and returns
// when n messages or maxBytes bytes came, when the server ended the pull, or when ctx is done
// (with what came).
func (p *puller) pull(ctx context.Context, n, maxBytes int, expires time.Duration) ([]*delivery, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := pullResult{n: n, maxBytes: maxBytes}
	for len(p.backlog) > 0 && !r.full() {
		r.add(p.backlog[0])
		p.backlog[0] = nil
		p.backlog = p.backlog[1:]
	}
waiting:
	for !r.full() {
		select {
		case m := <-p.ch:
			if isDelivery(m) {
				r.add(&delivery{m, p.nc})
			}
		default:
			break waiting
		}
	}
	if len(r.got) > 0 {
		return r.deduped(), nil
	}

	reply := fmt.Sprintf("%s.%d", p.prefix, p.pulls.Add(1))
	body, err := json.Marshal(pullRequest{Batch: n, MaxBytes: maxBytes, Expires: expires})
	if err != nil {
		return nil, err
	}
	if err := p.nc.PublishRequest(p.subject, reply, body); err != nil {
		return nil, err
	}
	timer := time.NewTimer(expires + pullGrace)
	defer timer.Stop()
	for {
		select {
		case m := <-p.ch:
			if isDelivery(m) {
				if r.add(&delivery{m, p.nc}); r.full() {
					return r.deduped(), nil
				}
				continue
			}
			if m.Subject != reply {
				continue // the end of an earlier pull
			}
			switch end, err := pullStatus(m); end {
			case pullGoesOn:
			case pullOwed:
				// The server sent all n; those not here yet follow its group's agreement.
				timer.Reset(owedGrace)
			default:
				return r.deduped(), err
			}
		case <-timer.C:
			return r.deduped(), nil
		case <-ctx.Done():
			return r.deduped(), nil
		}
	}
}

// pullResult collects a pull's deliveries up to n messages and maxBytes bytes.
type pullResult struct {
	n, maxBytes, size int
	got               []*delivery
}

func (r *pullResult) add(d *delivery) { r.got, r.size = append(r.got, d), r.size+d.m.Size() }
func (r *pullResult) full() bool      { return len(r.got) >= r.n || r.size >= r.maxBytes }

// deduped is the result with one delivery per stream message: a message redelivered while an
// earlier delivery of it still waited with this consumer is there twice, and a batch must not
// hold one message twice. The latest delivery is kept (its reply subject is the one the server
// expects); the other is dropped unanswered.
func (r *pullResult) deduped() []*delivery {
	if len(r.got) < 2 {
		return r.got
	}
	latest := make(map[uint64]int, len(r.got)) // stream sequence → index in out
	out := r.got[:0:0]
	for _, d := range r.got {
		md, err := d.Metadata()
		if err != nil {
			out = append(out, d)
			continue
		}
		i, seen := latest[md.Sequence.Stream]
		if !seen {
			latest[md.Sequence.Stream] = len(out)
			out = append(out, d)
			continue
		}
		if prev, err := out[i].Metadata(); err == nil && md.NumDelivered > prev.NumDelivered {
			out[i] = d
		}
	}
	return out
}

// isDelivery reports whether m is a message of the stream (its reply subject is where it is
// acknowledged) rather than a status of a pull.
func isDelivery(m *nats.Msg) bool {
	return strings.HasPrefix(m.Reply, "$JS.ACK.")
}

// pullEnd is what a status says of the pull it answers.
type pullEnd int

const (
	pullGoesOn pullEnd = iota // a heartbeat
	pullOver                  // no more messages for this pull
	pullOwed                  // Batch Completed: all of them were sent, some may still be on their way
)

// pullStatus reads a status answering a pull; err is set when the pull cannot succeed whatever is
// retried at once (errPullRefused: back off and pull again).
func pullStatus(m *nats.Msg) (pullEnd, error) {
	status, descr := m.Header.Get("Status"), strings.ToLower(m.Header.Get("Description"))
	switch status {
	case "100": // idle heartbeat or flow control
		return pullGoesOn, nil
	case "404", "408": // no messages, request timeout
		return pullOver, nil
	case "409":
		switch {
		case strings.Contains(descr, "batch completed"):
			return pullOwed, nil
		case strings.Contains(descr, "exceeds maxbytes"):
			// The pull's bytes are used up: its end when it took messages (fetchBudget never
			// leaves a message larger than a whole pull).
			return pullOver, nil
		case strings.Contains(descr, "consumer deleted"):
			return pullOver, errConsumerGone
		}
		// Exceeded MaxWaiting, Leadership Change, Server Shutdown.
		return pullOver, fmt.Errorf("%w: %s", errPullRefused, m.Header.Get("Description"))
	case "503":
		return pullOver, fmt.Errorf("bus: pull: %w: no JetStream server answers", ErrUnavailable)
	default:
		return pullOver, fmt.Errorf("bus: pull: status %s %s", status, m.Header.Get("Description"))
	}
}

// delivery is a message of the stream as a pull delivered it, with the acknowledgements
// JetStream understands (published to its reply subject, as jetstream.Msg does).
type delivery struct {
	m  *nats.Msg
	nc *nats.Conn
}

func (d *delivery) Data() []byte         { return d.m.Data }
func (d *delivery) Headers() nats.Header { return d.m.Header }
func (d *delivery) Subject() string      { return d.m.Subject }
func (d *delivery) Ack() error           { return d.reply("+ACK") }
func (d *delivery) Nak() error           { return d.reply("-NAK") }
func (d *delivery) InProgress() error    { return d.reply("+WPI") }
func (d *delivery) TermWithReason(reason string) error {
	return d.reply("+TERM " + reason)
}

// NakWithDelay hands the message back for redelivery after delay.
func (d *delivery) NakWithDelay(delay time.Duration) error {
	return d.reply(fmt.Sprintf(`-NAK {"delay": %d}`, delay.Nanoseconds()))
}

// Metadata is what the reply subject says of the delivery: sequences, delivery count, time.
func (d *delivery) Metadata() (*nats.MsgMetadata, error) { return d.m.Metadata() }

func (d *delivery) reply(body string) error {
	if d.m.Reply == "" {
		return nats.ErrMsgNoReply
	}
	return d.nc.Publish(d.m.Reply, []byte(body))
}
