package cli

import (
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
