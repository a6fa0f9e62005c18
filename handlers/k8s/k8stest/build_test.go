package k8stest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCachedName(t *testing.T) {
	cases := []struct{ name, version, want string }{
		{"kube-apiserver", "v1.36.3", "kube-apiserver-v1.36.3"},
		{"etcd", "v3.6.16", "etcd-v3.6.16"},
		{"kwok-stages.yaml", "v0.8.0", "kwok-stages-v0.8.0.yaml"},
	}
	for _, tc := range cases {
		if got := cachedName(tc.name, tc.version); got != tc.want {
			t.Errorf("cachedName(%q, %q) = %q, want %q", tc.name, tc.version, got, tc.want)
		}
	}
}

func TestKubeLDFlags(t *testing.T) {
	got := kubeLDFlags("v1.36.3")
	for _, want := range []string{
		"-X k8s.io/component-base/version.gitVersion=v1.36.3",
		"-X k8s.io/component-base/version.gitMajor=1",
		"-X k8s.io/component-base/version.gitMinor=36",
		"-X k8s.io/client-go/pkg/version.gitVersion=v1.36.3",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("kubeLDFlags lacks %q: %s", want, got)
		}
	}
}

// TestPinnedVersions reads the tools modules the way Binaries does, so a
// go.mod edit that breaks the lookup fails here, not in a cold build.
func TestPinnedVersions(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			v, err := moduleVersion(filepath.Join(root, g.dir, "go.mod"), g.module)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(v, "v") {
				t.Errorf("%s version %q", g.module, v)
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
