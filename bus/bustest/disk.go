package bustest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SmallDisk mounts a tmpfs of size bytes on a new temporary directory and returns its path. A full
// tmpfs answers writes with a real ENOSPC from the kernel, which is what a full volume under
// --storage.path does to JetStream's file store. It needs root (CI and the developers' machines
// run tests as root); without it the test fails with the reason, it never skips. The mount is
// removed by t.Cleanup, registered before anything the test opens on it, so it runs last.
func SmallDisk(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("bustest.SmallDisk mounts a tmpfs and needs root: run the test as root (as CI does)")
	}
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Fatalf("bustest.SmallDisk: mount -t tmpfs -o size=%d tmpfs %s: %v", size, dir, err)
	}
	t.Cleanup(func() { unmount(t, dir) })
	return dir
}

func unmount(t testing.TB, dir string) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := syscall.Unmount(dir, 0)
		if err == nil {
			return
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			// Detach it rather than leave it mounted: the kernel frees it once it is unused.
			if derr := syscall.Unmount(dir, syscall.MNT_DETACH); derr != nil {
				t.Errorf("bustest: unmount %s: %v (detach: %v)", dir, err, derr)
			}
			return
		}
		time.Sleep(20 * time.Millisecond) // a file still being closed by the stopped server
	}
}

// Filler keeps a file system full: it writes a file until the kernel answers ENOSPC and keeps
// taking whatever space is freed afterwards (like a runaway log), until Free.
type Filler struct {
	path   string
	cancel context.CancelFunc
	done   chan struct{}
	full   chan struct{}
	once   sync.Once
	err    error
}

// Fill starts filling dir. Full is closed once a write met ENOSPC.
func Fill(t testing.TB, dir string) *Filler {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	f := &Filler{path: filepath.Join(dir, "filler"), cancel: cancel, done: make(chan struct{}), full: make(chan struct{})}
	file, err := os.OpenFile(f.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	go f.run(ctx, file)
	t.Cleanup(func() {
		if err := f.Free(); err != nil {
			t.Error(err)
		}
	})
	return f
}

func (f *Filler) run(ctx context.Context, file *os.File) {
	defer close(f.done)
	defer file.Close()
	chunk := make([]byte, 64<<10)
	small := chunk[:512]
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		_, err := file.Write(chunk)
		if errors.Is(err, syscall.ENOSPC) {
			// Take the last partial chunk's worth too, then poll for space others free.
			for {
				if _, err := file.Write(small); err != nil {
					break
				}
			}
			f.once.Do(func() { close(f.full) })
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
			continue
		}
		if err != nil {
			f.err = fmt.Errorf("bustest: filler: %w", err)
			return
		}
	}
}

// Full is closed once the file system is full.
func (f *Filler) Full() <-chan struct{} { return f.full }

// Free stops filling and removes the file (idempotent).
func (f *Filler) Free() error {
	f.cancel()
	<-f.done
	if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return f.err
}
