package leader

import (
	"context"
	"time"
)

// RunWhileLeading runs work whenever this elector leads, until ctx ends. work gets a context that
// is cancelled as soon as leadership ends (Leading turns false or the token changes: polled every
// poll), and the fencing token it leads under; it is started again on the next term. Only one work
// runs at a time: a new term waits for the previous work to return. Errors from work are passed to
// onErr (may be nil) and do not stop the loop: while still leading, the next poll starts it again.
func (e *Elector) RunWhileLeading(ctx context.Context, poll time.Duration, work func(ctx context.Context, token int64) error, onErr func(error)) {
	if poll <= 0 {
		poll = time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	var cur *term
	defer func() { cur.stop() }()
	for {
		token, ok := e.Leading()
		if cur != nil && (cur.finished() || !ok || token != cur.token) {
			cur.stop()
			cur = nil
		}
		if ok && cur == nil {
			cur = startTerm(ctx, token, work, onErr)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// term is one run of work under one token.
type term struct {
	token  int64
	cancel context.CancelFunc
	done   chan struct{}
}

func startTerm(ctx context.Context, token int64, work func(context.Context, int64) error, onErr func(error)) *term {
	wctx, cancel := context.WithCancel(ctx)
	t := &term{token: token, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		if err := work(wctx, token); err != nil && wctx.Err() == nil && onErr != nil {
			onErr(err)
		}
	}()
	return t
}

func (t *term) finished() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// stop cancels the term's work and waits for it to return.
func (t *term) stop() {
	if t == nil {
		return
	}
	t.cancel()
	<-t.done
}
