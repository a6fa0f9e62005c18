package bus

// The embedded server's storage (--storage.path) can fill up or fail. What nats-server does then
// (v2.15, server/filestore.go and stream.go):
//   - A failed write (ENOSPC, EIO, ...) is kept as the file store's write error (fs.werr) and the
//     stream's (mset.werr). Nothing clears it: every later write returns it at once, purges are
//     refused too, until the store is opened again, i.e. until the server restarts.
//   - A standalone server answers no PubAck for a message it failed to store ("likely an IO
//     issue, so only log"), and does not disable JetStream for it (only clustered streams,
//     mirrors and sources do). A publisher therefore waits for its whole timeout, and every
//     later one too.
//   - The server's own health check (Healthz with a stream) reports the write error.
//
// So responder, for the embedded server only:
//   - checks the store's health every storageCheckInterval, and while a publish waits, every
//     storeWatchPeriod: a publish waiting on a failed store gives up at once (ErrUnavailable and
//     ErrStorage: the webhook answers 503), and later publishes are refused before they are sent
//     while the store is failing. Ready fails with a StorageError naming the directory.
//   - recovers by itself: once the file system has restartMinFree bytes free again, it restarts
//     the embedded server in place (same port, same store directory), with a backoff between
//     restarts. An in-process restart is what a pod restart would do to the store (reopen it from
//     the files, which were fsynced before every PubAck) without dropping the webhook listener,
//     the database pool, leases and running actions, and it works outside Kubernetes too; /livez
//     is not failed for a full disk, because restarting the pod cannot free the volume. The
//     client reconnects to the new server; the stream, its deduplication window and the durable
//     consumer with its acks are recovered from the store, as after any restart: nothing accepted
//     is lost, and a message whose ack did not reach the server is delivered again (Process is
//     idempotent). Only when the embedded server cannot be started again for embeddedDownLive
//     does Live fail, so that /livez has the pod restarted.
//
// An external NATS server (nats.url) runs its own storage: its operator must watch it; the bus
// only bounds the wait (the publish timeout) there.

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrStorage is wrapped by a StorageError: the embedded server's store cannot write.
var ErrStorage = errors.New("bus storage cannot be written")

// StorageError says that the embedded JetStream server's store under Dir cannot write (the disk
// is full, read-only, or failing), and why. It wraps ErrStorage.
type StorageError struct {
	Dir string
	Err error
}

func (e *StorageError) Error() string {
	return fmt.Sprintf("storage %s cannot be written: %v", e.Dir, e.Err)
}

func (e *StorageError) Unwrap() []error { return []error{ErrStorage, e.Err} }

const (
	storageCheckInterval = 500 * time.Millisecond
	storeWatchPeriod     = 100 * time.Millisecond
	// storeErrGrace: once the store reports a write error, a waiting publish still waits this
	// long for its PubAck. The stream answers in order, so a message stored before the failure
	// gets its PubAck within it and is not refused (and then stored again by the sender's retry).
	storeErrGrace = 250 * time.Millisecond
	// restartMinFree is the free space (for the store's user) needed before the server is
	// restarted: enough for its metadata and a few messages, far less than any real volume.
	restartMinFree = 1 << 20
	restartMinWait = time.Second
	restartMaxWait = time.Minute
	restartCalm    = time.Minute
)

// embeddedDownLive is how long the embedded server may be down or wedged before Live fails.
const embeddedDownLive = time.Minute

// storage is the state of the embedded server's store, as the storage loop last saw it.
type storage struct {
	err       atomic.Pointer[error] // the store's write error while it lasts
	downSince atomic.Int64          // unix ns since which no server runs (a failed restart); 0 otherwise
	kick      chan struct{}         // a publish saw the store fail: check now
	done      chan struct{}         // closed when the loop returned

	// Used by the loop only.
	lastRestart time.Time
	wait        time.Duration
}

// storageErr is the embedded store's write error, nil while it writes (and when external).
func (b *Bus) storageErr() error {
	if p := b.st.err.Load(); p != nil {
		return *p
	}
	return nil
}

// storageLoop watches the embedded server's store until the Bus closes.
func (b *Bus) storageLoop() {
	defer close(b.st.done)
	t := time.NewTicker(storageCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-b.closing:
			return
		case <-t.C:
		case <-b.st.kick:
		}
		b.checkStorage(time.Now())
	}
}

// checkStorage records the store's health and restarts the server when it failed and there is
// room again.
func (b *Bus) checkStorage(now time.Time) {
	err := b.emb.storeError(b.o.Stream)
	if err == nil {
		if b.st.err.Swap(nil) != nil {
			b.log.Info("bus storage writable again", "dir", b.o.StoreDir)
		}
		if now.Sub(b.st.lastRestart) > restartCalm {
			b.st.wait = 0
		}
		return
	}
	if b.st.err.Swap(&err) == nil {
		b.log.Error("bus storage cannot be written; publishes are refused until it recovers", "dir", b.o.StoreDir, "err", err)
	}
	if errors.Is(err, errWedged) {
		return // a wedged server cannot be shut down; Live asks for a new process
	}
	free, _, serr := diskSpace(b.o.StoreDir)
	if serr != nil || free < restartMinFree || now.Sub(b.st.lastRestart) < b.st.wait {
		return
	}
	b.st.lastRestart = now
	b.st.wait = min(max(2*b.st.wait, restartMinWait), restartMaxWait)
	b.log.Warn("restarting the embedded JetStream server to reopen its store", "dir", b.o.StoreDir, "free_bytes", free)
	b.m.storageRestarts.Inc()
	if rerr := b.emb.restart(); rerr != nil {
		b.st.downSince.CompareAndSwap(0, now.UnixNano())
		b.log.Error("bus embedded server restart failed; retrying", "retry_in", b.st.wait, "err", rerr)
		return
	}
	b.st.downSince.Store(0)
	if err := b.emb.storeError(b.o.Stream); err == nil {
		b.st.err.Store(nil)
		b.log.Info("bus storage writable again after a restart of the embedded server", "dir", b.o.StoreDir)
	}
}

// Live fails only when the embedded server has not been running for embeddedDownLive (its
// restarts keep failing), or has been wedged that long: the process cannot recover by itself
// then, a new one can.
func (b *Bus) Live() error {
	if b.emb == nil {
		return nil
	}
	bound := time.Duration(b.emb.downLive.Load())
	if w := b.emb.wedged(); !w.IsZero() && time.Since(w) > bound {
		return fmt.Errorf("bus: %w, for %s (storage %s)", errWedged, time.Since(w).Round(time.Second), b.o.StoreDir)
	}
	since := b.st.downSince.Load()
	if since == 0 {
		return nil
	}
	if down := time.Since(time.Unix(0, since)); down > bound {
		return fmt.Errorf("bus: the embedded JetStream server could not be restarted for %s (storage %s)", down.Round(time.Second), b.o.StoreDir)
	}
	return nil
}

// publishMsg publishes msg and waits for its PubAck. With the embedded server it also watches
// the store while it waits: a message the store failed to write is never answered, so the wait
// ends (ErrUnavailable, ErrStorage) as soon as the store reports the failure.
func (b *Bus) publishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) error {
	if b.emb == nil {
		if _, err := b.js.PublishMsg(ctx, msg, opts...); err != nil {
			return classify(err)
		}
		return nil
	}
	if err := b.storageErr(); err != nil {
		return fmt.Errorf("bus: publish: %w: %w", ErrUnavailable, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	answered := make(chan struct{})
	defer close(answered)
	go b.watchStore(ctx, cancel, answered)
	if _, err := b.js.PublishMsg(ctx, msg, opts...); err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, ErrStorage) {
			return fmt.Errorf("bus: publish: %w: %w", ErrUnavailable, cause)
		}
		return classify(err)
	}
	return nil
}

// watchStore cancels ctx with the store's error when the store fails before the publish is
// answered.
func (b *Bus) watchStore(ctx context.Context, cancel context.CancelCauseFunc, answered <-chan struct{}) {
	t := time.NewTicker(storeWatchPeriod)
	defer t.Stop()
	for {
		select {
		case <-answered:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := b.emb.storeError(b.o.Stream)
		if err == nil {
			continue
		}
		select {
		case b.st.kick <- struct{}{}:
		default:
		}
		select {
		case <-answered:
			return
		case <-ctx.Done():
			return
		case <-time.After(storeErrGrace):
			cancel(err)
			return
		}
	}
}

// purgeSafe reports whether a purge may write to the embedded store now: not while the store
// fails, nor with less than restartMinFree bytes free. A purge writes tombstones, and nats-server
// (v2.15.2, v2.15.3) deadlocks the stream when that write fails (see errWedged): this narrows the
// window to a disk filling within a millisecond of the check, and Live covers the rest.
func (b *Bus) purgeSafe() bool {
	if b.emb == nil {
		return true
	}
	if b.storageErr() != nil {
		return false
	}
	free, _, err := diskSpace(b.o.StoreDir)
	return err == nil && free >= restartMinFree
}

// diskSpace is the file system's free space (for an unprivileged user, as nats-server counts it)
// and size under dir.
func diskSpace(dir string) (free, size uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("bus: statfs %s: %w", dir, err)
	}
	bsize := uint64(st.Bsize) //nolint:gosec // a block size is positive
	return st.Bavail * bsize, st.Blocks * bsize, nil
}
