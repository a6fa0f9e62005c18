//go:build !linux

package main

import (
	"os"
	"syscall"
)

// childAttr: without Linux's parent-death signal, a child outlives a harness killed with SIGKILL.
func childAttr() *syscall.SysProcAttr { return nil }

// readUsage: without /proc the harness knows a child's usage only after it exits (exitUsage).
func readUsage(int) procUsage { return procUsage{} }

// exitUsage is the CPU time of an exited child; its peak RSS is unknown here (ru_maxrss has a
// different unit on each system).
func exitUsage(ps *os.ProcessState) procUsage {
	if ps == nil {
		return procUsage{}
	}
	return procUsage{cpu: ps.UserTime() + ps.SystemTime()}
}

// processExists: unknown without /proc, so stale bench databases are kept.
func processExists(int) bool { return true }
