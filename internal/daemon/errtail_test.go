package daemon

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// errTail keeps the last errTailLines lines written to it, whatever the calls' sizes: one line
// per call, many at once (a flood), empty lines, trailing newlines; long lines are cut.
func TestErrTailKeepsLastLines(t *testing.T) {
	var all []string
	for i := range 30 {
		all = append(all, fmt.Sprintf("line %d", i))
	}
	all[13] = ""
	last := func(ls []string) []string { return ls[max(len(ls)-errTailLines, 0):] }
	for _, split := range []int{1, 3, 7, 8, 9, 30} {
		var tail errTail
		for i := 0; i < len(all); i += split {
			tail.Write([]byte(strings.Join(all[i:min(i+split, len(all))], "\n") + "\n"))
		}
		if got, want := tail.take(), last(all); !slices.Equal(got, want) {
			t.Errorf("%d lines per write: kept %q, want %q", split, got, want)
		}
	}
	var tail errTail
	tail.Write([]byte("a\nb\n\n\n"))
	tail.Write([]byte(strings.Repeat("x", errTailMax+10) + "\n"))
	if got := tail.take(); len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != strings.Repeat("x", errTailMax)+"…" {
		t.Errorf("kept %q", got)
	}
}
