package daemon

import (
	"os"
	"sync"
)

// killUseMessage reports whether PM2_KILL_USE_MESSAGE is set in the daemon's environment (which is
// the environment of the command that started it, as for PM2's daemon): then every app is stopped
// with the IPC message 'shutdown' instead of a signal, as if each had shutdown_with_message. PM2
// takes any value; corral takes any value but "false" and "0".
var killUseMessage = sync.OnceValue(func() bool {
	v := os.Getenv("PM2_KILL_USE_MESSAGE")
	return v != "" && v != "false" && v != "0"
})
