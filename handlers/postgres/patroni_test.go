package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/vocab"
)

// Debian's packages: patroni 3.0.2 and etcd 3.4 (Patroni's DCS through etcd's v3 API).
const (
	patroniBin     = "/usr/bin/patroni"
	etcdBin        = "/usr/bin/etcd"
	patroniInstall = "apt-get install -y patroni etcd-server postgresql (as root; scripts/ensure-deps.sh does it)"
)

// pgBinDir is where Patroni finds initdb, postgres, pg_ctl and pg_basebackup.
func pgBinDir(t *testing.T) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(dirs) == 0 {
		t.Fatalf("PostgreSQL server binaries missing: run %s", patroniInstall)
	}
	return filepath.Dir(dirs[len(dirs)-1])
}

// pgCred is the postgres user when the test runs as root (PostgreSQL refuses root), else nil.
func pgCred(t *testing.T) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("running as root needs the postgres user: run %s: %v", patroniInstall, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a child process stopped with SIGTERM (then SIGKILL) when the test ends.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

func startProc(t *testing.T, logPath string, cred *syscall.Credential, dir string, name string, args ...string) *proc {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		_ = os.Chown(logPath, int(cred.Uid), int(cred.Gid))
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "HOME="+dir, "ETCDCTL_API=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	logf.Close()
	p := &proc{cmd: cmd, exited: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *proc) stop(t *testing.T) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		t.Errorf("%s did not stop on SIGTERM; killed", p.cmd.Path)
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return fmt.Sprintf("--- %s ---\n%s", p.log, b)
}

// proxy forwards loopback TCP connections to target; Freeze stops moving bytes (the connections
// stay open, like a network partition), Thaw resumes.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	frozen bool
	thawed chan struct{}
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target, thawed: make(chan struct{})}
	close(p.thawed)
	var wg sync.WaitGroup
	var conns sync.Map
	t.Cleanup(func() {
		l.Close()
		p.Thaw()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			conns.Store(c, true)
			conns.Store(up, true)
			wg.Add(2)
			go func() { defer wg.Done(); p.pipe(up, c) }()
			go func() { defer wg.Done(); p.pipe(c, up) }()
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

func (p *proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := p.thawed
			p.mu.Unlock()
			<-gate
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Freeze holds every byte in flight until Thaw.
func (p *proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.frozen {
		p.frozen, p.thawed = true, make(chan struct{})
	}
}

// Thaw lets bytes through again.
func (p *proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen {
		p.frozen = false
		close(p.thawed)
	}
}

// patroniCluster is etcd and two Patroni members on loopback.
type patroniCluster struct {
	dir     string
	api     map[string]string // member → REST API base URL
	pgPort  map[string]int
	procs   map[string]*proc
	proxy   *proxy // m1's PostgreSQL behind it: m2 replicates from m1 through it
	etcd    *proc
	members []string
}

func startPatroni(t *testing.T) *patroniCluster {
	t.Helper()
	for _, bin := range []string{patroniBin, etcdBin} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s missing: run %s", bin, patroniInstall)
		}
	}
	bin := pgBinDir(t)
	cred := pgCred(t)
	base := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "responder-patroni-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}

	client, peer := freePort(t), freePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	c := &patroniCluster{dir: dir, api: map[string]string{}, pgPort: map[string]int{}, procs: map[string]*proc{}, members: []string{"m1", "m2"}}
	c.etcd = startProc(t, filepath.Join(dir, "etcd.log"), nil, dir, etcdBin,
		"--name", "default", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL, "--log-level", "warn")
	testwait.Until(t, 30*time.Second, "etcd is healthy", func() bool { return httpOK(etcdURL + "/health") })

	for _, m := range c.members {
		c.pgPort[m] = freePort(t)
		c.api[m] = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	}
	c.proxy = startProxy(t, fmt.Sprintf("127.0.0.1:%d", c.pgPort["m1"]))
	for i, m := range c.members {
		connect := fmt.Sprintf("127.0.0.1:%d", c.pgPort[m])
		if m == "m1" {
			connect = c.proxy.addr()
		}
		mdir := filepath.Join(dir, m)
		if err := os.Mkdir(mdir, 0o700); err != nil {
			t.Fatal(err)
		}
		if cred != nil {
			_ = os.Chown(mdir, int(cred.Uid), int(cred.Gid))
		}
		apiHost := strings.TrimPrefix(c.api[m], "http://")
		conf := fmt.Sprintf(`scope: responder-test
name: %[1]s
restapi: {listen: "%[2]s", connect_address: "%[2]s"}
etcd3: {hosts: ["127.0.0.1:%[3]d"]}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 5
    maximum_lag_on_failover: 1073741824
    postgresql:
      use_pg_rewind: false
      parameters: {max_wal_senders: 5, max_replication_slots: 5, wal_keep_size: 128MB, hot_standby: "on"}
  initdb: [{encoding: UTF8}, {auth: trust}, no-sync, {wal-segsize: "1"}]
postgresql:
  listen: "127.0.0.1:%[4]d"
  connect_address: "%[5]s"
  data_dir: %[6]s/data
  bin_dir: %[7]s
  pgpass: %[6]s/pgpass
  authentication:
    superuser: {username: postgres}
    replication: {username: postgres}
  pg_hba: ["local all all trust", "host all all 127.0.0.1/32 trust", "host replication all 127.0.0.1/32 trust"]
  parameters: {unix_socket_directories: "%[6]s", fsync: "off", full_page_writes: "off", shared_buffers: 32MB}
  basebackup: [no-sync]
`, m, apiHost, client, c.pgPort[m], connect, mdir, bin)
		cf := filepath.Join(mdir, "patroni.yml")
		if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if cred != nil {
			_ = os.Chown(cf, int(cred.Uid), int(cred.Gid))
		}
		c.procs[m] = startProc(t, filepath.Join(dir, m+".log"), cred, mdir, patroniBin, cf)
		if i == 0 {
			// m1 bootstraps and leads, so that the replica streams from it through the proxy.
			c.waitUntil(t, 60*time.Second, "m1 leads", func(cs *clusterStatus) bool {
				l := cs.leader()
				return l != nil && l.Name == "m1" && l.isRunning()
			})
		}
	}
	c.waitStreaming(t, "m2")
	return c
}

func httpOK(u string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

func getJSON(u string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

func (c *patroniCluster) status() (*clusterStatus, error) {
	var cs clusterStatus
	for _, m := range c.members {
		if err := getJSON(c.api[m]+"/cluster", &cs); err == nil {
			return &cs, nil
		}
	}
	return nil, fmt.Errorf("no member answers /cluster")
}

// waitUntil waits until cond holds for the cluster's status, failing at once when a Patroni
// exits; on failure it logs the tail of every process's log.
func (c *patroniCluster) waitUntil(t *testing.T, d time.Duration, what string, cond func(*clusterStatus) bool) {
	t.Helper()
	reached := false
	defer func() { // also when UntilDetail or cond ends the test with t.Fatal
		if !reached {
			for _, p := range c.procs {
				t.Log(p.tail())
			}
		}
	}()
	testwait.UntilDetail(t, d, what, func() (bool, string) {
		cs, err := c.status()
		if err == nil && cond(cs) {
			return true, ""
		}
		for m, p := range c.procs {
			select {
			case <-p.exited:
				t.Fatalf("%s: patroni %s exited (last: %v %v)", what, m, cs, err)
			default:
			}
		}
		return false, fmt.Sprintf("%v %v", cs, err)
	})
	reached = true
}

// waitStreaming waits until member m is a running replica that received and replayed all the
// leader's WAL, read live from each member's /patroni (Patroni's /cluster lag comes from the
// DCS and trails).
func (c *patroniCluster) waitStreaming(t *testing.T, m string) {
	t.Helper()
	c.waitUntil(t, 90*time.Second, m+" streams with no lag", func(cs *clusterStatus) bool {
		mm, l := cs.member(m), cs.leader()
		if mm == nil || l == nil || mm.isLeader() || !mm.isRunning() {
			return false
		}
		var ls, ms memberStatus
		if getJSON(c.api[l.Name]+"/patroni", &ls) != nil || getJSON(c.api[m]+"/patroni", &ms) != nil {
			return false
		}
		x := ms.XLog
		return ls.XLog.Location != nil && x.ReceivedLocation != nil && x.ReplayedLocation != nil &&
			*x.ReceivedLocation >= *ls.XLog.Location && *x.ReplayedLocation >= *x.ReceivedLocation
	})
}

func (c *patroniCluster) config(maxLag config.Bytes) config.PostgresHandlerConfig {
	var urls []string
	for _, m := range c.members {
		urls = append(urls, c.api[m])
	}
	return config.PostgresHandlerConfig{Clusters: map[string]config.PostgresCluster{
		"billing": {Patroni: urls, MaxLag: maxLag, RTO: config.Duration(30 * time.Minute)},
	}}
}

func (c *patroniCluster) dsn(m string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.pgPort[m])
}

func patroniAct(t *testing.T, cfg config.PostgresHandlerConfig, name string, params handlers.Params) handlers.Action {
	t.Helper()
	hs, err := New(cfg, Options{PollInterval: 100 * time.Millisecond, ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a, err := handlerNamed(t, hs, name).Build(params)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// onlyPrimary asserts exactly one member answers 200 on /primary, and returns it.
func (c *patroniCluster) onlyPrimary(t *testing.T) string {
	t.Helper()
	var prims []string
	for _, m := range c.members {
		if httpOK(c.api[m] + "/primary") {
			prims = append(prims, m)
		}
	}
	if len(prims) != 1 {
		t.Fatalf("/primary answers 200 on %v, want exactly one", prims)
	}
	return prims[0]
}

// TestPatroni runs a real Patroni cluster (etcd + two members) and the switchover and failover
// handlers against it, in order: switchover refused while the replica lags beyond max_lag (its
// replication frozen at a proxy), switchover m1 → m2, failover of the paused cluster m2 → m1.
func TestPatroni(t *testing.T) {
	start := time.Now()
	c := startPatroni(t)
	t.Logf("Patroni cluster up (etcd, m1 leader, m2 streaming) in %s", time.Since(start))
	cfg := c.config(1_000_000)

	t.Run("switchover refused beyond max_lag", func(t *testing.T) {
		c.proxy.Freeze()
		sqlExec(t, c.dsn("m1"), `CREATE TABLE lagging AS SELECT repeat('x', 1000) AS s FROM generate_series(1, 3000)`)
		testwait.Until(t, 30*time.Second, "the leader is 1MB ahead of what m2 received", func() bool {
			var l, r memberStatus
			return getJSON(c.api["m1"]+"/patroni", &l) == nil && getJSON(c.api["m2"]+"/patroni", &r) == nil &&
				l.XLog.Location != nil && r.XLog.ReceivedLocation != nil && *l.XLog.Location-*r.XLog.ReceivedLocation > 1_000_000
		})
		a := patroniAct(t, cfg, SwitchoverName, handlers.Params{"cluster": "billing", "candidate": "m2"})
		res, err := a.Do(t.Context(), handlers.Invocation{}, alert.Alert{})
		wantReason(t, err, vocab.ReasonClientError, "beyond max_lag 1MB")
		wantDetail(t, res, "candidate received")
		t.Logf("refused:\n%s", res.Detail)
		if got := c.onlyPrimary(t); got != "m1" {
			t.Fatalf("primary is %s after a refused switchover", got)
		}
		c.proxy.Thaw()
		c.waitStreaming(t, "m2")
	})

	t.Run("switchover", func(t *testing.T) {
		a := patroniAct(t, cfg, SwitchoverName, handlers.Params{"cluster": "billing"})
		if err := a.Check(t.Context(), alert.Alert{}); err != nil {
			t.Fatalf("Check: %v", err)
		}
		al := alert.Alert{StartsAt: time.Now().Add(-time.Minute)}
		began := time.Now()
		res, err := a.Do(t.Context(), handlers.Invocation{}, al)
		if err != nil {
			t.Fatalf("Do: %v\n%s", err, res.Detail)
		}
		t.Logf("switchover verified in %s:\n%s", time.Since(began), res.Detail)
		wantDetail(t, res, "m2: received lag", "POST", "exactly one member answers 200 on /primary: m2", "within rto")
		if got := c.onlyPrimary(t); got != "m2" {
			t.Fatalf("primary is %s, want m2", got)
		}
		if f := res.Fields; f["new_primary_name"] != "m2" || f["new_primary"] == nil || f["new_primary"] == "" {
			t.Errorf("result fields %v, want m2 and its address", f)
		} else if tl, _ := f["timeline"].(int); tl < 2 {
			t.Errorf("result fields %v: timeline %d, want a new one", f, tl)
		}
		sqlExec(t, c.dsn("m2"), `CREATE TABLE after_switchover (id int)`)

		// Again for the same alert, once Patroni has written the leader change to /history (it
		// does so a loop or two after the promotion): verify only.
		testwait.UntilDetail(t, 30*time.Second, "Patroni records the switchover in /history", func() (bool, string) {
			var hist [][]any
			resp, err := http.Get(c.api["m2"] + "/history")
			if err == nil {
				err = json.NewDecoder(resp.Body).Decode(&hist)
				resp.Body.Close()
			}
			return err == nil && len(hist) > 0, fmt.Sprintf("%v %v", hist, err)
		})
		res, err = a.Do(t.Context(), handlers.Invocation{}, al)
		if err != nil {
			t.Fatalf("second Do: %v\n%s", err, res.Detail)
		}
		wantDetail(t, res, "verify only")
		if strings.Contains(res.Detail, "POST") {
			t.Errorf("second Do switched over again:\n%s", res.Detail)
		}
		if got := c.onlyPrimary(t); got != "m2" {
			t.Fatalf("primary is %s after the second Do, want m2", got)
		}
		c.waitStreaming(t, "m1")
	})

	t.Run("failover of a paused cluster", func(t *testing.T) {
		fo := patroniAct(t, cfg, FailoverName, handlers.Params{"cluster": "billing", "candidate": "m1"})
		res, err := fo.Do(t.Context(), handlers.Invocation{}, alert.Alert{})
		wantReason(t, err, vocab.ReasonClientError, "use postgres.switchover")
		c.waitStreaming(t, "m1")
		patchPause(t, c.api["m2"], true)
		c.waitUntil(t, 30*time.Second, "the cluster is paused", func(cs *clusterStatus) bool { return cs.Pause })
		c.waitStreaming(t, "m1")
		t.Cleanup(func() { patchPause(t, c.api["m1"], false) })

		if err := fo.Check(t.Context(), alert.Alert{}); err != nil {
			t.Fatalf("Check: %v", err)
		}
		// What the approver sees before deciding: the candidate's last received LSN.
		desc, err := fo.(handlers.Describer).Describe(t.Context())
		if err != nil || !strings.Contains(desc, "m1: last received LSN") || strings.Contains(desc, "would refuse") {
			t.Fatalf("Describe = %q, %v", desc, err)
		}
		began := time.Now()
		res, err = fo.Do(t.Context(), handlers.Invocation{}, alert.Alert{StartsAt: time.Now().Add(-2 * time.Minute)})
		if err != nil {
			t.Fatalf("Do: %v\n%s", err, res.Detail)
		}
		t.Logf("failover verified in %s:\n%s", time.Since(began), res.Detail)
		wantDetail(t, res, "m1: last received LSN", "POST", "exactly one member answers 200 on /primary: m1")
		if got := c.onlyPrimary(t); got != "m1" {
			t.Fatalf("primary is %s, want m1", got)
		}
	})
	t.Logf("TestPatroni total %s", time.Since(start))
}

func patchPause(t *testing.T, api string, pause bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, api+"/config", strings.NewReader(fmt.Sprintf(`{"pause": %t}`, pause)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("PATCH /config pause=%t: %v", pause, err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("PATCH /config pause=%t: %s", pause, resp.Status)
	}
}
