// Package owner enforces who may own what corral trusts: its state directory and the files in it
// (control socket, pid and lock files, logs), the way ssh's StrictModes and tailscale's
// safesocket do. A directory or file that another user owns, or a symbolic link another user
// planted, could make corral talk to that user's listener (sending the caller's environment) or
// write where that user points. Everything here is checked against the effective uid and
// refused with an *Error that names the owner.
//
// Symbolic links are never followed when a file is created (O_NOFOLLOW); an existing link is
// followed only when its owner is the current user or root, as the kernel's
// fs.protected_symlinks rule does for sticky directories (so /dev/stdout still works as a log).
package owner

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"

	"golang.org/x/sys/unix"
)

// Error says that a path is not the current user's to trust.
type Error struct {
	Path string
	UID  int  // the owner of Path (of the link itself when Link)
	Link bool // Path is a symbolic link
	// Target is where the link points, when Link.
	Target string
}

func (e *Error) Error() string {
	if e.Link {
		return fmt.Sprintf("%s is a symbolic link (to %s) owned by %s, not by you (%s): corral follows only links of its own user or root; remove it",
			e.Path, e.Target, Describe(e.UID), Describe(os.Geteuid()))
	}
	return fmt.Sprintf("%s belongs to %s, not to you (%s)", e.Path, Describe(e.UID), Describe(os.Geteuid()))
}

// Name returns the user name of uid, or "uid N" when it has none.
func Name(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.Username != "" {
		return u.Username
	}
	return "uid " + strconv.Itoa(uid)
}

// Describe returns "user NAME (uid N)", or "uid N" for a uid without a name.
func Describe(uid int) string {
	n := Name(uid)
	if n == "uid "+strconv.Itoa(uid) {
		return n
	}
	return fmt.Sprintf("user %s (uid %d)", n, uid)
}

// trustedLinkOwner reports whether a symbolic link owned by uid may be followed.
func trustedLinkOwner(uid uint32) bool { return int(uid) == os.Geteuid() || uid == 0 }

// CheckDir checks that dir, if it exists, is a directory owned by the current user. A symbolic
// link is accepted when it is owned by the user or root and points to such a directory. It
// reports whether dir exists.
func CheckDir(dir string) (exists bool, err error) {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, &os.PathError{Op: "lstat", Path: dir, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		if !trustedLinkOwner(st.Uid) {
			target, _ := os.Readlink(dir)
			return true, &Error{Path: dir, UID: int(st.Uid), Link: true, Target: target}
		}
		if err := unix.Stat(dir, &st); err != nil {
			return true, &os.PathError{Op: "stat", Path: dir, Err: err}
		}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return true, fmt.Errorf("%s is not a directory", dir)
	}
	if int(st.Uid) != os.Geteuid() {
		return true, &Error{Path: dir, UID: int(st.Uid)}
	}
	return true, nil
}

// EnsureDir creates dir (mode 0700, with its parents) if it does not exist, then checks it as
// CheckDir does.
func EnsureDir(dir string) error {
	if _, err := CheckDir(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	_, err := CheckDir(dir)
	return err
}

// CheckFile checks that path, if it exists, is not a symbolic link and is owned by the current
// user.
func CheckFile(path string) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		target, _ := os.Readlink(path)
		return &Error{Path: path, UID: int(st.Uid), Link: true, Target: target}
	}
	if int(st.Uid) != os.Geteuid() {
		return &Error{Path: path, UID: int(st.Uid)}
	}
	return nil
}

// OpenFile is os.OpenFile that never follows a symbolic link to create a file: the last
// component is opened with O_NOFOLLOW. When it is a link, it is followed only if its owner is
// the current user or root, and only to a file that exists (O_CREATE and O_EXCL are dropped):
// a link another user planted gets an *Error.
func OpenFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := openFile(path, flag|unix.O_NOFOLLOW, perm)
	if err == nil {
		return f, nil
	}
	// ELOOP, or EACCES from some kernels for O_CREAT on a link in a sticky directory.
	var st unix.Stat_t
	if lerr := unix.Lstat(path, &st); lerr != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return nil, err
	}
	if !trustedLinkOwner(st.Uid) {
		target, _ := os.Readlink(path)
		return nil, &Error{Path: path, UID: int(st.Uid), Link: true, Target: target}
	}
	if !errors.Is(err, unix.ELOOP) {
		return nil, err
	}
	return os.OpenFile(path, flag&^(os.O_CREATE|os.O_EXCL), perm)
}

// openFile is os.OpenFile without the runtime's poller: os.OpenFile makes every new descriptor
// non-blocking, offers it to epoll (which refuses a regular file) and makes it blocking again, four
// fcntl and an epoll_ctl per file; the daemon opens three files (two logs, a pid file) per process
// it starts. The files opened here are written (logs, pid files), regular files but for the odd
// FIFO or terminal given as a log, which is then written by blocking writes, as a regular file is.
func openFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	for {
		fd, err := unix.Open(path, flag|unix.O_CLOEXEC, uint32(perm.Perm()))
		switch err {
		case nil:
			return os.NewFile(uintptr(fd), path), nil
		case unix.EINTR:
			continue
		}
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
}

// OpenOwn opens (creating if needed) a file that must be the current user's: no symbolic link
// at all, and an existing file of another owner is refused (checked on the open descriptor).
func OpenOwn(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|unix.O_NOFOLLOW, perm)
	if err != nil {
		if cerr := CheckFile(path); cerr != nil { // a link, or another user's file: say so
			return nil, cerr
		}
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if int(st.Uid) != os.Geteuid() {
		f.Close()
		return nil, &Error{Path: path, UID: int(st.Uid)}
	}
	return f, nil
}

// WriteFile writes data to path (created with perm, truncated) without following a symbolic
// link planted there (see OpenFile).
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
