package k8stest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// mainModule is the module whose go.mod marks the repository root.
	mainModule = "github.com/responder-sre/responder"
	// buildTimeout bounds one cold build of one tools module (kube-apiserver
	// and friends take ~10 minutes on 2 cores).
	buildTimeout = 40 * time.Minute
)

// Paths are the control-plane binaries (and kwok's stage definitions) that
// Binaries built or found in the cache.
type Paths struct {
	Etcd              string // etcd (go.etcd.io/etcd/server/v3/etcdmain)
	APIServer         string // kube-apiserver
	ControllerManager string // kube-controller-manager
	Scheduler         string // kube-scheduler
	Kubectl           string // kubectl (not used by the harness; for debugging)
	Kwok              string // kwok, the fake kubelet
	KwokStages        string // multi-document YAML of kwok Stages: node-initialize, pod-ready/complete/delete
}

// group is one tools module and the binaries built from it.
type group struct {
	name   string            // cache key prefix and log name
	dir    string            // tools module, relative to the repository root
	module string            // the pinned module whose version keys the cache
	bins   map[string]string // binary name → main package
	// ldflags returns the linker flags for version (e.g. "v1.36.3").
	ldflags func(version string) string
	// extra writes further files into work (named as in the cache, without
	// the version suffix) from the pinned module's source directory.
	extra func(moduleDir, work string) (names []string, err error)
}

var groups = []group{
	{
		name:   "etcd",
		dir:    "tools/kube/etcd",
		module: "go.etcd.io/etcd/server/v3",
		bins:   map[string]string{"etcd": "github.com/responder-sre/responder/tools/kube/etcd"},
		ldflags: func(string) string {
			return "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module"
		},
	},
	{
		name:    "kwok",
		dir:     "tools/kube/kwok",
		module:  "sigs.k8s.io/kwok",
		bins:    map[string]string{"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
		ldflags: func(string) string { return "-s -w" }, // its version string is set in its source
		extra:   writeKwokStages,
	},
	{
		name:   "kubernetes",
		dir:    "tools/kube",
		module: "k8s.io/kubernetes",
		bins: map[string]string{
			"kube-apiserver":          "k8s.io/kubernetes/cmd/kube-apiserver",
			"kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
			"kube-scheduler":          "k8s.io/kubernetes/cmd/kube-scheduler",
			"kubectl":                 "k8s.io/kubernetes/cmd/kubectl",
		},
		ldflags: kubeLDFlags,
	},
}

// kubeLDFlags are the flags hack/lib/version.sh sets, so the binaries (and
// the API server's /version) report the release they were built from.
func kubeLDFlags(version string) string {
	major, minor := "", ""
	if parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3); len(parts) >= 2 {
		major, minor = parts[0], parts[1]
	}
	flags := []string{"-s", "-w"}
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		flags = append(flags,
			"-X", pkg+".gitVersion="+version,
			"-X", pkg+".gitMajor="+major,
			"-X", pkg+".gitMinor="+minor,
			"-X", pkg+".gitTreeState=clean",
			"-X", pkg+".buildDate=1970-01-01T00:00:00Z",
		)
	}
	return strings.Join(flags, " ")
}

// kwokStageFiles are the stages the harness feeds kwok: nodes become Ready
// at once; pods become Running and Ready, Job pods complete, deleted pods go.
var kwokStageFiles = []string{
	"kustomize/stage/node/fast/node-initialize.yaml",
	"kustomize/stage/pod/fast/pod-ready.yaml",
	"kustomize/stage/pod/fast/pod-complete.yaml",
	"kustomize/stage/pod/fast/pod-delete.yaml",
}

func writeKwokStages(moduleDir, work string) ([]string, error) {
	var b bytes.Buffer
	for _, f := range kwokStageFiles {
		data, err := os.ReadFile(filepath.Join(moduleDir, f))
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(data)
		if !bytes.HasSuffix(data, []byte("\n")) {
			b.WriteByte('\n')
		}
	}
	const name = "kwok-stages.yaml"
	return []string{name}, os.WriteFile(filepath.Join(work, name), b.Bytes(), 0o644)
}

var (
	binMu    sync.Mutex
	binCache *Paths // per process
)

// Binaries returns the control-plane binaries at the versions pinned in
// tools/kube/go.mod (k8s.io/kubernetes), tools/kube/etcd/go.mod and
// tools/kube/kwok/go.mod, building the ones not cached yet. Cold, this takes
// about ten minutes on two cores; the phase times are logged.
func Binaries(t testing.TB) Paths {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	if binCache != nil {
		return *binCache
	}
	p, err := binaries(context.Background(), t.Logf)
	if err != nil {
		t.Fatalf("k8stest: %v", err)
	}
	binCache = &p
	return p
}

func binaries(ctx context.Context, logf func(string, ...any)) (Paths, error) {
	root, err := repoRoot()
	if err != nil {
		return Paths{}, err
	}
	cache, err := cacheDir()
	if err != nil {
		return Paths{}, fmt.Errorf("cache dir: %w", err)
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return Paths{}, err
	}
	files := map[string]string{}
	for _, g := range groups {
		got, err := buildGroup(ctx, logf, root, cache, g)
		if err != nil {
			return Paths{}, fmt.Errorf("build %s: %w", g.name, err)
		}
		for k, v := range got {
			files[k] = v
		}
	}
	return Paths{
		Etcd:              files["etcd"],
		APIServer:         files["kube-apiserver"],
		ControllerManager: files["kube-controller-manager"],
		Scheduler:         files["kube-scheduler"],
		Kubectl:           files["kubectl"],
		Kwok:              files["kwok"],
		KwokStages:        files["kwok-stages.yaml"],
	}, nil
}

// cachedName is the file name of name at version in the cache:
// kube-apiserver-v1.36.3, kwok-stages-v0.8.0.yaml.
func cachedName(name, version string) string {
	if ext := filepath.Ext(name); ext != "" {
		return strings.TrimSuffix(name, ext) + "-" + version + ext
	}
	return name + "-" + version
}

// buildGroup returns the cached files of g (name → path), building them
// first if any is missing. Parallel test processes build once: a file lock,
// then a re-check, then atomic renames into the cache.
func buildGroup(ctx context.Context, logf func(string, ...any), root, cache string, g group) (map[string]string, error) {
	tools := filepath.Join(root, g.dir)
	version, err := moduleVersion(filepath.Join(tools, "go.mod"), g.module)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(g.bins)+1)
	for b := range g.bins {
		names = append(names, b)
	}
	if g.extra != nil {
		names = append(names, "kwok-stages.yaml")
	}
	paths := map[string]string{}
	for _, n := range names {
		paths[n] = filepath.Join(cache, cachedName(n, version))
	}
	if allPresent(paths) {
		return paths, nil
	}
	lock, err := os.OpenFile(filepath.Join(cache, g.name+"-"+version+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
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
		logf("k8stest: %s %s built by another process (waited %s)", g.name, version, time.Since(waitStart).Round(time.Second))
		return paths, nil
	}

	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	work, err := os.MkdirTemp(cache, ".build-"+g.name+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	goCmd := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = tools
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
		return cmd
	}

	start := time.Now()
	if out, err := goCmd("mod", "download", g.module).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go mod download %s (in %s): %w\n%s", g.module, tools, err, out)
	}
	logf("k8stest: %s %s: module download %s", g.name, version, time.Since(start).Round(time.Millisecond))

	if g.extra != nil {
		out, err := goCmd("list", "-m", "-f", "{{.Dir}}", g.module).Output()
		if err != nil {
			return nil, fmt.Errorf("go list -m %s: %w%s", g.module, err, stderrOf(err))
		}
		if _, err := g.extra(strings.TrimSpace(string(out)), work); err != nil {
			return nil, fmt.Errorf("%s extra files: %w", g.name, err)
		}
	}

	args := []string{"build", "-ldflags=" + g.ldflags(version), "-o", work + string(filepath.Separator)}
	for _, b := range sortedKeys(g.bins) {
		args = append(args, g.bins[b])
	}
	start = time.Now()
	if out, err := goCmd(args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), tools, err, out)
	}
	logf("k8stest: %s %s: go build %s: %s", g.name, version, strings.Join(sortedKeys(g.bins), " "), time.Since(start).Round(time.Second))
	for n, final := range paths {
		if err := os.Rename(filepath.Join(work, n), final); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

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

// repoRoot walks up from the working directory to the directory whose go.mod
// declares mainModule.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePath(b) == mainModule {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", mainModule)
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

// moduleVersion returns the version at which the go.mod file at path
// requires module (single-line or block require; replace is ignored).
func moduleVersion(path, module string) (string, error) {
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

// cacheDir is responder-tools/ beside the Go build cache (as amtest's).
func cacheDir() (string, error) {
	gocache := os.Getenv("GOCACHE")
	if gocache == "" {
		if out, err := exec.Command("go", "env", "GOCACHE").Output(); err == nil {
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

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return "\n" + string(ee.Stderr)
	}
	return ""
}
