package keeper

import (
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// OnKeeperDeath is the daemon's hook for the death of its keeper. Call it once at start-up in a
// daemon the keeper started; stop then runs once, in its own goroutine, as soon as the keeper has
// died (at once if it already has). stop must shut the daemon down cleanly, stopping every app:
// with no keeper, nothing would hold the fds or reap the apps if the daemon died next, and a new
// daemon could not re-adopt them. The keeper also starts the daemon with PR_SET_PDEATHSIG =
// DeathSignal (SIGTERM), so a daemon that never calls the hook still shuts down; the hook tells
// the daemon why, and works even if the signal is ignored or handled otherwise.
//
// It watches a pidfd of the keeper through the runtime's poller: no thread, no polling. cancel
// stops watching. It returns ErrNoKeeper in a process the keeper did not start.
func OnKeeperDeath(stop func()) (cancel func(), err error) {
	v := os.Getenv(EnvPID)
	if v == "" {
		return nil, ErrNoKeeper
	}
	kpid, err := strconv.Atoi(v)
	if err != nil || kpid <= 1 {
		return nil, fmt.Errorf("keeper: bad $%s %q", EnvPID, v)
	}
	gone := func() (func(), error) { go stop(); return func() {}, nil }
	if os.Getppid() != kpid { // re-parented already: the keeper is dead
		return gone()
	}
	fd, err := unix.PidfdOpen(kpid, unix.PIDFD_NONBLOCK)
	if err == unix.ESRCH {
		return gone()
	}
	if err != nil {
		return nil, fmt.Errorf("keeper: pidfd_open(%d): %w", kpid, err)
	}
	// The keeper may have died and its pid been reused between Getppid and pidfd_open: while the
	// keeper is still our parent, the pidfd is certainly its.
	if os.Getppid() != kpid {
		unix.Close(fd)
		return gone()
	}
	f := os.NewFile(uintptr(fd), "keeper-pidfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("keeper: watch pidfd: %w", err)
	}
	go func() {
		first := true
		// A pidfd becomes readable when the process exits. The first call only arms the wait.
		err := rc.Read(func(uintptr) bool {
			if first {
				first = false
				return false
			}
			return true
		})
		if err == nil {
			stop()
		}
	}()
	return func() { f.Close() }, nil
}

// NewStateFile returns a memfd holding data, sealed against any change, to Store as the daemon's
// serialised state (systemd's fd store recommends the same). To update the state, store a new one
// under the same name: the keeper closes the old one.
func NewStateFile(name string, data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("keeper: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("keeper: write state: %w", err)
	}
	seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("keeper: seal state: %w", err)
	}
	return f, nil
}

// ReadStateFile reads a state file fetched from the keeper. It reads from offset 0 with pread:
// every copy of a stored fd shares one file offset, which the previous daemon left at the end.
func ReadStateFile(f *os.File) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keeper: read state: %w", err)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("keeper: read state: %w", err)
	}
	return b, nil
}
