package browsertest

import (
	"strings"
	"testing"
)

// A missing browser is a failure that says how to install it, never a skip.
func TestLaunchMissingBinary(t *testing.T) {
	t.Setenv("CHROMIUM_BIN", "/nonexistent/chromium")
	b, err := launch(t.Context())
	if err == nil {
		b.Close()
		t.Fatal("launch of a missing binary succeeded")
	}
	if !strings.Contains(err.Error(), InstallHint) || !strings.Contains(err.Error(), "/nonexistent/chromium") {
		t.Errorf("error %q does not name the binary and the install command", err)
	}
}
