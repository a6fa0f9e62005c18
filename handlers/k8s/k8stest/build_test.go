package k8stest

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/responder-sre/responder/internal/toolbuild"
)

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
	root, err := toolbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			v, err := toolbuild.ModuleVersion(filepath.Join(root, g.dir, "go.mod"), g.module)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(v, "v") {
				t.Errorf("%s version %q", g.module, v)
			}
		})
	}
}
