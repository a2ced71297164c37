package cli

import (
	"io"

	"github.com/spf13/cobra"
)

// fastCommand returns, for the commands run most often by scripts and monitors (`ls` and its
// aliases, `jlist`; `--version` and `-v`, which `update` runs too) given alone, that command by
// itself: building the whole tree of ~40 commands and their flags costs every invocation a few
// hundred microseconds and ~1,000 allocations, a tenth of what `ls` costs in all (issue 13). With anything more on the line (a flag, --help, another
// command) it returns nil and Run builds the tree. The command runs as it would under the root:
// the root's only hook, --silent, is not given.
func (a *app) fastCommand(args []string) *cobra.Command {
	if len(args) != 1 {
		return nil
	}
	var cmd *cobra.Command
	switch args[0] {
	case "ls", "list", "l", "ps", "status":
		cmd = a.listCommand()
	case "jlist":
		cmd = a.jlistCommand()
	case "--version", "-v": // what the root's version flag prints (root.SetVersionTemplate)
		cmd = &cobra.Command{Use: "corral", Args: cobra.NoArgs, RunE: func(c *cobra.Command, _ []string) error {
			_, err := io.WriteString(c.OutOrStdout(), Version+"\n")
			return err
		}}
	default:
		return nil
	}
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	cmd.SetIn(a.stdin)
	cmd.SetOut(a.stdout)
	cmd.SetErr(a.stderr)
	cmd.SetArgs([]string{})
	return cmd
}
