// Package secretenv decides which environment values are hidden when corral shows an app's
// environment (`corral show`, the web dashboard): the values of secret-looking names.
package secretenv

import (
	"regexp"
	"sync"
)

// secretKey matches environment variable names whose values are hidden.
var secretKey = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?i)SECRET|TOKEN|PASSWORD|PASSWD|KEY|CREDENTIAL|AUTH`)
}) // compiled on first use, not at every command's start

// Masked is what a hidden value is shown as.
const Masked = "********"

// Secret reports whether key looks like the name of a secret (SECRET, TOKEN, PASSWORD, KEY, ...).
func Secret(key string) bool { return secretKey().MatchString(key) }

// Mask returns value, or Masked when key looks secret and value is not empty.
func Mask(key, value string) string {
	if value != "" && Secret(key) {
		return Masked
	}
	return value
}
