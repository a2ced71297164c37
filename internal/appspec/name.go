package appspec

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// App names. A name is what targets (stop, restart, logs ...) and log file names are made of, so
// a name that a target would read as something else, or that cannot be typed, is refused
// (ValidateName); every other name is accepted as PM2 accepts it, spaces and slashes included,
// and escaped where it becomes a file name (LogName). The rules are in the README ("App names").

// MaxNameLen bounds the length of an app name, in bytes.
const MaxNameLen = 128

// ecosystemSuffixes are the endings by which a target is read as an ecosystem file (as
// api.IsEcosystemFile has them).
var ecosystemSuffixes = []string{".config.js", ".config.cjs", ".config.mjs", ".json", ".yaml", ".yml"}

// ValidateName reports why name cannot be an app name, or nil. It refuses names that a target
// reads as something else: "all", a number (a pm_id), /.../ (a regular expression) and a name
// ending like an ecosystem file; names with control characters (a newline breaks `ls` and the
// logs), invalid UTF-8, or blanks at either end (targets are trimmed); and names longer than
// MaxNameLen bytes. The empty name is left to the caller (it is derived from the script).
func ValidateName(name string) error {
	if name == "" {
		return nil
	}
	bad := func(why string) error { return fmt.Errorf("app name %q %s", name, why) }
	switch {
	case len(name) > MaxNameLen:
		return fmt.Errorf("app name %q... is %d bytes long: at most %d", name[:32], len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return bad("is not valid UTF-8")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		c, _ := utf8.DecodeRuneInString(name[strings.IndexFunc(name, unicode.IsControl):])
		return bad(fmt.Sprintf("contains a control character (U+%04X): names must be printable", c))
	case strings.TrimSpace(name) != name:
		return bad("starts or ends with a blank, which targets drop")
	case name == "all":
		return bad(`is ambiguous: as a target, "all" means every process`)
	case isNumber(name):
		return bad("is ambiguous: as a target, a number is a pm_id; add a letter")
	case len(name) > 2 && strings.HasPrefix(name, "/") && strings.HasSuffix(name, "/"):
		return bad("is ambiguous: as a target, /.../ is a regular expression")
	}
	lower := strings.ToLower(name)
	for _, suf := range ecosystemSuffixes {
		if strings.HasSuffix(lower, suf) {
			return bad(fmt.Sprintf("is ambiguous: as a target, a name ending in %s is an ecosystem file", suf))
		}
	}
	return nil
}

// isNumber reports whether a target would be read as a pm_id (as api.Match parses it).
func isNumber(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

// FixName returns a name that ValidateName accepts, as close to name as it can: control
// characters and invalid bytes become "_", blanks at the ends go, a name too long is cut, and
// an ambiguous one gets "-app" appended ("0" becomes "0-app", "all" "all-app"). It is for saved
// process lists written before the rules: they still load, with their apps renamed.
func FixName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRuneInString(name[i:])
		if (r == utf8.RuneError && size == 1) || unicode.IsControl(r) {
			b.WriteByte('_')
		} else {
			b.WriteString(name[i : i+size])
		}
		i += size
	}
	s := strings.TrimSpace(b.String())
	for len(s) > MaxNameLen-len("-app") {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	if s == "" {
		return "app"
	}
	if ValidateName(s) != nil {
		s += "-app"
	}
	return s
}

// LogName returns the form of an app name used in the names of its log and pid files. It is
// injective (two names never share a file): ASCII letters and digits, "-", "_", letters and
// digits of other scripts, and "." (but in first place, so that no file is hidden) stay as they
// are; a space becomes "+"; every other byte becomes %XX ("a/b" is a%2Fb, "a b" a+b, "a+b"
// a%2Bb, ".env" %2Eenv). Names whose
// escaped form would pass 200 bytes are cut and end with "~" and a hash of the whole name. The
// names PM2 users mostly use (letters, digits, "-", ".") keep PM2's file names.
func LogName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRuneInString(name[i:])
		keep := r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || (r == '.' && i > 0))
		keep = keep || (r >= utf8.RuneSelf && r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r)))
		switch {
		case keep:
			b.WriteString(name[i : i+size])
		case r == ' ':
			b.WriteByte('+') // "+" itself is escaped
		default:
			for _, c := range []byte(name[i : i+size]) {
				fmt.Fprintf(&b, "%%%02X", c)
			}
		}
		i += size
	}
	s := b.String()
	const limit, keepLen = 200, 180
	if len(s) <= limit {
		return s
	}
	cut := keepLen
	if j := strings.LastIndexByte(s[:cut], '%'); j >= cut-2 {
		cut = j // not inside a %XX
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	return fmt.Sprintf("%s~%016x", s[:cut], h.Sum64())
}
