package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/serve"
	"github.com/spf13/cobra"
)

// serveCommand is PM2's `serve [path] [port]`: a static file server started as an app
// (static-page-server-<port>), run by `corral __serve` with PM2's PM2_SERVE_* variables.
func (a *app) serveCommand() *cobra.Command {
	var port, name, user, password, homepage string
	var spa bool
	cmd := &cobra.Command{
		Use:     "serve [path] [port]",
		Aliases: []string{"expose"},
		Short:   "serve a directory over HTTP as an app (--spa, basic auth)",
		Args:    cobra.MaximumNArgs(2),
		RunE: a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
			dir := "."
			if len(args) > 0 {
				dir = args[0]
			}
			dir = a.abs(dir)
			if len(args) > 1 {
				port = args[1]
			}
			if port == "" {
				port = "8080"
			}
			if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
				return fmt.Errorf("serve: %q is not a port", port)
			}
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return fmt.Errorf("serve: %s is not a directory", dir)
			}
			if (user == "") != (password == "") {
				return errors.New("serve: basic auth needs --basic-auth-username and --basic-auth-password")
			}
			if a.self == "" {
				return errors.New("serve: cannot find the corral binary")
			}
			if name == "" {
				name = "static-page-server-" + port
			}
			env := map[string]string{"PM2_SERVE_PATH": dir, "PM2_SERVE_PORT": port}
			if spa {
				env["PM2_SERVE_SPA"] = "true"
			}
			if homepage != "" {
				env["PM2_SERVE_HOMEPAGE"] = homepage
			}
			if user != "" {
				env["PM2_SERVE_BASIC_AUTH"] = "true"
				env["PM2_SERVE_BASIC_AUTH_USERNAME"] = user
				env["PM2_SERVE_BASIC_AUTH_PASSWORD"] = password
			}
			app := appspec.App{Name: name, Script: a.self, Args: []string{"__serve"}, Interpreter: "none",
				Cwd: dir, Env: env, ShellEnv: a.envMap()}
			if err := app.Validate(); err != nil {
				return err
			}
			procs, err := b.Start(ctx, []appspec.App{app}, api.StartOptions{})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "[corral] Serving %s on port %s\n", dir, port)
			return a.report(ctx, b, procs, nil)
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&port, "port", "", "port (default 8080)")
	fs.StringVarP(&name, "name", "n", "", "app name (default static-page-server-<port>)")
	fs.BoolVar(&spa, "spa", false, "serve the homepage for paths that name no file (single-page apps)")
	fs.StringVar(&homepage, "homepage", "", "the page --spa serves (default /index.html)")
	fs.StringVar(&user, "basic-auth-username", "", "require HTTP basic auth with this user")
	fs.StringVar(&password, "basic-auth-password", "", "and this password")
	return cmd
}

// serveRunCommand is the server itself (`corral __serve`), configured by PM2_SERVE_*.
func (a *app) serveRunCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "__serve",
		Short:  "static file server of corral serve (internal)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := serve.FromEnv(a.getenv)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return serve.Run(ctx, c, func(addr net.Addr) {
				fmt.Fprintf(a.stdout, "serving %s on %s\n", c.Dir, addr)
			})
		},
	}
}
