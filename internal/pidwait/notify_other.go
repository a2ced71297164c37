//go:build !linux

package pidwait

import (
	"os"
	"syscall"
)

// Notify calls fn, on a goroutine of its own, with p's wait status once p has exited and been
// reaped (Wait, on a goroutine that waits meanwhile, outside Linux).
func Notify(p *os.Process, fn func(syscall.WaitStatus, error)) {
	go func() { fn(Wait(p)) }()
}
