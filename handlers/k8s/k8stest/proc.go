package k8stest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/responder-sre/responder/internal/childproc"
)

// proc is one running component, in a process group of its own, with its
// stdout and stderr in a log file.
type proc struct {
	name  string
	cmd   *exec.Cmd
	log   string
	child *childproc.Process
}

// startProc runs bin with args in dir, logging to dir/<name>.log. The child
// gets SIGKILL if the test process dies (Pdeathsig), so a crashed test
// binary leaves no control plane behind.
func startProc(dir, name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "# %s %q\n", bin, args)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	child, err := childproc.Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &proc{name: name, cmd: cmd, log: logPath, child: child}, nil
}

// alive reports an error if the process has exited.
func (p *proc) alive() error {
	select {
	case <-p.child.Exited():
		err := p.child.Err()
		if err == nil {
			err = errors.New("exit status 0")
		}
		return fmt.Errorf("%s exited: %w\n%s", p.name, err, tail(p.log, 4096))
	default:
		return nil
	}
}

// stop sends SIGTERM, then SIGKILL to the process group after grace.
func (p *proc) stop(grace time.Duration) {
	if p == nil {
		return
	}
	_ = p.child.Stop(syscall.SIGTERM, grace)
}

// tail returns at most the last n bytes of the file at path.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	prefix := ""
	if fi.Size() > n {
		if _, err := f.Seek(fi.Size()-n, io.SeekStart); err != nil {
			return err.Error()
		}
		prefix = fmt.Sprintf("[... %d bytes before ...]\n", fi.Size()-n)
	}
	b, err := io.ReadAll(f)
	if err != nil && !errors.Is(err, io.EOF) {
		return err.Error()
	}
	return prefix + string(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
