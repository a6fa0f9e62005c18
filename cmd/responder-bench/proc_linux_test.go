package main

import (
	"os"
	"testing"
	"time"
)

func TestStatCPU(t *testing.T) {
	// A command name with spaces and parentheses; utime 250 and stime 50 ticks.
	stat := "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 100 1000000 2000 18446744073709551615"
	if got, want := statCPU(stat), 3*time.Second; got != want {
		t.Errorf("statCPU = %v, want %v", got, want)
	}
	if got := statCPU("garbage"); got != 0 {
		t.Errorf("statCPU(garbage) = %v, want 0", got)
	}
}

func TestReadUsageSelf(t *testing.T) {
	u := readUsage(os.Getpid())
	if u.peakRSS <= 0 {
		t.Errorf("peak RSS of this process = %d, want > 0", u.peakRSS)
	}
}
