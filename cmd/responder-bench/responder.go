package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/responder-sre/responder/app"
)

// childEnv, when set, makes this binary run a responder (the child mode) instead of the harness.
// Its value is the childSpec as JSON.
const childEnv = "RESPONDER_BENCH_RESPONDER"

// childSpec is what the harness tells a child responder.
type childSpec struct {
	ConfigFile  string `json:"config_file"`
	StoragePath string `json:"storage_path"`
	DryRun      bool   `json:"dry_run"`
	// CPUProfile, if set, is profiled from the moment the responder is ready until SIGTERM, before
	// the shutdown starts.
	CPUProfile string `json:"cpu_profile,omitempty"`
	// MemProfile, if set, receives a heap profile taken when the heap in use was at its highest
	// (sampled every peakSampleEvery) while the responder ran.
	MemProfile string `json:"mem_profile,omitempty"`
}

// readyPrefix starts the line a child prints on stdout once it listens: "ready ADDR".
const readyPrefix = "ready "

// childMain runs a responder on the spec until ctx ends (SIGTERM or SIGINT), then shuts it down.
func childMain(ctx context.Context, spec string) int {
	var s childSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, "responder-bench child:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.New(ctx, app.Options{ConfigFile: s.ConfigFile, ListenAddress: "127.0.0.1:0", StoragePath: s.StoragePath,
		DryRun: s.DryRun, Version: "bench", DrainTimeout: 10 * time.Second, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "responder-bench child:", err)
		return 1
	}
	stopProfile, err := startCPUProfile(s.CPUProfile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "responder-bench child: cpu profile:", err)
		return 1
	}
	defer stopProfile()
	stopPeak := startPeakHeapProfile(s.MemProfile)
	defer stopPeak()
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	fmt.Println(readyPrefix + a.Addr())
	select {
	case <-ctx.Done():
	case err := <-done:
		fmt.Fprintln(os.Stderr, "responder-bench child: the responder stopped by itself:", err)
		return 1
	}
	stopProfile() // the profiles cover the phase, not the shutdown
	stopPeak()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "responder-bench child:", err)
		return 1
	}
	return 0
}

// startCPUProfile profiles this process into path ("" profiles nothing). The returned stop may be
// called more than once.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { pprof.StopCPUProfile(); f.Close() }) }, nil
}

// responder is a child responder process, seen from the harness.
type responder struct {
	cmd    *exec.Cmd
	pid    int
	url    string        // the Alertmanager webhook URL
	exited chan struct{} // closed when the process has exited
	err    error         // why it exited, after exited is closed
	once   sync.Once
	usage  procUsage // at stop: peak RSS and CPU time
}

// startResponder starts a child responder on spec and waits until it listens. Every child is
// stopped by its PID: by stop, which the caller defers, and by stopChildren, the harness's last
// defer. The child runs in its own process group (a Ctrl-C reaches the harness, which stops it in
// order) and gets SIGTERM should the harness die without stopping it (Linux).
func startResponder(ctx context.Context, spec childSpec) (*responder, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &responder{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{})}
	track(r)
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), readyPrefix); ok {
				ready <- addr
				continue
			}
			fmt.Println(sc.Text())
		}
		_, _ = io.Copy(io.Discard, stdout)
		r.err = cmd.Wait()
		close(r.exited)
	}()
	select {
	case addr := <-ready:
		r.url = "http://" + addr + "/webhook/alertmanager"
		return r, nil
	case <-r.exited:
		return nil, fmt.Errorf("the responder exited before it was ready: %w", r.exitErr())
	case <-ctx.Done():
		r.stop()
		return nil, ctx.Err()
	case <-time.After(2 * time.Minute):
		r.stop()
		return nil, errors.New("the responder was not ready after 2m")
	}
}

// alive returns an error if the child has exited.
func (r *responder) alive() error {
	select {
	case <-r.exited:
		return fmt.Errorf("the responder (pid %d) exited: %w", r.pid, r.exitErr())
	default:
		return nil
	}
}

// exitErr is why the child exited (after exited is closed).
func (r *responder) exitErr() error {
	if r.err == nil {
		return errors.New("exit status 0")
	}
	return r.err
}

// cpu is the child's CPU time so far (user + system), 0 when unknown.
func (r *responder) cpu() time.Duration { return readUsage(r.pid).cpu }

// stop reads the child's peak RSS and CPU time, then stops it: SIGTERM (the child stops its CPU
// profile and shuts down), and SIGKILL if it has not exited after 20s. It may be called more than
// once; it returns the usage read before the first stop.
func (r *responder) stop() procUsage {
	r.once.Do(func() {
		r.usage = readUsage(r.pid)
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(20 * time.Second):
			fmt.Fprintf(os.Stderr, "responder-bench: the responder (pid %d) did not stop after 20s: killing it\n", r.pid)
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
		untrack(r)
		if r.usage.peakRSS == 0 { // no /proc: the kernel's accounting after the exit
			r.usage = exitUsage(r.cmd.ProcessState)
		}
	})
	return r.usage
}

// children are the child responders not yet stopped.
var children struct {
	sync.Mutex
	set map[*responder]struct{}
}

func track(r *responder) {
	children.Lock()
	defer children.Unlock()
	if children.set == nil {
		children.set = map[*responder]struct{}{}
	}
	children.set[r] = struct{}{}
}

func untrack(r *responder) {
	children.Lock()
	defer children.Unlock()
	delete(children.set, r)
}

// stopChildren stops every child not yet stopped (the harness's last defer).
func stopChildren() {
	children.Lock()
	rs := make([]*responder, 0, len(children.set))
	for r := range children.set {
		rs = append(rs, r)
	}
	children.Unlock()
	for _, r := range rs {
		r.stop()
	}
}

// procUsage is what the harness reads of a child process.
type procUsage struct {
	peakRSS int64 // bytes (VmHWM)
	cpu     time.Duration
}

// childDir makes a directory for one phase's responder under dir.
func childDir(dir, phase string) (string, error) {
	d := filepath.Join(dir, phase)
	return d, os.MkdirAll(d, 0o755)
}

// peakSampleEvery is how often startPeakHeapProfile reads the heap in use.
const peakSampleEvery = 250 * time.Millisecond

// startPeakHeapProfile writes a heap profile to path ("" writes none) each time the heap in use
// reaches a new high, so the file ends holding the profile of the peak. The returned stop may be
// called more than once.
func startPeakHeapProfile(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(peakSampleEvery)
		defer t.Stop()
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var peak uint64
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak+peak/20 { // 5% higher: a new peak worth writing
				peak = v
				writeHeapProfile(path)
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-stopped }) }
}

func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "responder-bench child: heap profile:", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		fmt.Fprintln(os.Stderr, "responder-bench child: heap profile:", err)
	}
}
