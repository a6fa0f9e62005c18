// Package childproc starts child processes that never outlive the process
// that started them, and stops them.
//
// The contract (Linux):
//
//   - Start starts the command in a process group of its own, with a
//     parent-death signal (SIGKILL unless the command's SysProcAttr names
//     another). The kernel sends that signal when the OS thread that started
//     the child exits, not the process, so every child is started from one
//     goroutine locked to a thread that lives as long as the process.
//   - Start waits for the child in the background: Exited is closed when it
//     has exited, and Err is then the result of exec.Cmd.Wait.
//   - Stop sends a signal to the child, waits a grace period, then kills its
//     whole process group; either way it returns only once the child has
//     exited, and it kills the group once more for strays.
package childproc

import (
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// Process is a started child.
type Process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error     // of Wait, once exited is closed
	strays sync.Once // the group gets its final SIGKILL once: its ID may be reused later
}

// Start starts cmd (as cmd.Start does) in a process group of its own with a
// parent-death signal, keeping the other fields of cmd.SysProcAttr, and waits
// for it in the background. Do not call cmd.Wait.
func Start(cmd *exec.Cmd) (*Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if cmd.SysProcAttr.Pdeathsig == 0 {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := spawn(cmd); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	return p, nil
}

// Pid is the child's process ID, which is also its process group ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the child has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is the result of waiting for the child; nil until Exited is closed.
func (p *Process) Err() error {
	select {
	case <-p.exited:
		return p.err
	default:
		return nil
	}
}

// Stop sends sig to the child (not its group), waits up to grace for it to
// exit, then sends SIGKILL to its process group and waits. It returns an
// error if the child had to be killed. A child that has exited already is
// left alone, but the first Stop still sends its group a SIGKILL for strays.
func (p *Process) Stop(sig syscall.Signal, grace time.Duration) error {
	pgid := p.Pid()
	defer p.strays.Do(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return nil
	case <-t.C:
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.exited
	return fmt.Errorf("did not exit within %s of %s; killed", grace, sig)
}

// Kill sends SIGKILL to the child's process group and waits until the child
// has exited.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.exited
}

var (
	spawnOnce sync.Once
	spawnReqs chan spawnReq
)

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

// spawn starts cmd from the one goroutine locked to a thread that is never
// released, so a parent-death signal fires only when the process dies.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives until exit
			for r := range spawnReqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawnReqs <- spawnReq{cmd, done}
	return <-done
}
