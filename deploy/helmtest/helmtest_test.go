package helmtest

import (
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
