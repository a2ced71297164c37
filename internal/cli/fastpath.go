package cli

import "github.com/spf13/cobra"

// fastCommand returns, for the commands run most often by scripts and monitors (`ls` and its
// aliases, `jlist`) given alone, that command by itself: building the whole tree of ~40 commands
// and their flags costs every invocation a few hundred microseconds and ~1,000 allocations, a tenth
// of what `ls` costs in all (issue 13). With anything more on the line (a flag, --help, another
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
