package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/spf13/cobra"
)

// noopFlags are PM2's flags that change nothing in corral (they switch pm2.io
// agents, git metadata or colours): every command accepts them, silently.
var noopFlags = map[string]bool{
	"no-vizion": true, "no-pmx": true, "no-automation": true, "trace": true, "disable-trace": true,
	"v8": true, "event-loop-inspector": true, "deep-monitoring": true, "no-color": true,
}

// addNoopFlags adds noopFlags to root as hidden persistent flags.
func addNoopFlags(root *cobra.Command) {
	for name := range noopFlags {
		root.PersistentFlags().Bool(name, false, "accepted for PM2 compatibility; no effect")
		root.PersistentFlags().MarkHidden(name)
	}
}

// pm2PidFile is where PM2 users look for the daemon's pid: $PM2_PID_FILE_PATH, or pm2.pid in the
// home. corral.pid stays the daemon's own record; this is a copy.
func pm2PidFile(p daemonproc.Paths) string {
	if v := os.Getenv("PM2_PID_FILE_PATH"); v != "" {
		return v
	}
	return filepath.Join(p.Home, "pm2.pid")
}

// writePM2Pid writes the daemon's pid to pm2PidFile (best effort: logged on failure), unless the
// file names another live process that is no corral daemon: PM2's own daemon, when PM2_HOME is
// shared with PM2. (A corral daemon handing over to this one is replaced.)
func writePM2Pid(p daemonproc.Paths, log *slog.Logger) {
	path := pm2PidFile(p)
	if pid, err := daemonproc.ReadPid(path); err == nil && pid != os.Getpid() && daemonproc.Alive(pid) && !daemonproc.IsDaemon(pid) {
		log.Warn("not writing the PM2 pid file: it names a live process (PM2's daemon?)", "path", path, "pid", pid)
		return
	}
	if err := daemonproc.WritePid(path, os.Getpid()); err != nil {
		log.Warn("write the PM2 pid file", "err", err)
	}
}

// removePM2Pid removes pm2PidFile if it names this process.
func removePM2Pid(p daemonproc.Paths) {
	path := pm2PidFile(p)
	if pid, err := daemonproc.ReadPid(path); err == nil && pid == os.Getpid() {
		os.Remove(path)
	}
}

// pm2ioCommands are PM2's commands for its pm2.io SaaS: each answers with one line.
func (a *app) pm2ioCommands() []*cobra.Command {
	var out []*cobra.Command
	for _, name := range []string{"link", "unlink", "plus", "monitor", "unmonitor", "login", "logout", "open"} {
		out = append(out, &cobra.Command{
			Use:                name,
			Short:              "pm2.io (PM2's hosted monitoring) is not part of corral",
			Hidden:             true,
			DisableFlagParsing: true,
			RunE: func(cmd *cobra.Command, args []string) error {
				fmt.Fprintf(a.stdout, "[corral] %s: pm2.io (PM2's hosted monitoring) is not part of corral; nothing to do\n", name)
				return nil
			},
		})
	}
	return out
}

// usageWithoutCommand is `corral` alone: the usage on stderr and exit status 1, as PM2 does.
func (a *app) usageWithoutCommand(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unknown command %q (see corral --help)", args[0])
	}
	cmd.SetOut(a.stderr)
	_ = cmd.Usage()
	return exitCode(1)
}

// silentKeeps are the commands whose output is the point (machine-readable or asked for): -s
// does not hide it.
var silentKeeps = map[string]bool{"jlist": true, "prettylist": true, "pid": true, "id": true, "env": true, "get": true, "conf": true, "logs": true, "events": true}

// addSilentFlag adds PM2's -s/--silent: the command's messages and tables are not printed (errors
// still are, on stderr, where PM2 hides them too).
func (a *app) addSilentFlag(root *cobra.Command) {
	var silent bool
	root.PersistentFlags().BoolVarP(&silent, "silent", "s", false, "print no messages (errors still go to stderr)")
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if silent && !silentKeeps[cmd.Name()] {
			a.stdout = io.Discard
		}
		return nil
	}
}
