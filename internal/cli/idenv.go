package cli

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/api"
	"github.com/spf13/cobra"
)

// idCommand is PM2's `id <name>`: the pm_ids of the app, as Node prints an array ("[ 0, 1 ]",
// "[]" when there is none, exit 0 as PM2).
func (a *app) idCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "id <name>",
		Short: "print the pm_ids of an app",
		Args:  cobra.ExactArgs(1),
		RunE: a.withProcs(func(procs []api.Proc, args []string) error {
			var ids []string
			for _, p := range procs {
				if p.Name == args[0] {
					ids = append(ids, strconv.Itoa(p.PMID))
				}
			}
			if len(ids) == 0 {
				fmt.Fprintln(a.stdout, "[]")
				return nil
			}
			fmt.Fprintf(a.stdout, "[ %s ]\n", strings.Join(ids, ", "))
			return nil
		}),
	}
}

// envCommand is PM2's `env <pm_id>`: the environment the process runs with, one "KEY: value" a
// line, sorted; values of names that look secret are masked unless --reveal (PM2 masks nothing).
func (a *app) envCommand() *cobra.Command {
	var reveal bool
	cmd := &cobra.Command{
		Use:   "env <pm_id>",
		Short: "print the environment of a process",
		Args:  cobra.ExactArgs(1),
		RunE: a.withProcs(func(procs []api.Proc, args []string) error {
			var p *api.Proc
			for i := range procs {
				if strconv.Itoa(procs[i].PMID) == args[0] {
					p = &procs[i]
				}
			}
			if p == nil {
				return api.UnknownTargetError(args[0])
			}
			keys := make([]string, 0, len(p.Env))
			for k := range p.Env {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				v := p.Env[k]
				if !reveal {
					v = maskValue(k, v)
				}
				fmt.Fprintf(a.stdout, "%s: %s\n", k, v)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&reveal, "reveal", false, "print the values of secret-looking names too")
	return cmd
}
