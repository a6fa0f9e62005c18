package clustertest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/responder-sre/responder/internal/toolbuild"
)

// TestBinary builds (or finds) the pinned nats-server and checks it reports that version. `make
// test` runs it on its own first, so a cold build does not eat the test timeout:
//
//	go test -count=1 -timeout 30m -run '^TestBinary$' ./bus/clustertest
func TestBinary(t *testing.T) {
	bin := Binary(t)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", bin, err, out)
	}
	root, err := toolbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	v, err := toolbuild.ModuleVersion(filepath.Join(root, toolsDir, "go.mod"), Module)
	if err != nil {
		t.Fatal(err)
	}
	if want := "v" + strings.TrimPrefix(v, "v"); !strings.Contains(string(out), want) {
		t.Fatalf("%s --version = %q, want %s", bin, out, want)
	}
	if again := Binary(t); again != bin {
		t.Fatalf("second Binary = %q, want the cached %q", again, bin)
	}
}

// TestToolsModulePinsMainModuleVersion: the cluster runs the nats-server the embedded server is.
func TestToolsModulePinsMainModuleVersion(t *testing.T) {
	root, err := toolbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	mainV, err := toolbuild.ModuleVersion(filepath.Join(root, "go.mod"), Module)
	if err != nil {
		t.Fatal(err)
	}
	toolsV, err := toolbuild.ModuleVersion(filepath.Join(root, toolsDir, "go.mod"), Module)
	if err != nil {
		t.Fatal(err)
	}
	if mainV != toolsV {
		t.Fatalf("%s: go.mod requires %s, %s/go.mod requires %s: they must match", Module, mainV, toolsDir, toolsV)
	}
}
