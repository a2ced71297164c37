package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/modconf"
	"github.com/spf13/cobra"
)

// PM2's module configuration commands, on module_conf.json in the home (package modconf). They
// need no daemon. The pm2-logrotate keys set corral's built-in log rotation.

// confStore loads the store of the home (creating the home when write is set).
func (a *app) confStore(write bool) (modconf.Conf, string, error) {
	p, err := a.paths()
	if err != nil {
		return nil, "", err
	}
	if write {
		if err := daemonproc.EnsureHome(p.Home); err != nil {
			return nil, "", err
		}
	}
	c, err := modconf.Load(p.Home)
	return c, p.Home, err
}

// confSet sets key=value pairs and saves the store once.
func (a *app) confSet(pairs [][2]string) error {
	c, home, err := a.confStore(true)
	if err != nil {
		return err
	}
	for _, kv := range pairs {
		if err := c.Set(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if err := c.Save(home); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, "[corral] Setting changed")
	for _, kv := range pairs {
		fmt.Fprintf(a.stdout, "[corral]   %s %s\n", kv[0], kv[1])
	}
	a.printRotation(c, pairs)
	return nil
}

// printRotation says what the pm2-logrotate keys now mean, when one was changed.
func (a *app) printRotation(c modconf.Conf, pairs [][2]string) {
	touched := false
	for _, kv := range pairs {
		touched = touched || strings.HasPrefix(kv[0], modconf.LogRotateModule+":")
	}
	if !touched {
		return
	}
	r, notes, ok := c.LogRotate()
	if !ok {
		fmt.Fprintln(a.stdout, "[corral] pm2-logrotate: no key left; apps (re)started from now rotate only as their own options say")
		return
	}
	daily := ""
	if r.Daily {
		daily = ", and daily at midnight"
	}
	fmt.Fprintf(a.stdout, "[corral] pm2-logrotate is built in: apps without log rotation options of their own, (re)started from now, rotate their logs above %d bytes%s, keeping %d files\n", r.MaxSize, daily, r.MaxFiles)
	for _, n := range notes {
		fmt.Fprintf(a.stdout, "[corral] note: %s\n", n)
	}
}

func (a *app) setCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "set <module:key> <value>",
		Short: "set a value in module_conf.json (pm2-logrotate:* keys set the built-in log rotation)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.confSet([][2]string{{args[0], args[1]}})
		},
	}
}

func (a *app) multisetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   `multiset "<key> <value> [<key> <value>...]"`,
		Short: "set several values in module_conf.json",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := strings.Fields(strings.Join(args, " "))
			if len(f) == 0 || len(f)%2 != 0 {
				return errors.New("multiset: want key value pairs")
			}
			var pairs [][2]string
			for i := 0; i < len(f); i += 2 {
				pairs = append(pairs, [2]string{f[i], f[i+1]})
			}
			return a.confSet(pairs)
		},
	}
}

func (a *app) unsetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "unset <module:key>",
		Short: "remove a value from module_conf.json",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, home, err := a.confStore(true)
			if err != nil {
				return err
			}
			if !c.Unset(args[0]) {
				return fmt.Errorf("unset: %s is not set", args[0])
			}
			if err := c.Save(home); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "[corral] %s unset\n", args[0])
			a.printRotation(c, [][2]string{{args[0], ""}})
			return nil
		},
	}
}

// getCommand builds get and conf/config: with a key, its value alone (exit 1 when unset); with
// two arguments (conf only), a set; with none, every setting as the set command that makes it.
func (a *app) getCommand(name string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   name + " [module:key]",
		Short: "print values of module_conf.json",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 2 {
				return a.confSet([][2]string{{args[0], args[1]}})
			}
			c, _, err := a.confStore(false)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				v, ok := c.Get(args[0])
				if !ok {
					return fmt.Errorf("%s: %s is not set", name, args[0])
				}
				fmt.Fprintln(a.stdout, v)
				return nil
			}
			for _, l := range c.Lines() {
				fmt.Fprintf(a.stdout, "corral set %s\n", l)
			}
			return nil
		},
	}
	if name == "conf" {
		cmd.Use = "conf [module:key] [value]"
		cmd.Aliases = []string{"config"}
		cmd.Args = cobra.MaximumNArgs(2)
	}
	return cmd
}
