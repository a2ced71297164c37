package pidwait

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/corralhq/corral/internal/fdloop"
	"golang.org/x/sys/unix"
)

// Notify calls fn, on a goroutine of its own, with p's wait status once p (a child of this
// process) has exited and been reaped. Meanwhile no goroutine waits for it: its pidfd is watched
// by the shared poll loop (fdloop.Default), which starts the goroutine that reaps it. Where no
// pidfd can be had or watched it falls back to a goroutine running Wait. The same rules as Wait
// apply: the caller is the only one that reaps p, and releases p after fn has run.
func Notify(p *os.Process, fn func(syscall.WaitStatus, error)) {
	pid := p.Pid
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			go fn(0, fmt.Errorf("pidwait: pid %d: %w", pid, err))
			return
		}
		go func() { fn(Wait(p)) }()
		return
	}
	var mu sync.Mutex // guards watch and done; held by the reaping step
	var watch *fdloop.Watch
	done := false
	n := &fdloop.Notifier{}
	n.Fn = func() {
		mu.Lock()
		if done {
			mu.Unlock()
			return
		}
		var ws unix.WaitStatus
		var werr error
		for {
			got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				werr = fmt.Errorf("pidwait: wait4 %d: %w", pid, err)
			} else if got == 0 {
				mu.Unlock()
				return // running: the loop wakes this again when the pidfd turns readable
			}
			break
		}
		done = true
		if watch != nil {
			watch.Remove()
		}
		unix.Close(fd)
		mu.Unlock()
		fn(syscall.WaitStatus(ws), werr)
	}
	mu.Lock()
	watch, err = fdloop.Default.Add(fd, n.Notify)
	if err != nil {
		done = true
		mu.Unlock()
		unix.Close(fd)
		go func() { fn(Wait(p)) }()
		return
	}
	mu.Unlock()
	n.Notify() // it may have exited before it was watched
}
