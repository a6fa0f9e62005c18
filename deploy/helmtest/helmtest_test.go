package helmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBinary builds (or finds) the pinned helm and checks it reports that version. `make test`
// runs it on its own first, because a cold build takes minutes:
//
//	go test -count=1 -timeout 30m -run '^TestBinary$' ./deploy/helmtest
func TestBinary(t *testing.T) {
	bin := Binary(t)
	out, err := exec.Command(bin, "version", "--short").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	v, err := ModuleVersion(filepath.Join(root, toolsDir, "go.mod"), Module)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), v) {
		t.Fatalf("%s version --short = %q, want %s", bin, out, v)
	}
	if again := Binary(t); again != bin {
		t.Fatalf("second Binary = %q, want the cached %q", again, bin)
	}
}

func TestModuleVersion(t *testing.T) {
	dir := t.TempDir()
	gomod := filepath.Join(dir, "go.mod")
	if err := os.WriteFile(gomod, []byte(`module example.com/x

go 1.26

require helm.sh/helm/v3 v3.22.0

require (
	k8s.io/client-go v0.37.0 // indirect
)
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ module, want string }{
		{"helm.sh/helm/v3", "v3.22.0"},
		{"k8s.io/client-go", "v0.37.0"},
		{"k8s.io/api", ""},
	} {
		t.Run(tc.module, func(t *testing.T) {
			got, err := ModuleVersion(gomod, tc.module)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("ModuleVersion(%s) = %q, want an error", tc.module, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ModuleVersion(%s) = %q, %v; want %q", tc.module, got, err, tc.want)
			}
		})
	}
}

func TestKubeMinor(t *testing.T) {
	for _, tc := range []struct{ in, want string }{{"v0.37.0", "37"}, {"v0.35.3", "35"}, {"v1.2.3", ""}, {"v0", ""}} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := kubeMinor(tc.in)
			if (err != nil) != (tc.want == "") || got != tc.want {
				t.Fatalf("kubeMinor(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}
