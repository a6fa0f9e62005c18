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
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/toolbuild"
)

const (
	// Module is the Helm module the binary is built from.
	Module = "helm.sh/helm/v3"

	toolsDir     = "tools/helm"
	binName      = "helm" // cached as helm-<version>
	buildTimeout = 15 * time.Minute
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
	clientGo, err := ModuleVersion(gomod, "k8s.io/client-go")
	if err != nil {
		t.Fatalf("helmtest: %v", err)
	}
	minor, err := kubeMinor(clientGo)
	if err != nil {
		t.Fatalf("helmtest: %v", err)
	}
	paths, err := toolbuild.Cached(t.Context(), toolbuild.Spec{
		Name:    binName,
		Version: version,
		Files:   []string{binName},
		Build: func(ctx context.Context, work string) error {
			return build(ctx, tools, version, minor, filepath.Join(work, binName))
		},
		Timeout: buildTimeout,
		Logf:    t.Logf,
	})
	if err != nil {
		t.Fatalf("helmtest: build helm %s: %v", version, err)
	}
	return paths[binName]
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
func RepoRoot() (string, error) { return toolbuild.RepoRoot() }

// ModuleVersion returns the version at which the go.mod file at path requires
// module (single-line or block require; replace is ignored).
func ModuleVersion(path, module string) (string, error) {
	return toolbuild.ModuleVersion(path, module)
}

// kubeMinor maps a k8s.io/client-go version v0.N.x to Kubernetes 1.N's minor N.
func kubeMinor(clientGo string) (string, error) {
	parts := strings.Split(strings.TrimPrefix(clientGo, "v"), ".")
	if len(parts) < 2 || parts[0] != "0" || parts[1] == "" {
		return "", fmt.Errorf("unexpected k8s.io/client-go version %q", clientGo)
	}
	return parts[1], nil
}

// build writes helm at version, reporting Kubernetes 1.<minor> as its
// default, to bin.
func build(ctx context.Context, tools, version, minor, bin string) error {
	ldflags := strings.Join([]string{
		"-s", "-w",
		"-X " + Module + "/internal/version.version=" + version,
		"-X " + Module + "/pkg/lint/rules.k8sVersionMajor=1",
		"-X " + Module + "/pkg/lint/rules.k8sVersionMinor=" + minor,
		"-X " + Module + "/pkg/chartutil.k8sVersionMajor=1",
		"-X " + Module + "/pkg/chartutil.k8sVersionMinor=" + minor,
	}, " ")
	cmd := toolbuild.Go(ctx, tools, "build", "-trimpath", "-ldflags="+ldflags, "-o", bin, Module+"/cmd/helm")
	cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build (in %s): %w\n%s", tools, err, out)
	}
	return nil
}
