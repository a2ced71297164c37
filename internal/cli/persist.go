package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/statefile"
	"github.com/spf13/cobra"
)

// dumpName is the saved process list in the corral home, named as PM2's (its
// backup is dump.pm2.bak); oldDumpName is the name earlier corral versions
// used, still read (see dumpFile).
const (
	dumpName    = "dump.pm2"
	oldDumpName = "dump.json"
)

// dumpPath returns the path of the saved process list.
func (a *app) dumpPath() (string, error) {
	p, err := a.paths()
	if err != nil {
		return "", err
	}
	return dumpFile(p.Home)
}

// dumpFile returns the path of the saved process list in home: dump.pm2. A
// home saved by an earlier corral has dump.json (and dump.json.bak) only: they
// are copied to dump.pm2 (and dump.pm2.bak) first, atomically, and left in
// place, so nothing is lost and the next save keeps the old list as backup.
func dumpFile(home string) (string, error) {
	path := filepath.Join(home, dumpName)
	old := filepath.Join(home, oldDumpName)
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return path, nil
	}
	if _, err := os.Lstat(path + statefile.BackupSuffix); !errors.Is(err, fs.ErrNotExist) {
		return path, nil
	}
	for _, suffix := range []string{statefile.BackupSuffix, ""} {
		data, err := os.ReadFile(old + suffix)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("read the saved process list: %w", err)
		}
		if err := statefile.WriteFileAtomic(path+suffix, data, 0o600); err != nil {
			return "", err
		}
	}
	return path, nil
}

func (a *app) saveCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "save",
		Aliases: []string{"dump"},
		Short:   "save the process list, to be restored by resurrect (and at boot)",
		Args:    cobra.NoArgs,
		RunE: a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
			path, err := a.dumpPath()
			if err != nil {
				return err
			}
			apps, err := b.Apps(ctx)
			if err != nil {
				return fmt.Errorf("save: %w", err)
			}
			fmt.Fprintln(a.stdout, "[corral] Saving current process list...")
			if err := statefile.Save(path, apps, force); err != nil {
				if errors.Is(err, statefile.ErrWouldEmpty) {
					return fmt.Errorf("save: no app is running and %s is not empty; not overwriting it (use save --force to save the empty list, or corral cleardump)", path)
				}
				return err
			}
			for _, app := range apps {
				fmt.Fprintf(a.stdout, "[corral]   %s (%s)\n", app.Name, describeApp(app))
			}
			fmt.Fprintf(a.stdout, "[corral] Successfully saved %d app%s in %s\n", len(apps), plural(len(apps)), path)
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "save even an empty list over a non-empty dump")
	return cmd
}

// describeApp summarises an app's instances and exec mode ("2 instances, cluster").
func describeApp(app appspec.App) string {
	n := max(app.Instances, 1)
	mode := app.ExecMode
	if mode == "" {
		mode = "fork"
	}
	if n == 1 {
		return "1 instance, " + mode
	}
	return fmt.Sprintf("%d instances, %s", n, mode)
}

func (a *app) cleardumpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cleardump",
		Short: "empty the saved process list",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.paths()
			if err != nil {
				return err
			}
			if err := daemonproc.EnsureHome(p.Home); err != nil {
				return err
			}
			path, err := dumpFile(p.Home)
			if err != nil {
				return err
			}
			if err := statefile.Save(path, nil, true); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "[corral] Saved process list cleared (%s)\n", path)
			return nil
		},
	}
}

// resurrected is the outcome of restoring a dump into a Backend.
type resurrected struct {
	path    string
	warning string        // non-empty when the dump was unusable and its backup was read
	total   int           // apps in the dump
	started []api.Proc    // the processes started
	skipped []string      // "<name>: <why>" for apps left alone
	failed  []error       // apps that could not be started
	apps    []appspec.App // the apps that were started, in order
	renamed []string      // apps whose saved name breaks the name rules, started renamed
}

// nameInDump reports whether an app of the dump is called name.
func nameInDump(apps []appspec.App, name string) bool {
	for _, a := range apps {
		if a.Name == name {
			return true
		}
	}
	return false
}

// resurrect starts every app of the dump at path that b does not already
// list by name; those are left alone. A missing dump (and backup) is an error
// wrapping fs.ErrNotExist.
func resurrect(ctx context.Context, b api.Backend, path string) (resurrected, error) {
	res := resurrected{path: path}
	apps, warning, err := statefile.LoadRepair(path)
	if err != nil {
		return res, err
	}
	res.warning, res.total = warning, len(apps)
	procs, err := b.List(ctx)
	if err != nil {
		return res, err
	}
	status := map[string]string{}
	for _, p := range procs {
		if _, ok := status[p.Name]; !ok || p.Status == "online" {
			status[p.Name] = p.Status
		}
	}
	// depends_on: dependencies first; a cycle or an unknown name starts nothing.
	order, err := appspec.StartOrder(apps, func(n string) bool { _, ok := status[n]; return ok })
	if err != nil {
		return res, fmt.Errorf("resurrect %s: %w", path, err)
	}
	done := map[string]bool{}
	for _, i := range order {
		app := apps[i]
		if err := appspec.ValidateName(app.Name); err != nil && status[app.Name] == "" {
			// Saved before the name rules: kept, under a name that follows them.
			fixed := appspec.FixName(app.Name)
			for n := 2; status[fixed] != "" || done[fixed] || nameInDump(apps, fixed); n++ {
				fixed = fmt.Sprintf("%s-%d", appspec.FixName(app.Name), n)
			}
			res.renamed = append(res.renamed, fmt.Sprintf("%v: started as %q (see the app name rules; save to keep the new name)", err, fixed))
			app.Name = fixed
		}
		switch st, exists := status[app.Name]; {
		case exists:
			res.skipped = append(res.skipped, fmt.Sprintf("%s: already in the process list (%s), left alone", app.Name, st))
			continue
		case done[app.Name]:
			res.skipped = append(res.skipped, fmt.Sprintf("%s: listed twice in the dump, started once", app.Name))
			continue
		}
		done[app.Name] = true
		ps, err := b.Start(ctx, []appspec.App{app}, api.StartOptions{})
		if err != nil {
			res.failed = append(res.failed, fmt.Errorf("%s: %w", app.Name, err))
			continue
		}
		res.started = append(res.started, ps...)
		res.apps = append(res.apps, app)
	}
	return res, nil
}

// err summarises the apps that failed to start, or nil.
func (r resurrected) err() error {
	if len(r.failed) == 0 {
		return nil
	}
	return fmt.Errorf("resurrect %s: %d of %d app%s failed to start: %w", r.path, len(r.failed), r.total, plural(r.total), errors.Join(r.failed...))
}

func (a *app) resurrectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "resurrect",
		Short: "start the apps of the saved process list",
		Args:  cobra.NoArgs,
		RunE: a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
			path, err := a.dumpPath()
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "[corral] Restoring processes from %s\n", path)
			done := a.progress(ctx, b, nil)
			res, err := resurrect(ctx, b, path)
			done()
			if errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(a.stdout, "[corral] Nothing to restore: no saved process list (%s); run corral save first\n", path)
				return nil
			}
			if err != nil {
				return err
			}
			if res.warning != "" {
				fmt.Fprintf(a.stderr, "[corral] warning: %s\n", res.warning)
			}
			for _, r := range res.renamed {
				fmt.Fprintf(a.stderr, "[corral] warning: %s\n", r)
			}
			for _, s := range res.skipped {
				fmt.Fprintf(a.stdout, "[corral] %s\n", s)
			}
			for _, app := range res.apps {
				fmt.Fprintf(a.stdout, "[corral] Restored %s (%s)\n", app.Name, describeApp(app))
			}
			if err := a.report(ctx, b, res.started, nil); err != nil {
				return err
			}
			return res.err()
		}),
	}
}

// resurrectReadyBudget is how long the daemon's boot-time resurrect may hold back its READY: apps
// that wait for readiness probes or depends_on conditions past it go on starting after READY (the
// keeper kills a daemon that is not ready within 60 s, and systemd gives up on a unit after 90 s).
const resurrectReadyBudget = 20 * time.Second

// daemonResurrect restores the dump inside the daemon (daemon --resurrect), logging the outcome; a
// missing dump is not an error. It returns when done or after resurrectReadyBudget, whichever is
// first; the rest goes on in the background (bounded by ctx).
func daemonResurrect(ctx context.Context, b api.Backend, home string, log *slog.Logger) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		daemonResurrectAll(ctx, b, home, log)
	}()
	select {
	case <-done:
	case <-time.After(resurrectReadyBudget):
		log.Info("resurrect: still starting apps (readiness probes, depends_on); the daemon is ready meanwhile")
	}
}

func daemonResurrectAll(ctx context.Context, b api.Backend, home string, log *slog.Logger) {
	path, err := dumpFile(home)
	if err != nil {
		log.Error("resurrect", "err", err)
		return
	}
	res, err := resurrect(ctx, b, path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		log.Info("resurrect: no saved process list", "path", path)
		return
	case err != nil:
		log.Error("resurrect", "err", err)
		return
	}
	if res.warning != "" {
		log.Warn("resurrect: " + res.warning)
	}
	for _, r := range res.renamed {
		log.Warn("resurrect: " + r)
	}
	for _, s := range res.skipped {
		log.Info("resurrect: " + s)
	}
	for _, e := range res.failed {
		log.Error("resurrect: start failed", "err", e)
	}
	log.Info("resurrect: done", "path", path, "apps", res.total, "started", len(res.apps), "processes", len(res.started))
}
