package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sre/responder/bus"
)

// BenchmarkPublish compares Bus.Publish (one synchronous PublishMsg per caller, many callers in
// flight, as the webhook does) with raw async publishes of the same bodies on the embedded server
// (fsync always). Groups of 10 alerts.
func BenchmarkPublish(b *testing.B) {
	b.Run("bus.Publish", func(b *testing.B) {
		bb, _ := openB(b)
		var n atomic.Int64
		b.SetParallelism(32)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := bb.Publish(context.Background(), group(fmt.Sprintf("B%d", n.Add(1)), 10)); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("raw-async", func(b *testing.B) {
		bb, _ := openB(b)
		nc, err := nats.Connect(bb.ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
		b.ResetTimer()
		for i := range b.N {
			data, _ := json.Marshal(group(fmt.Sprintf("R%d", i), 10))
			if _, err := js.PublishMsgAsync(&nats.Msg{Subject: bus.DefaultSubject, Data: data}, jetstream.WithMsgID(fmt.Sprint(i)), jetstream.WithStallWait(10*time.Second)); err != nil {
				b.Fatal(err)
			}
		}
		<-js.PublishAsyncComplete()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

func openB(b *testing.B) (*bus.Bus, error) {
	bb, err := bus.Open(context.Background(), bus.Options{StoreDir: b.TempDir(), MaxMsgs: -1, MaxBytes: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bb.Close(context.Background()) })
	return bb, nil
}
