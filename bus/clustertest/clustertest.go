// Package clustertest runs a real N-node NATS JetStream cluster for tests, as child processes of
// the nats-server binary.
//
// Binary builds github.com/nats-io/nats-server/v2 at the version pinned in tools/natsserver/go.mod
// (which must match responder's go.mod, the embedded server's version) and caches it by version
// under responder-tools/ beside the Go build cache (internal/toolbuild): it is rebuilt only when
// missing, and parallel test processes build it once. Cold (empty Go build cache), the build took
// 3 minutes on 2 shared cores (1 minute of CPU); warm, seconds. `make test` builds it first with
//
//	go test -count=1 -timeout 30m -run '^TestBinary$' ./bus/clustertest
//
// Start runs the nodes on loopback: free ports for clients, routes and monitoring, a store
// directory each, user and password on the client port (and on the routes), and
// `jetstream { sync_interval: always }` (fsync on every write, as the embedded server does). It
// returns once every node is healthy and the cluster has a meta leader. Kill (SIGKILL), Pause and
// Resume (SIGSTOP, SIGCONT) and Restart inject faults into one node; StreamLeader says which node
// leads a stream, MetaLeader which leads the cluster, ConnectedNode which holds a client's
// connection. Every node is killed when the test ends, and the nodes' logs are printed if it
// failed.
//
// Outside a test (the load harness, cmd/responder-bench), BuildBinary and New start the same
// cluster, and Close kills it.
package clustertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sre/responder/internal/childproc"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/internal/toolbuild"
)

const (
	// Module is the nats-server module the binary is built from.
	Module = "github.com/nats-io/nats-server/v2"

	toolsDir     = "tools/natsserver"
	binName      = "nats-server" // cached as nats-server-<version>
	buildTimeout = 15 * time.Minute
	readyTimeout = 30 * time.Second
	// User is the client user every node accepts (with Cluster.Password).
	User = "responder"
)

// Binary returns the path of the nats-server binary at the version pinned in
// tools/natsserver/go.mod, building it if it is not cached yet.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := BuildBinary(t.Context(), t.Logf)
	if err != nil {
		t.Fatalf("clustertest: %v", err)
	}
	return bin
}

// BuildBinary is Binary outside a test: it returns the path of the pinned nats-server, building
// it (and logging the build to logf) if it is not cached yet.
func BuildBinary(ctx context.Context, logf func(format string, args ...any)) (string, error) {
	root, err := toolbuild.RepoRoot()
	if err != nil {
		return "", err
	}
	tools := filepath.Join(root, toolsDir)
	version, err := toolbuild.ModuleVersion(filepath.Join(tools, "go.mod"), Module)
	if err != nil {
		return "", err
	}
	paths, err := toolbuild.Cached(ctx, toolbuild.Spec{
		Name:    binName,
		Version: version,
		Files:   []string{binName},
		Build: func(ctx context.Context, work string) error {
			cmd := toolbuild.Go(ctx, tools, "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(work, binName), Module)
			cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("go build (in %s): %w\n%s", tools, err, out)
			}
			return nil
		},
		Timeout: buildTimeout,
		Logf:    logf,
	})
	if err != nil {
		return "", fmt.Errorf("build nats-server %s: %w", version, err)
	}
	return paths[binName], nil
}

// Node is one nats-server of a Cluster. Its ports and store directory stay the same across
// Restart.
type Node struct {
	// Name is the server name (n1, n2, ...), as stream and meta leader reports name it.
	Name                              string
	ClientPort, ClusterPort, HTTPPort int
	dir, conf, log                    string

	mu     sync.Mutex
	proc   *childproc.Process // nil when killed and not restarted
	paused bool
}

// Cluster is a running JetStream cluster.
type Cluster struct {
	// t is the test of a cluster from Start (nil from New): the methods that fail the test (Node,
	// Kill, Pause, Resume, Restart) need it.
	t    testing.TB
	bin  string
	logf func(format string, args ...any)
	// Password is the client password of User (random per cluster).
	Password string
	Nodes    []*Node
}

// startAttempts is how many times a cluster start is tried: a free port may be taken before a
// node binds it.
const startAttempts = 3

// Start starts an n-node JetStream cluster and waits until every node is healthy and the cluster
// has a meta leader. The nodes are killed when the test ends, and their logs printed if it failed.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("clustertest: %d nodes", n)
	}
	bin := Binary(t)
	c, err := startCluster(t.Context(), bin, n, func() (string, error) { return t.TempDir(), nil }, t.Logf)
	if err != nil {
		t.Fatalf("clustertest: the cluster did not start: %v", err)
	}
	c.t = t
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			c.printLogs()
		}
	})
	return c
}

// New starts an n-node JetStream cluster of the nats-server bin (BuildBinary) outside a test, its
// nodes' stores and logs in a new directory under dir, and waits until every node is healthy and
// the cluster has a meta leader. logf receives the logs of a failed attempt. The caller must Close
// it. Of the methods that fail a test (Node, Kill, Pause, Resume, Restart), none may be called on
// it; URL, URLWithoutCredentials, Password, Nodes, Node.Pid and Close may.
func New(ctx context.Context, bin string, n int, dir string, logf func(format string, args ...any)) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("clustertest: %d nodes", n)
	}
	c, err := startCluster(ctx, bin, n, func() (string, error) { return os.MkdirTemp(dir, "cluster-") }, logf)
	if err != nil {
		return nil, fmt.Errorf("clustertest: the cluster did not start: %w", err)
	}
	return c, nil
}

// Close kills every node (SIGKILL) and waits until each has exited. It may be called more than
// once.
func (c *Cluster) Close() {
	for _, nd := range c.Nodes {
		nd.Kill()
	}
}

// startCluster tries up to startAttempts times to start a cluster, each in a fresh directory from
// newDir.
func startCluster(ctx context.Context, bin string, n int, newDir func() (string, error), logf func(string, ...any)) (*Cluster, error) {
	var lastErr error
	for range startAttempts {
		base, err := newDir()
		if err != nil {
			return nil, err
		}
		c, err := start(ctx, bin, n, base, logf)
		if err == nil {
			return c, nil
		}
		c.Close()
		logf("clustertest: a cluster start failed: %v", err)
		c.printLogs()
		lastErr = err
	}
	return nil, lastErr
}

// start starts one cluster under base. On an error the returned cluster holds the nodes to Close.
func start(ctx context.Context, bin string, n int, base string, logf func(string, ...any)) (*Cluster, error) {
	c := &Cluster{bin: bin, logf: logf, Password: randomHex()}
	routePass := randomHex()
	ports, err := freePorts(3 * n) // all at once, so no two are the same
	if err != nil {
		return c, err
	}
	nodes := make([]*Node, n)
	for i := range nodes {
		dir := filepath.Join(base, "n"+strconv.Itoa(i+1))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return c, err
		}
		nodes[i] = &Node{
			Name: "n" + strconv.Itoa(i+1), ClientPort: ports[3*i], ClusterPort: ports[3*i+1], HTTPPort: ports[3*i+2],
			dir: dir, conf: filepath.Join(dir, "nats.conf"), log: filepath.Join(dir, "nats.log"),
		}
	}
	c.Nodes = nodes
	for _, nd := range c.Nodes {
		if err := os.WriteFile(nd.conf, []byte(c.config(nd, routePass)), 0o600); err != nil {
			return c, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for i, nd := range c.Nodes {
		if err := nd.start(bin); err != nil {
			return c, err
		}
		if i == 0 { // the seed listens before the others dial it
			if err := nd.waitListening(ctx); err != nil {
				return c, err
			}
		}
	}
	for _, nd := range c.Nodes {
		err := nd.waitHealthy(ctx)
		if err == nil {
			err = c.waitMesh(ctx, nd)
		}
		if err != nil {
			return c, err
		}
	}
	if _, err := c.waitMetaLeader(ctx); err != nil {
		return c, err
	}
	return c, nil
}

// config renders nd's configuration file.
func (c *Cluster) config(nd *Node, routePass string) string {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) } // JSON strings are valid here
	// Every node routes to the first (the seed; the seed's route to itself is ignored, but a
	// JetStream cluster needs one configured) and learns the rest from it: no node dials one that
	// is not listening yet, whose retry a second later would churn the routes (and drop what
	// crossed them) after the cluster looked ready. A restarted seed is dialled again by the others.
	routes := []string{q(fmt.Sprintf("nats-route://route:%s@127.0.0.1:%d", routePass, c.Nodes[0].ClusterPort))}
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\nlisten: \"127.0.0.1:%d\"\nhttp: \"127.0.0.1:%d\"\n", nd.Name, nd.ClientPort, nd.HTTPPort)
	fmt.Fprintf(&b, "authorization {\n  users: [ {user: %s, password: %s} ]\n}\n", q(User), q(c.Password))
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %s\n  sync_interval: always\n  max_memory_store: 64MB\n  max_file_store: 8GB\n}\n", q(filepath.Join(nd.dir, "store")))
	fmt.Fprintf(&b, "cluster {\n  name: responder-test\n  listen: \"127.0.0.1:%d\"\n  authorization { user: route, password: %s }\n  routes: [ %s ]\n}\n",
		nd.ClusterPort, q(routePass), strings.Join(routes, ", "))
	return b.String()
}

// URL is the comma-separated client URL list of every node, with User and Password.
func (c *Cluster) URL() string { return c.urls(User + ":" + c.Password + "@") }

// URLWithoutCredentials is the client URL list of every node with no user or password.
func (c *Cluster) URLWithoutCredentials() string { return c.urls("") }

func (c *Cluster) urls(userinfo string) string {
	us := make([]string, len(c.Nodes))
	for i, nd := range c.Nodes {
		us[i] = fmt.Sprintf("nats://%s127.0.0.1:%d", userinfo, nd.ClientPort)
	}
	return strings.Join(us, ",")
}

// Node returns the node named name (n1, n2, ...), failing the test if there is none.
func (c *Cluster) Node(name string) *Node {
	c.t.Helper()
	for _, nd := range c.Nodes {
		if nd.Name == name {
			return nd
		}
	}
	c.t.Fatalf("clustertest: no node %q", name)
	return nil
}

// Kill sends SIGKILL to nd and waits until it has exited.
func (c *Cluster) Kill(nd *Node) {
	c.t.Helper()
	if !nd.Kill() {
		c.t.Fatalf("clustertest: kill %s: not running", nd.Name)
	}
	c.t.Logf("clustertest: killed %s (SIGKILL)", nd.Name)
}

// Pause sends SIGSTOP to nd: it stops answering but keeps its connections open.
func (c *Cluster) Pause(nd *Node) {
	c.t.Helper()
	c.signal(nd, syscall.SIGSTOP, true)
}

// Resume sends SIGCONT to a paused nd.
func (c *Cluster) Resume(nd *Node) {
	c.t.Helper()
	c.signal(nd, syscall.SIGCONT, false)
}

func (c *Cluster) signal(nd *Node, sig syscall.Signal, paused bool) {
	c.t.Helper()
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc == nil {
		c.t.Fatalf("clustertest: %s %s: not running", sig, nd.Name)
	}
	if err := syscall.Kill(nd.proc.Pid(), sig); err != nil {
		c.t.Fatalf("clustertest: %s %s: %v", sig, nd.Name, err)
	}
	nd.paused = paused
	c.t.Logf("clustertest: sent %s to %s", sig, nd.Name)
}

// Restart starts a killed nd again (same ports, same store) and waits until it is healthy: it has
// caught up with the meta leader.
func (c *Cluster) Restart(nd *Node) {
	c.t.Helper()
	if err := nd.start(c.bin); err != nil {
		c.t.Fatalf("clustertest: restart %s: %v", nd.Name, err)
	}
	ctx, cancel := context.WithTimeout(c.t.Context(), readyTimeout)
	defer cancel()
	if err := nd.waitHealthy(ctx); err != nil {
		c.t.Fatalf("clustertest: restart %s: %v", nd.Name, err)
	}
	c.t.Logf("clustertest: restarted %s", nd.Name)
}

// Connect connects as User to the nodes running now (not killed, not paused), so a request never
// waits on a stopped node. The connection is closed when the test ends.
func (c *Cluster) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := c.connect()
	if err != nil {
		t.Fatalf("clustertest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func (c *Cluster) connect() (*nats.Conn, error) {
	var us []string
	for _, nd := range c.Nodes {
		if nd.running() {
			us = append(us, fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", User, c.Password, nd.ClientPort))
		}
	}
	if len(us) == 0 {
		return nil, errors.New("no node is running")
	}
	return nats.Connect(strings.Join(us, ","), nats.Name("clustertest"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
}

// StreamInfo returns stream's info as its leader reports it, retrying (up to 30 s) until one
// answers. It asks through the nodes running now.
func (c *Cluster) StreamInfo(t testing.TB, stream string) *jetstream.StreamInfo {
	t.Helper()
	var info *jetstream.StreamInfo
	testwait.UntilDetail(t, readyTimeout, "the info of stream "+stream, func() (bool, string) {
		var err error
		info, err = c.streamInfo(t.Context(), stream)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return info
}

func (c *Cluster) streamInfo(ctx context.Context, stream string) (*jetstream.StreamInfo, error) {
	nc, err := c.connect()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	return s.Info(ctx)
}

// ConsumerInfo returns the info of stream's durable consumer, asked through the nodes running
// now (within 2 s).
func (c *Cluster) ConsumerInfo(t testing.TB, stream, durable string) (*jetstream.ConsumerInfo, error) {
	t.Helper()
	return c.ConsumerInfoContext(t.Context(), stream, durable)
}

// ConsumerInfoContext is ConsumerInfo outside a test (a cluster from New), within 5 s of ctx.
func (c *Cluster) ConsumerInfoContext(ctx context.Context, stream, durable string) (*jetstream.ConsumerInfo, error) {
	nc, err := c.connect()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, stream, durable)
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	return cons.Info(ctx)
}

// DescribeConsumer describes a consumer's info (or the error of ConsumerInfo) in one line, for a
// failing wait's detail: a stalled consumer shows as ack pending that never moves.
func DescribeConsumer(i *jetstream.ConsumerInfo, err error) string {
	if err != nil {
		return "consumer info: " + err.Error()
	}
	leader := ""
	if i.Cluster != nil {
		leader = i.Cluster.Leader
	}
	return fmt.Sprintf("consumer leader %q delivered %d ack floor %d pending %d ack pending %d redelivered %d waiting %d",
		leader, i.Delivered.Stream, i.AckFloor.Stream, i.NumPending, i.NumAckPending, i.NumRedelivered, i.NumWaiting)
}

// StreamLeader returns the node that leads stream, waiting (up to 30 s) until it has a leader that
// is not one of except (after a kill of the leader: the new one).
func (c *Cluster) StreamLeader(t testing.TB, stream string, except ...*Node) *Node {
	t.Helper()
	var leader string
	testwait.UntilDetail(t, readyTimeout, "a new leader of stream "+stream, func() (bool, string) {
		info, err := c.streamInfo(t.Context(), stream)
		if err != nil {
			return false, err.Error()
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return false, "no leader"
		}
		leader = info.Cluster.Leader
		for _, nd := range except {
			if nd.Name == leader {
				return false, "leader " + leader
			}
		}
		return true, ""
	})
	return c.Node(leader)
}

// ConnectedNode returns the node a client connection named name (nats.Name) is connected to,
// waiting (up to 30 s) until exactly one running node has one; the bus names its connection
// "responder".
func (c *Cluster) ConnectedNode(t testing.TB, name string) *Node {
	t.Helper()
	var found *Node
	testwait.UntilDetail(t, readyTimeout, "one node with a connection named "+name, func() (bool, string) {
		found = nil
		var on []string
		for _, nd := range c.Nodes {
			if !nd.running() {
				continue
			}
			var connz struct {
				Conns []struct {
					Name string `json:"name"`
				} `json:"connections"`
			}
			if err := nd.getJSON(t.Context(), "/connz?limit=1024", &connz); err != nil {
				return false, err.Error()
			}
			for _, cn := range connz.Conns {
				if cn.Name == name {
					found = nd
					on = append(on, nd.Name)
				}
			}
		}
		return len(on) == 1, fmt.Sprintf("on %v", on)
	})
	return found
}

// MetaLeader returns the node that leads the JetStream meta group, waiting (up to 30 s) until the
// cluster has one.
func (c *Cluster) MetaLeader(t testing.TB) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), readyTimeout)
	defer cancel()
	name, err := c.waitMetaLeader(ctx)
	if err != nil {
		t.Fatalf("clustertest: %v", err)
	}
	return c.Node(name)
}

// waitMetaLeader polls the monitoring endpoint of the running nodes until one of them reports a
// meta leader that is itself running.
func (c *Cluster) waitMetaLeader(ctx context.Context) (string, error) {
	var last string
	for {
		for _, nd := range c.Nodes {
			if !nd.running() {
				continue
			}
			var jsz struct {
				Meta *struct {
					Leader string `json:"leader"`
				} `json:"meta_cluster"`
			}
			if err := nd.getJSON(ctx, "/jsz", &jsz); err != nil {
				last = err.Error()
				continue
			}
			if jsz.Meta == nil || jsz.Meta.Leader == "" {
				last = nd.Name + ": no meta leader"
				continue
			}
			for _, l := range c.Nodes {
				if l.Name == jsz.Meta.Leader && l.running() {
					return l.Name, nil
				}
			}
			last = nd.Name + ": meta leader " + jsz.Meta.Leader + " is not running"
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no meta leader: %s", last)
		case <-time.After(50 * time.Millisecond): // polling external processes
		}
	}
}

// start runs nd's server, appending to its log.
func (nd *Node) start(bin string) error {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc != nil {
		return fmt.Errorf("%s is running", nd.Name)
	}
	logf, err := os.OpenFile(nd.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-c", nd.conf)
	cmd.Dir = nd.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := childproc.Start(cmd) // killed if the test binary dies
	if err != nil {
		return err
	}
	nd.proc, nd.paused = p, false
	return nil
}

// Kill sends SIGKILL to nd (paused or not) and waits until it has exited; false if it was not
// running. Unlike Cluster.Kill it never fails the test, so any goroutine may call it.
func (nd *Node) Kill() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc == nil {
		return false
	}
	nd.proc.Kill()
	nd.proc, nd.paused = nil, false
	return true
}

// Pid is the process id of nd's server, 0 when it is not running.
func (nd *Node) Pid() int {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc == nil {
		return 0
	}
	return nd.proc.Pid()
}

// running reports whether nd's process is up and not paused.
func (nd *Node) running() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc == nil || nd.paused {
		return false
	}
	select {
	case <-nd.proc.Exited():
		return false
	default:
		return true
	}
}

// waitHealthy polls nd's /healthz until it answers 200 (JetStream enabled and current).
func (nd *Node) waitHealthy(ctx context.Context) error {
	nd.mu.Lock()
	p := nd.proc
	nd.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%s is not running", nd.Name)
	}
	var last string
	for {
		select {
		case <-p.Exited():
			return fmt.Errorf("%s exited during startup: %w", nd.Name, p.Err())
		default:
		}
		var h struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		err := nd.getJSON(ctx, "/healthz", &h)
		if err == nil && h.Status == "ok" {
			return nil
		}
		last = fmt.Sprint(err, " ", h.Error)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy: %s", nd.Name, last)
		case <-time.After(50 * time.Millisecond): // polling an external process
		}
	}
}

// waitListening polls until nd accepts connections on its route port.
func (nd *Node) waitListening(ctx context.Context) error {
	nd.mu.Lock()
	p := nd.proc
	nd.mu.Unlock()
	for {
		select {
		case <-p.Exited():
			return fmt.Errorf("%s exited during startup: %w", nd.Name, p.Err())
		default:
		}
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", nd.ClusterPort), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not listening for routes: %w", nd.Name, err)
		case <-time.After(20 * time.Millisecond): // polling an external process
		}
	}
}

// waitMesh polls nd's /routez until it has a route to every other node.
func (c *Cluster) waitMesh(ctx context.Context, nd *Node) error {
	var last string
	for {
		var routez struct {
			Routes []struct {
				RemoteName string `json:"remote_name"`
			} `json:"routes"`
		}
		err := nd.getJSON(ctx, "/routez", &routez)
		if err == nil {
			to := map[string]bool{}
			for _, r := range routez.Routes {
				to[r.RemoteName] = true
			}
			var missing []string
			for _, o := range c.Nodes {
				if o != nd && !to[o.Name] {
					missing = append(missing, o.Name)
				}
			}
			if len(missing) == 0 {
				return nil
			}
			last = fmt.Sprintf("no route to %v", missing)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %s", nd.Name, last)
		case <-time.After(50 * time.Millisecond): // polling an external process
		}
	}
}

var monitorClient = &http.Client{Timeout: 2 * time.Second}

func (nd *Node) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", nd.HTTPPort, path), nil)
	if err != nil {
		return err
	}
	resp, err := monitorClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s %s: %s: %w", nd.Name, path, resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", nd.Name, path, resp.Status)
	}
	return nil
}

func (c *Cluster) printLogs() {
	for _, nd := range c.Nodes {
		b, err := os.ReadFile(nd.log)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			c.logf("--- %s log: %v", nd.Name, err)
			continue
		}
		c.logf("--- %s log (client port %d) ---\n%s", nd.Name, nd.ClientPort, tail(b, 200))
	}
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = append([]string{"[...]"}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

func randomHex() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freePorts returns n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
