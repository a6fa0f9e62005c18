// Package toolbuild builds Go binaries for tests from tools modules of their
// own (so their dependencies stay out of responder's go.mod) and caches them
// by version outside the repository.
//
// The contract:
//
//   - The cache is responder-tools/ beside the Go build cache ($GOCACHE or
//     `go env GOCACHE`), else under the user cache directory. A file is cached
//     as CachedName(name, version): kube-apiserver-v1.36.3,
//     kwok-stages-v0.8.0.yaml. Files without an extension must be executable.
//   - Cached builds only when a file is missing, and remembers its answer
//     for the rest of the process. Parallel test processes
//     build once: a file lock (<name>-<version>.lock in the cache), a
//     re-check, then the build in a temporary directory inside the cache and
//     atomic renames into place.
//   - Phase times (waiting for another builder, the build) go to Spec.Logf.
package toolbuild

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MainModule is the module whose go.mod marks the repository root.
const MainModule = "github.com/responder-sre/responder"

// Spec is one build of one or more files at one version.
type Spec struct {
	// Name names the build in the lock file and the log (e.g. "kubernetes").
	Name string
	// Version keys the cache (e.g. "v1.36.3").
	Version string
	// Files are the names Build writes into its work directory; each is
	// cached as CachedName(file, Version).
	Files []string
	// Build writes Files into work, a fresh directory in the cache that is
	// removed afterwards.
	Build func(ctx context.Context, work string) error
	// Timeout bounds Build (not the wait for another builder); 0: none.
	Timeout time.Duration
	// Logf, if set, gets the phase times.
	Logf func(format string, args ...any)
}

// memo holds, per process, the answer for each name@version.
var memo sync.Map // string → *memoEntry

type memoEntry struct {
	mu    sync.Mutex // serialises the callers for one name@version
	paths map[string]string
}

// Cached returns the cached paths of s.Files (file → path), running s.Build
// first if any is missing. Within a process, calls for one s.Name at
// s.Version are serialised and the answer is remembered.
func Cached(ctx context.Context, s Spec) (map[string]string, error) {
	v, _ := memo.LoadOrStore(s.Name+"@"+s.Version, &memoEntry{})
	e := v.(*memoEntry)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.paths == nil {
		paths, err := cached(ctx, s)
		if err != nil {
			return nil, err
		}
		e.paths = paths
	}
	return maps.Clone(e.paths), nil
}

func cached(ctx context.Context, s Spec) (map[string]string, error) {
	logf := s.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	cache, err := CacheDir(ctx)
	if err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	paths := make(map[string]string, len(s.Files))
	for _, f := range s.Files {
		paths[f] = filepath.Join(cache, CachedName(f, s.Version))
	}
	if allPresent(paths) {
		return paths, nil
	}
	lock, err := os.OpenFile(filepath.Join(cache, s.Name+"-"+s.Version+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	waitStart := time.Now()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // released on close anyway
	if allPresent(paths) {
		logf("toolbuild: %s %s built by another process (waited %s)", s.Name, s.Version, time.Since(waitStart).Round(time.Millisecond))
		return paths, nil
	}

	if s.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	work, err := os.MkdirTemp(cache, ".build-"+s.Name+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	start := time.Now()
	if err := s.Build(ctx, work); err != nil {
		return nil, err
	}
	logf("toolbuild: %s %s: built %s in %s", s.Name, s.Version, strings.Join(s.Files, " "), time.Since(start).Round(time.Second))
	for f, final := range paths {
		if err := os.Rename(filepath.Join(work, f), final); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// CachedName is the file name of name at version in the cache:
// kube-apiserver-v1.36.3, kwok-stages-v0.8.0.yaml.
func CachedName(name, version string) string {
	if ext := filepath.Ext(name); ext != "" {
		return strings.TrimSuffix(name, ext) + "-" + version + ext
	}
	return name + "-" + version
}

// CacheDir is responder-tools/ beside the Go build cache, else in the user
// cache directory.
func CacheDir(ctx context.Context) (string, error) {
	gocache := os.Getenv("GOCACHE")
	if gocache == "" {
		if out, err := exec.CommandContext(ctx, "go", "env", "GOCACHE").Output(); err == nil {
			gocache = strings.TrimSpace(string(out))
		}
	}
	if gocache != "" && gocache != "off" {
		return filepath.Join(filepath.Dir(gocache), "responder-tools"), nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "responder-tools"), nil
}

// allPresent reports whether every path exists as a regular file, executable
// unless its name has an extension.
func allPresent(paths map[string]string) bool {
	for n, p := range paths {
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			return false
		}
		if filepath.Ext(n) == "" && fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// Go is a go command run in the tools module dir, outside any workspace,
// with a read-only module graph and no VCS stamping.
func Go(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
	return cmd
}

// ModuleDir returns the directory of module in the module cache, as the
// tools module in dir requires it (go list -m; it downloads if needed).
func ModuleDir(ctx context.Context, dir, module string) (string, error) {
	out, err := Go(ctx, dir, "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			return "", fmt.Errorf("go list -m %s (in %s): %w\n%s", module, dir, err, ee.Stderr)
		}
		return "", fmt.Errorf("go list -m %s (in %s): %w", module, dir, err)
	}
	d := strings.TrimSpace(string(out))
	if d == "" {
		return "", fmt.Errorf("go list -m %s (in %s): module not downloaded", module, dir)
	}
	return d, nil
}

// RepoRoot walks up from the working directory to the directory whose go.mod
// declares MainModule.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePath(b) == MainModule {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", MainModule)
		}
		dir = parent
	}
}

func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// ModuleVersion returns the version at which the go.mod file at path requires
// module (single-line or block require; replace is ignored).
func ModuleVersion(path, module string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	inBlock := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "//")
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
			continue
		case inBlock && f[0] == ")":
			inBlock = false
			continue
		case f[0] == "require" && len(f) == 2 && f[1] == "(":
			inBlock = true
			continue
		case f[0] == "require":
			f = f[1:]
		case !inBlock:
			continue
		}
		if len(f) >= 2 && f[0] == module {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("%s: no require of %s", path, module)
}
