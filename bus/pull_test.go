package bus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sre/responder/bus/bustest"
	"github.com/responder-sre/responder/internal/testwait"
)

func TestPullStatus(t *testing.T) {
	for _, tc := range []struct {
		status, descr string
		end           pullEnd
		err           error // nil: none
	}{
		{"100", "Idle Heartbeat", pullGoesOn, nil},
		{"404", "No Messages", pullOver, nil},
		{"408", "Request Timeout", pullOver, nil},
		{"409", "Batch Completed", pullOwed, nil},
		{"409", "Message Size Exceeds MaxBytes", pullOver, nil},
		{"409", "Leadership Change", pullOver, errPullRefused},
		{"409", "Exceeded MaxWaiting", pullOver, errPullRefused},
		{"409", "Consumer Deleted", pullOver, errConsumerGone},
		{"503", "", pullOver, ErrUnavailable},
		{"400", "Bad Request", pullOver, errAny},
	} {
		m := &nats.Msg{Header: nats.Header{"Status": {tc.status}, "Description": {tc.descr}}}
		end, err := pullStatus(m)
		if end != tc.end {
			t.Errorf("%s %s: end %v, want %v", tc.status, tc.descr, end, tc.end)
		}
		switch {
		case tc.err == nil && err != nil:
			t.Errorf("%s %s: error %v, want none", tc.status, tc.descr, err)
		case errors.Is(tc.err, errAny) && err == nil:
			t.Errorf("%s %s: no error, want one", tc.status, tc.descr)
		case tc.err != nil && !errors.Is(tc.err, errAny) && !errors.Is(err, tc.err):
			t.Errorf("%s %s: error %v, want %v", tc.status, tc.descr, err, tc.err)
		}
	}
}

var errAny = errors.New("any error")

func TestIsDelivery(t *testing.T) {
	for reply, want := range map[string]bool{
		"$JS.ACK.RESPONDER_ALERTS.responder.1.5.5.1764842400000000000.0": true,
		"":             false, // a status
		"_INBOX.abc.1": false,
	} {
		if got := isDelivery(&nats.Msg{Reply: reply}); got != want {
			t.Errorf("isDelivery(reply %q) = %v, want %v", reply, got, want)
		}
	}
}

func TestPullResultDeduped(t *testing.T) {
	d := func(seq, delivered int) *delivery {
		reply := fmt.Sprintf("$JS.ACK.RESPONDER_ALERTS.responder.%d.%d.%d.1764842400000000000.0", delivered, seq, seq*10+delivered)
		return &delivery{m: &nats.Msg{Reply: reply, Sub: &nats.Subscription{}}}
	}
	stale, six, again := d(5, 1), d(6, 1), d(5, 2)
	r := pullResult{got: []*delivery{stale, six, again}}
	got := r.deduped()
	if len(got) != 2 || got[0] != again || got[1] != six {
		t.Errorf("deduped = %v, want the second delivery of 5, then 6", got)
	}
	one := pullResult{got: []*delivery{six}}
	if got := one.deduped(); len(got) != 1 || got[0] != six {
		t.Errorf("deduped of one = %v", got)
	}
}

// TestHoldKeepsLateDeliveries: deliveries that reach the inbox after their pull ended (as when a
// 409 overtakes a replicated consumer's deliveries) wait there for the next pull; hold keeps them
// with this consumer meanwhile, however long that is: a pull made elsewhere after three AckWaits
// gets none of them, and the next pull here returns each once, on its first delivery.
func TestHoldKeepsLateDeliveries(t *testing.T) {
	const ackWait = time.Second
	srv := bustest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "d", AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait})
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPuller(nc, "S", "d", 8, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for i := range 3 {
		if _, err := js.Publish(ctx, "s", []byte{byte('a' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	// A pull whose caller is gone: its deliveries land in the inbox while no pull runs.
	if err := nc.PublishRequest(p.subject, p.prefix+".0", []byte(`{"batch":3}`)); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 5*time.Second, "3 deliveries in the inbox", func() bool { return len(p.ch) >= 3 })

	hctx, cancel := context.WithTimeout(ctx, 3*ackWait)
	p.holdEvery(hctx, ackWait/4) // the time the batch before the next pull takes
	cancel()

	// Another replica's pull: nothing of the three may be redelivered to it.
	other, err := nc.SubscribeSync(nc.NewRespInbox())
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishRequest(p.subject, other.Subject, []byte(`{"batch":3,"expires":500000000}`)); err != nil {
		t.Fatal(err)
	}
	m, err := other.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("the other pull got no answer: %v", err)
	}
	if isDelivery(m) {
		t.Fatalf("the other pull got %q, held by this consumer", m.Data)
	} // else its status (408): nothing for it

	got, err := p.pull(ctx, 8, 1<<20, 5*time.Millisecond)
	if err != nil || len(got) != 3 {
		t.Fatalf("pull = %d deliveries, %v; want the 3 held", len(got), err)
	}
	for _, d := range got {
		if md, err := d.Metadata(); err != nil || md.NumDelivered != 1 {
			t.Errorf("delivery %q: %+v %v, want its first delivery", d.Data(), md, err)
		}
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Until(t, 5*time.Second, "the three acked", func() bool {
		i, err := cons.Info(ctx)
		return err == nil && i.NumAckPending == 0 && i.NumRedelivered == 0
	})
}
