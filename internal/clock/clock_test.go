package clock

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	errPaused := errors.New("paused")
	tests := []struct {
		name string
		d    time.Duration
		ctx  func(t *testing.T) context.Context
		want error
	}{
		{name: "full wait", d: time.Millisecond, ctx: func(t *testing.T) context.Context { return t.Context() }},
		{name: "zero", d: 0, ctx: func(t *testing.T) context.Context { return t.Context() }},
		{name: "negative", d: -time.Second, ctx: func(t *testing.T) context.Context { return t.Context() }},
		{name: "already cancelled", d: time.Hour, want: context.Canceled, ctx: func(t *testing.T) context.Context {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			return ctx
		}},
		{name: "zero but cancelled", d: 0, want: context.Canceled, ctx: func(t *testing.T) context.Context {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			return ctx
		}},
		{name: "cancelled while waiting", d: time.Hour, want: context.Canceled, ctx: func(t *testing.T) context.Context {
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(10*time.Millisecond, cancel)
			return ctx
		}},
		{name: "deadline while waiting", d: time.Hour, want: context.DeadlineExceeded, ctx: func(t *testing.T) context.Context {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
			t.Cleanup(cancel)
			return ctx
		}},
		{name: "the cause, not just Canceled", d: time.Hour, want: errPaused, ctx: func(t *testing.T) context.Context {
			ctx, cancel := context.WithCancelCause(t.Context())
			time.AfterFunc(10*time.Millisecond, func() { cancel(errPaused) })
			return ctx
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := Sleep(tt.ctx(t), tt.d)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Sleep = %v, want %v", err, tt.want)
			}
			took := time.Since(start)
			if tt.want == nil && took < tt.d {
				t.Errorf("Sleep returned after %s, before its %s were up", took, tt.d)
			}
			if took > time.Minute {
				t.Errorf("Sleep took %s: it did not return when its context ended", took)
			}
		})
	}
}
