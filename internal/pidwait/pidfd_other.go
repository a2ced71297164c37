//go:build !linux

package pidwait

import "syscall"

// waitPidfd has no pidfd to wait on outside Linux: Wait falls back to os.Process.Wait.
func waitPidfd(int) (syscall.WaitStatus, error) { return 0, errNoPidfd }

// exitedPidfd returns at once outside Linux: the caller's Wait blocks as it always did.
func exitedPidfd(int) {}
