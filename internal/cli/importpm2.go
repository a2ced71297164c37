package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/pm2import"
	"github.com/spf13/cobra"
)

// importPM2Command is `corral import-pm2 [dump.pm2]`: start under corral the apps PM2 saved.
func (a *app) importPM2Command() *cobra.Command {
	var save string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "import-pm2 [path/to/dump.pm2]",
		Short: "start the apps of PM2's saved process list (default $PM2_HOME/dump.pm2 or ~/.pm2/dump.pm2)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ""
			if len(args) == 1 {
				path = a.abs(args[0])
			} else {
				home := a.getenv("PM2_HOME")
				if home == "" {
					h, err := os.UserHomeDir()
					if err != nil {
						return fmt.Errorf("import-pm2: %w", err)
					}
					home = filepath.Join(h, ".pm2")
				}
				path = filepath.Join(home, "dump.pm2")
			}
			res, err := pm2import.Load(path)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("%w (run pm2 save first, or give the dump's path)", err)
				}
				return err
			}
			return a.importPM2(cmd.Context(), path, res, save, dryRun)
		},
	}
	cmd.Flags().StringVar(&save, "save", "", "also write the apps as an ecosystem file (JSON) at this path")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would be started, start nothing")
	return cmd
}

func (a *app) importPM2(ctx context.Context, path string, res *pm2import.Result, save string, dryRun bool) error {
	fmt.Fprintf(a.stdout, "[corral] %s: %d app%s\n", path, len(res.Apps), plural(len(res.Apps)))
	var apps []appspec.App
	for _, ia := range res.Apps {
		app := ia.Spec
		what := "start"
		if ia.Status != "" && ia.Status != "online" && ia.Status != "launching" {
			no := false
			app.Autostart = &no
			what = "add, not started"
		}
		interp := app.Interpreter
		if interp == "" {
			interp = "none"
		}
		fmt.Fprintf(a.stdout, "[corral]   %s: %s %s, %s, cwd %s (PM2: %s → %s)\n", app.Name, interp,
			strings.Join(append([]string{app.Script}, app.Args...), " "), describeApp(app), app.Cwd, orNA(ia.Status), what)
		for _, n := range ia.Notes {
			fmt.Fprintf(a.stdout, "[corral]     note: %s\n", n)
		}
		apps = append(apps, app)
	}
	if len(res.Unknown) > 0 {
		fmt.Fprintf(a.stdout, "[corral] keys corral does not know, not imported: %s\n", strings.Join(res.Unknown, ", "))
	}
	if save != "" {
		if err := a.saveEcosystem(a.abs(save), apps); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "[corral] wrote %s (start it with: corral start %s)\n", save, save)
	}
	if dryRun || len(apps) == 0 {
		return nil
	}
	b, err := a.backend(ctx)
	if err != nil {
		return err
	}
	current, err := b.List(ctx)
	if err != nil {
		return err
	}
	var todo []appspec.App
	for _, app := range apps {
		if api.Lookup(current, app.Name) != nil {
			fmt.Fprintf(a.stdout, "[corral] %s: already in corral's process list, left alone\n", app.Name)
			continue
		}
		todo = append(todo, app)
	}
	if len(todo) == 0 {
		return a.report(ctx, b, nil, nil)
	}
	procs, err := b.Start(ctx, todo, api.StartOptions{})
	if err != nil {
		return err
	}
	return a.report(ctx, b, procs, nil)
}

// saveEcosystem writes apps as an ecosystem file in JSON (mode 0600: the environment may hold
// secrets). Variables equal to this shell's, and PWD and OLDPWD, are left out: they come from
// the shell anyway. An
// existing file is not overwritten.
func (a *app) saveEcosystem(path string, apps []appspec.App) error {
	shell := a.envMap()
	var out []map[string]any
	for _, app := range apps {
		raw, err := json.Marshal(app)
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		delete(m, "shell_env")
		if env, ok := m["env"].(map[string]any); ok {
			for k, v := range env {
				if sv, inShell := shell[k]; (inShell && sv == v) || k == "PWD" || k == "OLDPWD" {
					delete(env, k)
				}
			}
			if len(env) == 0 {
				delete(m, "env")
			}
		}
		out = append(out, m)
	}
	data, err := json.MarshalIndent(map[string]any{"apps": out}, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("import-pm2 --save: %w", err)
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("import-pm2 --save: %w", err)
	}
	return f.Close()
}
