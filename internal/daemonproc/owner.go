package daemonproc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/corralhq/corral/internal/owner"
)

// CheckHome refuses a corral home that is not the current user's: the state directory (when it
// exists) must be a directory owned by the effective uid (a symbolic link to one is accepted when
// the link is the user's or root's), and its control socket, pid, lock, log and keeper files must
// be the user's and not symbolic links. Otherwise another user could answer on the control
// socket, receiving what the CLI sends (the caller's environment), or point the daemon's files
// elsewhere. The error says whose the directory is and what to do.
func CheckHome(p Paths) error {
	if _, err := owner.CheckDir(p.Home); err != nil {
		return homeError(p, p.Home, err)
	}
	for _, f := range []string{p.Socket, p.PidFile, p.SpawnLock, p.LogFile, p.KeeperPidFile, filepath.Join(p.Home, "keeper.sock")} {
		if err := owner.CheckFile(f); err != nil {
			return homeError(p, f, err)
		}
	}
	return nil
}

// homeError turns an ownership error about path (the home or a file in it) into a message that
// says what to do.
func homeError(p Paths, path string, err error) error {
	var oe *owner.Error
	if !errors.As(err, &oe) {
		return fmt.Errorf("corral home %s: %w", p.Home, err)
	}
	me := owner.Describe(os.Geteuid())
	switch {
	case oe.Link:
		return fmt.Errorf("refusing the corral home %s: %w", p.Home, err)
	case path == p.Home:
		name, sudo := owner.Name(oe.UID), owner.Name(oe.UID)
		if name == fmt.Sprintf("uid %d", oe.UID) {
			sudo = fmt.Sprintf("'#%d'", oe.UID)
		}
		return fmt.Errorf("the daemon in %s belongs to %s, not to you (%s): run corral as %s (sudo -u %s corral ...), or set %s to a directory of your own",
			p.Home, owner.Describe(oe.UID), me, name, sudo, EnvHome)
	default:
		return fmt.Errorf("the daemon in %s belongs to %s, not to you (%s): %s is theirs. Stop it as that user, or remove %s if nothing of theirs runs there, or set %s to a directory of your own",
			p.Home, owner.Describe(oe.UID), me, filepath.Base(path), path, EnvHome)
	}
}
