// Package version holds corral's version, the one a build sets:
//
//	go build -ldflags "-X github.com/corralhq/corral/internal/version.Version=1.2.3" ./cmd/corral
//
// It imports nothing, so that internal/activation/early (which runs before the other packages'
// initialisers) can read it: `ls`'s fast path sends it to the daemon, which warns when its own
// differs. internal/cli.Version is a copy made at initialisation.
package version

// Version is the corral version printed by --version.
var Version = "0.1.0-dev"
