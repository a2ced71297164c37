package pm2json

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/corralhq/corral/internal/api"
)

// PrettyList renders procs as `pm2 prettylist` does: Node's
// util.inspect(list, {depth: null}) layout (unquoted keys, single-quoted
// strings, small objects and arrays on one line), followed by a newline.
// PM2's shell tests grep this text (e.g. "status: 'online'"), so the layout
// follows Node's rules: an object or array goes on one line when it holds at
// most two levels of nesting and fits in 80 columns.
func PrettyList(procs []api.Proc) string {
	entries := make([]any, 0, len(procs))
	for _, p := range procs {
		entries = append(entries, Entry(p))
	}
	in := &inspector{}
	return in.value(entries, 0) + "\n"
}

// Inspect renders a value built from Object, slices, strings, numbers and
// booleans in util.inspect layout (no trailing newline).
func Inspect(v any) string {
	in := &inspector{}
	return in.value(v, 0)
}

const breakLength = 80

// inspector mirrors the state util.inspect keeps while formatting.
type inspector struct {
	indentationLvl int
	currentDepth   int
}

var identRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z_][a-zA-Z_0-9]*$`) }) // compiled on first use, not at every command's start

func (in *inspector) value(v any, depth int) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return quote(x)
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float64:
		return jsNumber(x)
	case *Object:
		if x == nil || len(x.keys) == 0 {
			return "{}"
		}
		in.currentDepth = depth
		out := make([]string, 0, len(x.keys))
		for ki, k := range x.keys {
			in.indentationLvl += 2
			s := in.value(x.vals[ki], depth+1)
			in.indentationLvl -= 2
			name := k
			if !identRE().MatchString(k) {
				name = quote(k)
			}
			out = append(out, name+": "+s)
		}
		return in.reduce(out, "{", "}", depth)
	case []string:
		return in.array(len(x), func(i int) any { return x[i] }, depth)
	case []int:
		return in.array(len(x), func(i int) any { return x[i] }, depth)
	case []*Object:
		return in.array(len(x), func(i int) any { return x[i] }, depth)
	case []any:
		return in.array(len(x), func(i int) any { return x[i] }, depth)
	}
	return quote(fmt.Sprint(v))
}

func (in *inspector) array(n int, at func(int) any, depth int) string {
	if n == 0 {
		return "[]"
	}
	in.currentDepth = depth
	out := make([]string, 0, n)
	for i := range n {
		in.indentationLvl += 2
		out = append(out, in.value(at(i), depth+1))
		in.indentationLvl -= 2
	}
	return in.reduce(out, "[", "]", depth)
}

// reduce joins formatted entries on one line or one per line (Node's
// reduceToSingleString with compact = 3).
func (in *inspector) reduce(out []string, open, close string, depth int) string {
	if in.currentDepth-depth < 3 {
		start := len(out) + in.indentationLvl + len(open) + 10
		total := len(out) + start
		multi := total+len(out) > breakLength
		for _, s := range out {
			total += len([]rune(s))
			if strings.Contains(s, "\n") {
				multi = true
			}
		}
		if total <= breakLength && !multi {
			return open + " " + strings.Join(out, ", ") + " " + close
		}
	}
	ind := "\n" + strings.Repeat(" ", in.indentationLvl)
	return open + ind + "  " + strings.Join(out, ","+ind+"  ") + ind + close
}

// quote quotes s as util.inspect does: single quotes unless s contains one.
func quote(s string) string {
	q := byte('\'')
	if strings.Contains(s, "'") {
		if !strings.Contains(s, `"`) {
			q = '"'
		} else if !strings.Contains(s, "`") && !strings.Contains(s, "${") {
			q = '`'
		}
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < 0x20 || (r >= 0x7f && r <= 0x9f):
			fmt.Fprintf(&b, `\x%02X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// jsNumber formats f as JavaScript's Number#toString does for the values
// that occur here.
func jsNumber(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0 && math.Signbit(f):
		return "-0"
	}
	a := math.Abs(f)
	if a != 0 && (a >= 1e21 || a < 1e-6) {
		s := strconv.FormatFloat(f, 'e', -1, 64)
		return strings.Replace(s, "e-0", "e-", 1)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}
