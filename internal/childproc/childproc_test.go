package childproc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/testwait"
)

// helperEnv makes the test binary a parent that starts `sleep` with Start,
// prints its pid and exits without stopping it.
const helperEnv = "CHILDPROC_TEST_PARENT"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		p, err := Start(exec.Command("sleep", "60"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(p.Pid())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// gone polls until process pid has stopped running.
func gone(t *testing.T, pid int) {
	t.Helper()
	testwait.Until(t, 10*time.Second, fmt.Sprintf("process %d gone", pid), func() bool { return !running(pid) })
}

func TestStop(t *testing.T) {
	for _, tc := range []struct {
		name    string
		script  string // prints the pid of a process in the group once ready
		exits   bool   // the shell exits by itself
		killed  bool
		waitErr bool
	}{
		{"exits on the signal", "echo $$; exec sleep 60", false, false, true},
		{"ignores the signal", "trap '' TERM; sleep 60 & echo $!; wait", false, true, true},
		{"leaves a stray child", "sleep 60 & echo $!", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A pipe of our own: Wait would close a cmd.StdoutPipe once the shell exits.
			stdout, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer stdout.Close()
			cmd := exec.Command("sh", "-c", tc.script)
			cmd.Stdout = w
			p, err := Start(cmd)
			w.Close()
			if err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil {
				t.Fatalf("read ready line: %v", err)
			}
			member, err := strconv.Atoi(strings.TrimSpace(line))
			if err != nil {
				t.Fatalf("ready line %q", line)
			}
			// The group is the child's own: asked of the member, which lives on (the shell of
			// "leaves a stray child" may already be gone and reaped).
			if pgid, err := syscall.Getpgid(member); err != nil || pgid != p.Pid() {
				t.Fatalf("pgid of %d: %d, %v; want the child's own group %d", member, pgid, err, p.Pid())
			}
			if tc.exits {
				<-p.Exited() // the shell is gone; sleep stays in the group
			}
			err = p.Stop(syscall.SIGTERM, 300*time.Millisecond)
			if (err != nil) != tc.killed {
				t.Fatalf("Stop = %v, want killed %t", err, tc.killed)
			}
			select {
			case <-p.Exited():
			default:
				t.Fatal("Stop returned before the child exited")
			}
			if (p.Err() != nil) != tc.waitErr {
				t.Fatalf("Err = %v, want an error %t", p.Err(), tc.waitErr)
			}
			gone(t, member)
		})
	}
}

func TestKill(t *testing.T) {
	p, err := Start(exec.Command("sleep", "60"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Err() != nil {
		t.Fatalf("Err before exit = %v", p.Err())
	}
	p.Kill()
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("Err = %v, want killed by SIGKILL", p.Err())
	}
	gone(t, p.Pid())
}

func TestStartKeepsSysProcAttr(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGQUIT, Setsid: false}
	p, err := Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if !cmd.SysProcAttr.Setpgid || cmd.SysProcAttr.Pdeathsig != syscall.SIGQUIT {
		t.Fatalf("SysProcAttr = %+v, want Setpgid and the given Pdeathsig", cmd.SysProcAttr)
	}
	if _, err := Start(exec.Command("/nonexistent/binary")); err == nil {
		t.Fatal("Start of a missing binary succeeded")
	}
}

// TestParentDeath runs the test binary as a parent that starts a child and
// exits: the child must die with it.
func TestParentDeath(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), helperEnv+"=1", "GORACE=atexit_sleep_ms=0") // -race sleeps 1s at exit by default
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper parent: %v", err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("helper parent printed %q", out)
	}
	gone(t, pid)
}

// running reports whether pid exists and is not a zombie (the orphan is
// reaped by init, but maybe not at once).
func running(pid int) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "State:"); ok {
			return !strings.HasPrefix(strings.TrimSpace(v), "Z")
		}
	}
	return false
}
