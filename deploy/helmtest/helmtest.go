// Package helmtest runs the real helm binary for the chart tests.
//
// Binary builds helm.sh/helm/v3/cmd/helm at the version pinned in
// tools/helm/go.mod (its own module, so Helm's dependencies stay out of
// responder's go.mod) and caches it by version under responder-tools/ beside
// the Go build cache. It is rebuilt only when missing, and parallel test
// processes build it once (a file lock, then an atomic rename). The build sets
// Helm's version and its default Kubernetes version (from the client-go it is
// built with), as Helm's own Makefile does.
//
// Cold, the build takes minutes: `make test` builds it first with
//
//	go test -count=1 -timeout 30m -run '^TestBinary$' ./deploy/helmtest
package helmtest

import (
	"bufio"
	"bytes"
	"context"
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
	// Module is the Helm module the binary is built from.
	Module = "helm.sh/helm/v3"

	toolsDir     = "tools/helm"
	buildTimeout = 15 * time.Minute
)

var (
	binMu    sync.Mutex
	binPaths = map[string]string{} // version → built binary, per process
)

// Binary returns the path of the helm binary at the version pinned in
// tools/helm/go.mod, building it if it is not cached yet.
func Binary(t testing.TB) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatalf("helmtest: %v", err)
	}
	tools := filepath.Join(root, toolsDir)
	gomod := filepath.Join(tools, "go.mod")
	version, err := ModuleVersion(gomod, Module)
	if err != nil {
		t.Fatalf("helmtest: %v", err)
	}
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := binPaths[version]; ok {
		return p
	}
	clientGo, err := ModuleVersion(gomod, "k8s.io/client-go")
	if err != nil {
		t.Fatalf("helmtest: %v", err)
	}
	p, err := build(t.Context(), tools, version, clientGo)
	if err != nil {
		t.Fatalf("helmtest: build helm %s: %v", version, err)
	}
	binPaths[version] = p
	return p
}

// Run runs helm with args in the repository root and returns its standard
// output; a non-zero exit is an error carrying its standard error.
func Run(ctx context.Context, bin string, args ...string) ([]byte, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = root
	// A private HOME-like tree: no user repositories, plugins or caches leak in.
	tmp, err := os.MkdirTemp("", "helmtest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(tmp, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(tmp, "config"),
		"HELM_DATA_HOME="+filepath.Join(tmp, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stderr.Bytes(), stdout.Bytes())
	}
	return stdout.Bytes(), nil
}

// RepoRoot walks up from the working directory to the directory whose go.mod
// declares the main module.
func RepoRoot() (string, error) {
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

// kubeMinor maps a k8s.io/client-go version v0.N.x to Kubernetes 1.N's minor N.
func kubeMinor(clientGo string) (string, error) {
	parts := strings.Split(strings.TrimPrefix(clientGo, "v"), ".")
	if len(parts) < 2 || parts[0] != "0" || parts[1] == "" {
		return "", fmt.Errorf("unexpected k8s.io/client-go version %q", clientGo)
	}
	return parts[1], nil
}

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

func build(ctx context.Context, tools, version, clientGo string) (string, error) {
	minor, err := kubeMinor(clientGo)
	if err != nil {
		return "", err
	}
	cache, err := cacheDir()
	if err != nil {
		return "", fmt.Errorf("cache dir: %w", err)
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	final := filepath.Join(cache, "helm-"+version)
	if isExecutable(final) {
		return final, nil
	}
	// Serialise builders across processes (parallel test packages).
	lock, err := os.OpenFile(final+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if isExecutable(final) {
		return final, nil
	}

	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	work, err := os.MkdirTemp(cache, ".build-helm-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	tmpBin := filepath.Join(work, "helm")
	ldflags := strings.Join([]string{
		"-s", "-w",
		"-X " + Module + "/internal/version.version=" + version,
		"-X " + Module + "/pkg/lint/rules.k8sVersionMajor=1",
		"-X " + Module + "/pkg/lint/rules.k8sVersionMinor=" + minor,
		"-X " + Module + "/pkg/chartutil.k8sVersionMajor=1",
		"-X " + Module + "/pkg/chartutil.k8sVersionMinor=" + minor,
	}, " ")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags="+ldflags, "-o", tmpBin, Module+"/cmd/helm")
	cmd.Dir = tools
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build (in %s): %w\n%s", tools, err, out)
	}
	if err := os.Rename(tmpBin, final); err != nil {
		return "", err
	}
	return final, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
