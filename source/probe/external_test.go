package probe

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/testwait"
)

// Install hints for the Debian packages these tests start.
const (
	redisHint      = "redis-server not found: run 'apt-get install -y redis-server' (or scripts/ensure-deps.sh)"
	prometheusHint = "prometheus not found: run 'apt-get install -y prometheus' (or scripts/ensure-deps.sh)"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startProcess starts a server that dies with the test process and is stopped when the test ends.
func startProcess(t *testing.T, dir, bin string, args ...string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, filepath.Base(bin)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log:\n%s", bin, b)
		}
	})
}

// startRedis starts Debian's redis-server on a free loopback port with requirepass.
func startRedis(t *testing.T, password string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(redisHint)
	}
	dir := t.TempDir()
	port := freePort(t)
	startProcess(t, dir, bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--requirepass", password,
		"--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "yes")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	testwait.UntilDetail(t, 10*time.Second, "redis-server answers", func() (bool, string) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false, err.Error()
		}
		defer c.Close()
		_, _ = c.Write(respCommand("PING"))
		line, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && strings.HasPrefix(line, "-NOAUTH"), line
	})
	return addr
}

func TestRedis(t *testing.T) {
	t.Parallel()
	const password = "SECRET-redis-pw"
	addr := startRedis(t, password)
	pwFile := filepath.Join(t.TempDir(), "redis-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRunner(t, parseProbes(t, fmt.Sprintf(`
  - {name: good, redis: {address: %[1]q, password_file: %[2]q}}
  - {name: wrong, redis: {address: %[1]q, password: SECRET-wrong}}
  - {name: none, redis: {address: %[1]q}}
  - {name: closed, redis: {address: "127.0.0.1:1"}}
`, addr, pwFile)), Options{})
	for _, tc := range []struct {
		probe, reason string
		ok            bool
	}{
		{"good", "", true},
		{"wrong", "AUTH: server error: WRONGPASS", false},
		{"none", "PING: server error: NOAUTH", false},
		{"closed", "connection refused", false},
	} {
		t.Run(tc.probe, func(t *testing.T) {
			res := runOnce(t, r, tc.probe)
			if res.Success != tc.ok || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("%+v, want success %v reason %q", res, tc.ok, tc.reason)
			}
			if tc.ok && (res.Value <= 0 || res.Value > 5) {
				t.Errorf("value = %v, want the latency", res.Value)
			}
			if strings.Contains(res.Reason, "SECRET") {
				t.Errorf("reason leaks the password: %q", res.Reason)
			}
		})
	}
}
