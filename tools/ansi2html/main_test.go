package main

import (
	"strings"
	"testing"
)

// SGR sequences become styled spans (basic, bright, 256 and true colours, reverse, bold), text is
// escaped, lines are kept.
func TestConvert(t *testing.T) {
	in := "\x1b[1;32monline\x1b[0m <ok>\n\x1b[7mSEL\x1b[27m \x1b[38;5;196mred\x1b[39m \x1b[48;2;1;2;3mbg\x1b[m\n"
	var out strings.Builder
	if err := convert(strings.NewReader(in), &out, "t"); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		`<span style="color:#0dbc79;background:#1e1e1e;font-weight:bold">online</span>`,
		"&lt;ok&gt;",
		`<span style="color:#1e1e1e;background:#d4d4d4">SEL</span>`, // reversed default colours
		`<span style="color:#ff0000;background:#1e1e1e">red</span>`,
		`<span style="color:#d4d4d4;background:#010203">bg</span>`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("%s missing from:\n%s", want, s)
		}
	}
	if strings.Count(s, "\n") < 2 || strings.Contains(s, "\x1b") {
		t.Errorf("lines lost or escapes left:\n%q", s)
	}
}
