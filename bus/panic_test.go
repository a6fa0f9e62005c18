package bus_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/bus"
	"github.com/responder-sre/responder/bus/bustest"
	"github.com/responder-sre/responder/internal/testwait"
)

// A batch whose processing panics fails like a permanent error: the consumer survives, the good
// messages of the batch are processed once, and the message that makes Process panic is
// redelivered and then dead-lettered with reason internal_error, not lost.
func TestPanickingBatchIsNotLost(t *testing.T) {
	srv := bustest.Start(t)
	var panics atomic.Int32
	b, _ := open(t, bus.Options{URL: srv.URL(), MaxPermanentDeliveries: 3, OnPanic: func() { panics.Add(1) }})
	rec := newRecorder()
	rec.fail = func(msgs []bus.Message) error {
		for _, m := range msgs {
			if m.Alerts[0].Name == "Poison" {
				var labels map[string]string
				labels["boom"] = "1" //nolint:staticcheck // a deliberate bug: assignment to a nil map panics
			}
		}
		return nil
	}
	good := [][]alert.Alert{group("Good1", 1), group("Good2", 2)}
	poison := group("Poison", 1)
	publish(t, b, good[0])
	publish(t, b, poison)
	publish(t, b, good[1])
	consume(t, b, rec)

	testwait.Until(t, settle, "dead letter", func() bool { _, d := rec.count(); return d == 1 })
	testwait.Until(t, settle, "acked", func() bool { n, err := b.Pending(context.Background()); return err == nil && n == 0 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if reason := rec.dead[alert.BatchID(poison)]; !strings.Contains(reason, "internal_error") || !strings.Contains(reason, "nil map") {
		t.Errorf("dead letter reason %q", reason)
	}
	for _, g := range good {
		if n := len(rec.processed[alert.BatchID(g)]); n != 1 {
			t.Errorf("good message processed %d times, want 1", n)
		}
	}
	if n := panics.Load(); n < 3 {
		t.Errorf("OnPanic called %d times, want at least one per delivery of the poison message (3)", n)
	}
}
