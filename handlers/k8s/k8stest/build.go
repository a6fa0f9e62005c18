package k8stest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/toolbuild"
)

const (
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
	p, err := binaries(t.Context(), t.Logf)
	if err != nil {
		t.Fatalf("k8stest: %v", err)
	}
	binCache = &p
	return p
}

func binaries(ctx context.Context, logf func(string, ...any)) (Paths, error) {
	root, err := toolbuild.RepoRoot()
	if err != nil {
		return Paths{}, err
	}
	files := map[string]string{}
	for _, g := range groups {
		got, err := buildGroup(ctx, logf, root, g)
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

// buildGroup returns the cached files of g (name → path), building them
// first if any is missing.
func buildGroup(ctx context.Context, logf func(string, ...any), root string, g group) (map[string]string, error) {
	tools := filepath.Join(root, g.dir)
	version, err := toolbuild.ModuleVersion(filepath.Join(tools, "go.mod"), g.module)
	if err != nil {
		return nil, err
	}
	bins := slices.Sorted(maps.Keys(g.bins))
	files := slices.Clone(bins)
	if g.extra != nil {
		files = append(files, "kwok-stages.yaml")
	}
	return toolbuild.Cached(ctx, toolbuild.Spec{
		Name:    g.name,
		Version: version,
		Files:   files,
		Timeout: buildTimeout,
		Logf:    logf,
		Build: func(ctx context.Context, work string) error {
			start := time.Now()
			if out, err := toolbuild.Go(ctx, tools, "mod", "download", g.module).CombinedOutput(); err != nil {
				return fmt.Errorf("go mod download %s (in %s): %w\n%s", g.module, tools, err, out)
			}
			logf("k8stest: %s %s: module download %s", g.name, version, time.Since(start).Round(time.Millisecond))
			if g.extra != nil {
				dir, err := toolbuild.ModuleDir(ctx, tools, g.module)
				if err != nil {
					return err
				}
				if _, err := g.extra(dir, work); err != nil {
					return fmt.Errorf("%s extra files: %w", g.name, err)
				}
			}
			args := []string{"build", "-ldflags=" + g.ldflags(version), "-o", work + string(filepath.Separator)}
			for _, b := range bins {
				args = append(args, g.bins[b])
			}
			if out, err := toolbuild.Go(ctx, tools, args...).CombinedOutput(); err != nil {
				return fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), tools, err, out)
			}
			return nil
		},
	})
}
