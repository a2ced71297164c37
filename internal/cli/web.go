package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"

	"github.com/corralhq/corral/internal/api"
	"github.com/spf13/cobra"
)

type webFlags struct {
	port                   int
	host                   string
	allowRemote, open      bool
	stop, status, newToken bool
	jsonOut                bool
}

// webCommand is `corral web`: the daemon serves its web dashboard (internal/web).
func (a *app) webCommand() *cobra.Command {
	f := &webFlags{}
	cmd := &cobra.Command{
		Use:   "web",
		Short: "serve the web dashboard from the daemon (127.0.0.1:9615) and print its URL",
		Long: "web makes the daemon serve its web dashboard — the process table, CPU and memory charts, live\n" +
			"logs, the event timeline and the actions — and prints the URL to open, with its access token.\n" +
			"When the dashboard is already served, it prints the URL again (with --port or --host it moves).\n" +
			"The setting is saved in the corral home: a restarted daemon serves the dashboard again, on the\n" +
			"same address with the same token, until `corral web --stop`.\n\n" +
			"The dashboard listens on 127.0.0.1 unless --host says otherwise; a non-loopback host needs\n" +
			"--allow-remote (the dashboard is plain HTTP: prefer an SSH tunnel).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.stop && f.status {
				return errors.New("web: --stop and --status cannot be combined")
			}
			req := api.WebRequest{Action: "start", Host: f.host, Port: f.port, PortSet: cmd.Flags().Changed("port"),
				AllowRemote: f.allowRemote, NewToken: f.newToken}
			switch {
			case f.stop:
				req = api.WebRequest{Action: "stop"}
			case f.status:
				req = api.WebRequest{Action: "status"}
			}
			if req.Host != "" {
				if h, _, err := net.SplitHostPort(req.Host); err == nil {
					return fmt.Errorf("web: --host %s: give the port with --port (--host %s)", req.Host, h)
				}
			}
			return a.web(cmd.Context(), req, f)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.port, "port", 0, "port to listen on (default 9615, or the saved one; 0 with --port: any free port)")
	fl.StringVar(&f.host, "host", "", "address to listen on (default 127.0.0.1)")
	fl.BoolVar(&f.allowRemote, "allow-remote", false, "allow a --host that is not a loopback address")
	fl.BoolVar(&f.open, "open", false, "open the dashboard in the default browser (xdg-open or $BROWSER)")
	fl.BoolVar(&f.stop, "stop", false, "stop serving the dashboard (and forget the saved setting)")
	fl.BoolVar(&f.status, "status", false, "print whether the dashboard is served, and where")
	fl.BoolVar(&f.newToken, "new-token", false, "replace the access token (open pages must sign in again)")
	fl.BoolVar(&f.jsonOut, "json", false, "print the answer as JSON")
	return cmd
}

func (a *app) web(ctx context.Context, req api.WebRequest, f *webFlags) error {
	b, err := a.backend(ctx)
	if err != nil {
		return err
	}
	src, ok := b.(api.WebSource)
	if !ok {
		return errors.New("web: this daemon has no web dashboard")
	}
	resp, err := src.Web(ctx, req)
	if err != nil {
		return err
	}
	if f.jsonOut {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(resp)
	}
	for _, w := range resp.Warnings {
		fmt.Fprintf(a.stderr, "[corral] warning: %s\n", w)
	}
	switch {
	case req.Action == "stop":
		fmt.Fprintln(a.stdout, "[corral] web dashboard stopped")
		return nil
	case !resp.Running:
		fmt.Fprintln(a.stdout, "[corral] web dashboard off (serve it with: corral web)")
		return nil
	}
	fmt.Fprintf(a.stdout, "[corral] web dashboard on http://%s\n", resp.Addr)
	fmt.Fprintf(a.stdout, "[corral] open: %s\n", resp.URL)
	if req.Action == "start" {
		fmt.Fprintln(a.stdout, "[corral] the link signs a browser in; keep it private (corral web --new-token revokes it)")
	}
	if f.open {
		if err := a.openBrowser(resp.URL); err != nil {
			fmt.Fprintf(a.stderr, "[corral] could not open a browser (%v); open the URL above\n", err)
		}
	}
	return nil
}

// openBrowser starts $BROWSER or xdg-open on url without waiting for it.
func (a *app) openBrowser(url string) error {
	var argv []string
	if b := strings.TrimSpace(a.getenv("BROWSER")); b != "" {
		argv = append(strings.Fields(b), url)
	} else {
		p, err := exec.LookPath("xdg-open")
		if err != nil {
			return errors.New("no $BROWSER and no xdg-open")
		}
		argv = []string{p, url}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait() // reaped when the browser launcher returns; the CLI does not wait for it
	return nil
}
