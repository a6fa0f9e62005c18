package toolbuild

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestModuleVersion(t *testing.T) {
	const am = "github.com/prometheus/alertmanager"
	for _, tc := range []struct {
		name, gomod, module, want string
	}{
		{"block", "module x\n\nrequire (\n\tgithub.com/a/b v1.0.0\n\tgithub.com/prometheus/alertmanager v0.34.2 // indirect\n)\n", am, "v0.34.2"},
		{"single line", "module x\nrequire github.com/prometheus/alertmanager v0.30.0\n", am, "v0.30.0"},
		{"prefix is not a match", "module x\nrequire github.com/prometheus/alertmanager-x v9.9.9\nrequire github.com/prometheus/alertmanager v0.1.0\n", am, "v0.1.0"},
		{"replace ignored", "module x\nreplace github.com/prometheus/alertmanager v0.34.2 => ../am\nrequire github.com/prometheus/alertmanager v0.34.2\n", am, "v0.34.2"},
		{"missing", "module x\nrequire github.com/a/b v1.0.0\n", am, ""},
		{"single then block", "module example.com/x\n\ngo 1.26\n\nrequire helm.sh/helm/v3 v3.22.0\n\nrequire (\n\tk8s.io/client-go v0.37.0 // indirect\n)\n", "k8s.io/client-go", "v0.37.0"},
		{"outside require block", "module x\nreplace (\n\tk8s.io/api v0.1.0 => ../api\n)\n", "k8s.io/api", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "go.mod")
			if err := os.WriteFile(path, []byte(tc.gomod), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ModuleVersion(path, tc.module)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("got %q, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "toolbuild", "toolbuild.go")); err != nil {
		t.Fatalf("RepoRoot() = %s, which lacks this package: %v", root, err)
	}
}

func TestCachedName(t *testing.T) {
	cases := []struct{ name, version, want string }{
		{"kube-apiserver", "v1.36.3", "kube-apiserver-v1.36.3"},
		{"etcd", "v3.6.16", "etcd-v3.6.16"},
		{"kwok-stages.yaml", "v0.8.0", "kwok-stages-v0.8.0.yaml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := CachedName(tc.name, tc.version); got != tc.want {
				t.Errorf("CachedName(%q, %q) = %q, want %q", tc.name, tc.version, got, tc.want)
			}
		})
	}
}

func TestAllPresent(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	data := filepath.Join(dir, "data.yaml")
	if err := os.WriteFile(data, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{"bin": bin, "data.yaml": data}
	if allPresent(paths) {
		t.Error("a non-executable binary counts as present")
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if !allPresent(paths) {
		t.Error("executable binary and data file not present")
	}
	paths["missing"] = filepath.Join(dir, "missing")
	if allPresent(paths) {
		t.Error("a missing file counts as present")
	}
}

// TestCached builds into a private cache from many goroutines at once
// without the per-process memo (the file lock is per open file description,
// so it serialises them as it does processes): one build, everyone gets the
// same paths, a failed build leaves nothing behind. Cached then answers from
// its memo, even once the files are gone.
func TestCached(t *testing.T) {
	t.Setenv("GOCACHE", filepath.Join(t.TempDir(), "go-build"))
	ctx := context.Background()
	var builds atomic.Int32
	spec := Spec{
		Name:    "tool",
		Version: "v1.2.3",
		Files:   []string{"tool", "tool-data.yaml"},
		Build: func(_ context.Context, work string) error {
			builds.Add(1)
			if err := os.WriteFile(filepath.Join(work, "tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(work, "tool-data.yaml"), []byte("x: 1\n"), 0o644)
		},
		Logf: t.Logf,
	}
	var wg sync.WaitGroup
	results := make([]map[string]string, 8)
	errs := make([]error, len(results))
	for i := range results {
		wg.Go(func() { results[i], errs[i] = cached(ctx, spec) })
	}
	wg.Wait()
	if n := builds.Load(); n != 1 {
		t.Fatalf("%d builds, want 1", n)
	}
	cache, err := CacheDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, got := range results {
		if errs[i] != nil {
			t.Fatalf("Cached #%d: %v", i, errs[i])
		}
		if want := filepath.Join(cache, "tool-v1.2.3"); got["tool"] != want {
			t.Fatalf("Cached #%d: tool at %q, want %q", i, got["tool"], want)
		}
		if want := filepath.Join(cache, "tool-data-v1.2.3.yaml"); got["tool-data.yaml"] != want {
			t.Fatalf("Cached #%d: data at %q, want %q", i, got["tool-data.yaml"], want)
		}
	}
	memoed, err := Cached(ctx, spec)
	if err != nil || memoed["tool"] != results[0]["tool"] {
		t.Fatalf("Cached = %v, %v; want %v", memoed, err, results[0])
	}
	if err := os.Remove(memoed["tool"]); err != nil {
		t.Fatal(err)
	}
	if again, err := Cached(ctx, spec); err != nil || again["tool"] != memoed["tool"] || builds.Load() != 1 {
		t.Fatalf("second Cached = %v, %v after %d builds; want the memo without a build", again, err, builds.Load())
	}
	if !strings.HasSuffix(cache, "responder-tools") {
		t.Errorf("cache dir %s", cache)
	}

	failing := spec
	failing.Version = "v9.9.9"
	boom := errors.New("boom")
	failing.Build = func(context.Context, string) error { return boom }
	if _, err := Cached(ctx, failing); !errors.Is(err, boom) {
		t.Fatalf("failing build: %v, want %v", err, boom)
	}
	left, err := filepath.Glob(filepath.Join(cache, "*v9.9.9*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range left {
		if !strings.HasSuffix(f, ".lock") {
			t.Errorf("failed build left %s", f)
		}
	}
	if work, _ := filepath.Glob(filepath.Join(cache, ".build-*")); len(work) > 0 {
		t.Errorf("work directories left: %v", work)
	}
}
