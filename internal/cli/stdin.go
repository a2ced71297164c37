package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/corralhq/corral/internal/api"
	"github.com/spf13/cobra"
)

// stdinWriter returns b as an api.StdinWriter.
func stdinWriter(b api.Backend) (api.StdinWriter, error) {
	sw, ok := b.(api.StdinWriter)
	if !ok {
		return nil, errors.New("this daemon cannot write to standard input")
	}
	return sw, nil
}

// sendCommand is PM2's `send <pm_id> <line>`: the line, and a newline, to the app's stdin.
func (a *app) sendCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "send <pm_id> <line>",
		Short: "write a line to the standard input of a fork-mode process",
		Args:  cobra.MinimumNArgs(2),
		RunE: a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
			sw, err := stdinWriter(b)
			if err != nil {
				return err
			}
			if err := sw.SendLine(ctx, args[0], strings.Join(args[1:], " ")); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "[corral] Line sent to %s\n", args[0])
			return nil
		}),
	}
}

// attachCommand is PM2's `attach <pm_id>`: the process's output here, and every line typed here
// (read from this command's standard input) written to the process's standard input, until
// end of input or interrupt.
func (a *app) attachCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "attach <pm_id>",
		Short: "show a fork-mode process's output and send it the lines typed here",
		Args:  cobra.ExactArgs(1),
		RunE: a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
			sw, err := stdinWriter(b)
			if err != nil {
				return err
			}
			procs, err := b.List(ctx)
			if err != nil {
				return err
			}
			matched, err := api.Match(procs, args)
			if err != nil {
				return err
			}
			if len(matched) != 1 {
				return fmt.Errorf("attach: %s names %d processes; give one pm_id", args[0], len(matched))
			}
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			lines, err := b.Logs(ctx, args)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "[corral] attached to %s (pm_id %d); end of input (Ctrl-D) detaches\n", matched[0].Name, matched[0].PMID)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for l := range lines {
					fmt.Fprintln(a.stdout, l.Text)
				}
			}()
			in := bufio.NewScanner(a.stdin)
			in.Buffer(make([]byte, 64<<10), 1<<20)
			var sendErr error
			for in.Scan() {
				if sendErr = sw.SendLine(ctx, args[0], in.Text()); sendErr != nil {
					break
				}
			}
			cancel()
			<-done
			if sendErr != nil {
				return sendErr
			}
			return in.Err()
		}),
	}
}
