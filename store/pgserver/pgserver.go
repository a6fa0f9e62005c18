// Package pgserver starts throwaway PostgreSQL servers from the local server binaries: for
// `responder rules test` when no database URL is given, and for tests (store/pgtest builds on it).
//
// The contract:
//
//   - A Server has its own temporary directory (data/, the unix socket, postgres.log) and listens
//     on 127.0.0.1 on a free port, with trust authentication for user postgres and fsync,
//     full_page_writes and synchronous_commit off: it is fast and must never hold data anyone
//     wants. New prepares it, Start runs it, Stop stops it (StopImmediate: as in a crash; Start
//     may run it again on the same port and data), Close stops it and removes its directory.
//   - Binaries: $PG_BIN if set, else the newest /usr/lib/postgresql/*/bin. When they are missing,
//     New fails with an error that matches ErrNoBinaries and carries InstallHint.
//   - When the process runs as root the server runs as the postgres user (PostgreSQL refuses root)
//     and its directory is owned by that user.
//   - A server never outlives the process that started it: it is started with a parent-death
//     signal (Linux), and New removes the directories of dead runs it finds.
//   - initdb runs once per PostgreSQL version and machine: the initialised data directory is cached
//     under the user cache directory (the parent of $GOCACHE when set) in responder-pgtest/ and
//     copied for every server; PGTEST_NO_CACHE=1 runs initdb for every server instead. Directories
//     go in $PGTEST_TMPDIR, else /dev/shm when it has room, else the system temporary directory.
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/internal/childproc"
)

// InstallHint says how to get the server binaries.
const InstallHint = "PostgreSQL server binaries not found: run 'apt-get install -y postgresql' (as root)"

// ErrNoBinaries matches the error New returns when the server binaries are missing.
var ErrNoBinaries = errors.New(InstallHint)

const (
	startTimeout = 30 * time.Second
	stopTimeout  = 30 * time.Second
	dirPrefix    = "responder-pgtest-"
)

// Options configure New.
type Options struct {
	// MaxConnections is the server's max_connections (default 100).
	MaxConnections int
}

// Server is one PostgreSQL server with its own data directory and port.
type Server struct {
	bins    binaries
	dir     string // temporary directory: data/, the socket, postgres.log
	port    int
	maxConn int

	mu    sync.Mutex
	proc  *childproc.Process
	admin *pgx.Conn // connection to database postgres, for CREATE/DROP
}

// New prepares a server (data directory from the cached initdb template, a free port) without
// starting it.
func New(o Options) (*Server, error) {
	bins, err := findBinaries()
	if err != nil {
		return nil, err
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 100
	}
	sweepStaleDirs()
	s, err := newDir(bins, o.MaxConnections)
	if err != nil {
		return nil, err
	}
	if err := s.initData(); err != nil {
		s.Remove()
		return nil, err
	}
	if err := chownTree(s.dir, bins.cred); err != nil {
		s.Remove()
		return nil, err
	}
	return s, nil
}

// Start starts a new server and waits until it accepts connections; Close it when done.
func Start(ctx context.Context, o Options) (*Server, error) {
	s, err := New(o)
	if err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		s.Remove()
		return nil, err
	}
	return s, nil
}

// newDir makes the server's directory (owned by this process: owner.pid) and picks its port.
func newDir(b binaries, maxConn int) (*Server, error) {
	dir, err := os.MkdirTemp(baseDir(), dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	s := &Server{bins: b, dir: dir, maxConn: maxConn}
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		s.Remove()
		return nil, fmt.Errorf("owner file: %w", err)
	}
	port, err := freePort()
	if err != nil {
		s.Remove()
		return nil, err
	}
	s.port = port
	return s, nil
}

// URL returns the connection URL of database db on this server.
func (s *Server) URL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port is the TCP port the server listens on (127.0.0.1).
func (s *Server) Port() int { return s.port }

// Dir is the server's temporary directory (data/, the unix socket, postgres.log).
func (s *Server) Dir() string { return s.dir }

// DataDir is the server's data directory.
func (s *Server) DataDir() string { return filepath.Join(s.dir, "data") }

// BinDir is the directory of the server binaries used.
func (s *Server) BinDir() string { return s.bins.dir }

// Major is the PostgreSQL major version (0 if unknown).
func (s *Server) Major() int { return s.bins.major }

func (s *Server) logPath() string { return filepath.Join(s.dir, "postgres.log") }

// CreateDatabase creates database name and returns its URL.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if s.bins.major >= 15 {
		sql += " STRATEGY FILE_COPY" // ~10 ms against ~17 ms for WAL_LOG
	}
	if err := s.Exec(ctx, sql); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return s.URL(name), nil
}

// DropDatabase drops database name, ending its sessions.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	if err := s.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// Exec runs one statement as postgres on database postgres.
func (s *Server) Exec(ctx context.Context, sql string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil || s.admin.IsClosed() {
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		s.admin = conn
	}
	if _, err := s.admin.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// initData fills DataDir from the cached template, making the template first if needed, or runs
// initdb directly when no cache can be used.
func (s *Server) initData() error {
	tmpl, err := cachedTemplate(s.bins)
	if err != nil {
		// The cache is an optimisation: fall back to initdb in place.
		return runInitdb(s.bins, s.dir, s.DataDir())
	}
	if err := copyTree(tmpl, s.DataDir()); err != nil {
		return fmt.Errorf("copy initdb template %s: %w", tmpl, err)
	}
	return nil
}

// Start runs the server (again) and waits until it accepts connections. Starting a running
// server does nothing.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		select {
		case <-s.proc.Exited():
		default:
			return nil // already running
		}
	}
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(s.bins.dir, "postgres"),
		"-D", s.DataDir(),
		"-p", strconv.Itoa(s.port),
		"-k", s.dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "synchronous_commit=off",
		"-c", "max_connections="+strconv.Itoa(s.maxConn),
		"-c", "shared_buffers=32MB",
		"-c", "logging_collector=off",
	)
	cmd.Dir = s.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: s.bins.cred,
		// Immediate shutdown if this process dies without stopping us.
		Pdeathsig: syscall.SIGQUIT,
		Setpgid:   true,
	}
	proc, err := childproc.Start(cmd)
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.proc = proc

	if err := s.waitReady(ctx, proc.Exited()); err != nil {
		_ = proc.Stop(syscall.SIGQUIT, stopTimeout) // immediate shutdown
		return fmt.Errorf("postgres did not become ready: %w\n%s", err, s.LogTail())
	}
	return nil
}

func (s *Server) waitReady(ctx context.Context, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("postgres exited during startup")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(cctx, s.URL("postgres"))
		cancel()
		if err == nil {
			s.admin = conn
			return nil
		}
		lastErr = err
		time.Sleep(10 * time.Millisecond) // polling an external process's readiness
	}
	return fmt.Errorf("timeout after %s: %w", startTimeout, lastErr)
}

// Stop shuts the server down (fast shutdown: open sessions are ended) and waits until it has
// exited. Stopping a stopped server does nothing.
func (s *Server) Stop(ctx context.Context) error { return s.stop(ctx, syscall.SIGINT) }

// StopImmediate stops the server like `pg_ctl stop -m immediate` (SIGQUIT): every process exits at
// once without a checkpoint, as in a crash or a power cut; the next Start recovers from the WAL.
// Stopping a stopped server does nothing.
func (s *Server) StopImmediate(ctx context.Context) error { return s.stop(ctx, syscall.SIGQUIT) }

func (s *Server) stop(ctx context.Context, sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin != nil {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = s.admin.Close(cctx)
		cancel()
		s.admin = nil
	}
	if s.proc == nil {
		return nil
	}
	if err := s.proc.Stop(sig, stopTimeout); err != nil {
		return fmt.Errorf("postgres did not stop within %s; killed\n%s", stopTimeout, s.LogTail())
	}
	return nil
}

// Remove deletes the server's directory (stop it first).
func (s *Server) Remove() { _ = os.RemoveAll(s.dir) }

// Close stops the server and removes its directory.
func (s *Server) Close(ctx context.Context) error {
	err := s.Stop(ctx)
	s.Remove()
	return err
}

// LogTail is the end of the server's log, for error messages.
func (s *Server) LogTail() string {
	b, err := os.ReadFile(s.logPath())
	if err != nil {
		return "(no postgres log: " + err.Error() + ")"
	}
	const tail = 4000 // bytes
	if len(b) > tail {
		b = b[len(b)-tail:]
	}
	return "--- postgres log (tail) ---\n" + string(b)
}

// binaries is where the server binaries are and whom they run as.
type binaries struct {
	dir     string
	version string              // output of postgres --version
	major   int                 // major version, e.g. 15
	cred    *syscall.Credential // nil unless running as root
}

var (
	binsOnce sync.Once
	bins     binaries
	binsErr  error
)

func findBinaries() (binaries, error) {
	binsOnce.Do(func() { bins, binsErr = lookBinaries() })
	return bins, binsErr
}

func lookBinaries() (binaries, error) {
	dir := os.Getenv("PG_BIN")
	if dir == "" {
		dir = newestBinDir("/usr/lib/postgresql")
	}
	var b binaries
	if dir == "" {
		return b, fmt.Errorf("%w (looked in /usr/lib/postgresql/*/bin; set PG_BIN to override)", ErrNoBinaries)
	}
	for _, name := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return b, fmt.Errorf("%w (%s missing in %s)", ErrNoBinaries, name, dir)
		}
	}
	b.dir = dir
	out, err := exec.Command(filepath.Join(dir, "postgres"), "--version").Output()
	if err != nil {
		return b, fmt.Errorf("%s --version: %w", filepath.Join(dir, "postgres"), err)
	}
	b.version = strings.TrimSpace(string(out))
	b.major = majorVersion(b.version)
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return b, fmt.Errorf("running as root needs the postgres user to run the server (it comes with 'apt-get install -y postgresql'): %w", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		b.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}}
	}
	return b, nil
}

// majorVersion parses "postgres (PostgreSQL) 15.18 (Debian ...)" → 15 (0 if unknown).
func majorVersion(v string) int {
	f := strings.Fields(v)
	if len(f) < 3 {
		return 0
	}
	major, _, _ := strings.Cut(f[2], ".")
	n, _ := strconv.Atoi(major)
	return n
}

// newestBinDir returns root/<newest major>/bin holding a postgres binary, or "".
func newestBinDir(root string) string {
	entries, err := os.ReadDir(root)
	if err != nil {
		return ""
	}
	type cand struct {
		ver float64
		dir string
	}
	var cands []cand
	for _, e := range entries {
		v, err := strconv.ParseFloat(e.Name(), 64)
		if err != nil {
			continue
		}
		dir := filepath.Join(root, e.Name(), "bin")
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			cands = append(cands, cand{v, dir})
		}
	}
	if len(cands) == 0 {
		return ""
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].ver > cands[j].ver })
	return cands[0].dir
}

// runInitdb initialises dataDir (inside parent, which it chowns) as the server user.
func runInitdb(b binaries, parent, dataDir string) error {
	if err := chownTree(parent, b.cred); err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(b.dir, "initdb"),
		"-D", dataDir, "-U", "postgres", "--auth=trust",
		"-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions",
		"--wal-segsize=1") // 1 MiB WAL segments: a smaller directory to copy
	cmd.Dir = parent
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: b.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return nil
}

// cachedTemplate returns a data directory made by initdb for this version, creating it once. It
// is never modified after creation.
func cachedTemplate(b binaries) (string, error) {
	if os.Getenv("PGTEST_NO_CACHE") != "" {
		return "", errors.New("cache disabled")
	}
	root, err := cacheRoot()
	if err != nil {
		return "", err
	}
	key := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, b.version)
	final := filepath.Join(root, "responder-pgtest", key+"-v2")
	if _, err := os.Stat(filepath.Join(final, "PG_VERSION")); err == nil {
		return final, nil
	}
	// initdb in a temp dir the server user can reach, then copy into the cache under a temporary
	// name and rename: concurrent creators are safe.
	work, err := os.MkdirTemp(baseDir(), dirPrefix+"initdb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	if err := os.WriteFile(filepath.Join(work, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return "", err
	}
	if err := runInitdb(b, work, filepath.Join(work, "data")); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(final), ".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	staged := filepath.Join(tmp, "data")
	if err := copyTree(filepath.Join(work, "data"), staged); err != nil {
		return "", err
	}
	if err := os.Rename(staged, final); err != nil {
		// Someone else finished first.
		if _, statErr := os.Stat(filepath.Join(final, "PG_VERSION")); statErr == nil {
			return final, nil
		}
		return "", err
	}
	return final, nil
}

// baseDir is where server directories go: $PGTEST_TMPDIR, else /dev/shm when it is a tmpfs with
// room (disk writes dominate start-up on slow disks: copying a data directory takes ~1.2 s on a
// slow disk, 0.06 s in memory), else the system temporary directory.
func baseDir() string {
	if d := os.Getenv("PGTEST_TMPDIR"); d != "" {
		return d
	}
	baseOnce.Do(func() {
		base = os.TempDir()
		var st syscall.Statfs_t
		const minFree = 2 << 30
		if syscall.Statfs("/dev/shm", &st) == nil && uint64(st.Bavail)*uint64(st.Bsize) >= minFree &&
			syscall.Access("/dev/shm", 0o2|0o1) == nil {
			base = "/dev/shm"
		}
	})
	return base
}

var (
	baseOnce sync.Once
	base     string
)

func cacheRoot() (string, error) {
	if gc := os.Getenv("GOCACHE"); gc != "" && gc != "off" {
		return filepath.Dir(gc), nil
	}
	return os.UserCacheDir()
}

// copyTree copies the regular files and directories under src to dst, keeping permission bits
// (PostgreSQL insists on 0700/0750 data directories).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, info.Mode().Perm()); err != nil {
				return err
			}
			return os.Chmod(target, info.Mode().Perm())
		case info.Mode().IsRegular():
			return copyFile(path, target, info.Mode().Perm())
		default:
			return fmt.Errorf("unexpected file type %s: %s", info.Mode().Type(), path)
		}
	})
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := out.ReadFrom(in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// chownTree gives dir and everything under it to cred's user (no-op if nil).
func chownTree(dir string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(path, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
		return nil
	})
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// sweepStaleDirs removes server directories whose owner process and postmaster are both gone (a
// run that died without cleaning up).
func sweepStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(baseDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		owner := readPID(filepath.Join(dir, "owner.pid"))
		if owner == 0 || owner == os.Getpid() || alive(owner) {
			continue
		}
		if pm := readPID(filepath.Join(dir, "data", "postmaster.pid")); pm != 0 && alive(pm) {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0
	}
	return pid
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// StopImmediateCommand is the command line that stops the server like StopImmediate, as an outside
// tool would: `pg_ctl stop -m immediate` on its data directory, through `runuser -u postgres` when
// the server runs as the postgres user (tests as root). Drills inject it as a real fault; the
// server's owner (Stop, Close) then finds it exited.
func (s *Server) StopImmediateCommand() []string {
	argv := []string{filepath.Join(s.bins.dir, "pg_ctl"), "stop", "-D", s.DataDir(), "-m", "immediate", "-w"}
	if s.bins.cred != nil {
		argv = append([]string{"runuser", "-u", "postgres", "--"}, argv...)
	}
	return argv
}
