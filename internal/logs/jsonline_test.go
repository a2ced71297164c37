package logs

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// appendJSONLine writes what WriteJSON (encoding/json) writes, byte for byte, for lines with every
// kind of character: quotes, backslashes, control characters, HTML characters, U+2028/2029,
// multi-byte and invalid UTF-8.
func TestAppendJSONLineMatchesEncodingJSON(t *testing.T) {
	cases := []string{
		"", "plain", `quote " and \ backslash`, "tab\tcr\rnl\nbs\bff\f", "\x00\x01\x1f\x7f",
		"<b>&amp;</b>", "line\u2028sep\u2029para", "héllo wörld ✓ 😀", "bad \xff\xfe utf8 \xc3", "\xe2\x80",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab\"\\\n\t\x00\x1f<>&\x7f\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80\xff")
	for range 2000 {
		b := make([]byte, rng.IntN(24))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	// A special byte at every offset of a long plain run (the 8-byte fast path's edges).
	for _, special := range []string{"\"", "\\", "\x00", "\x1f", "\n", "\x7f", "\xff", "é", "\u2028"} {
		for off := 0; off <= 24; off++ {
			plain := strings.Repeat("abcdefgh", 4)
			cases = append(cases, plain[:off]+special+plain[off:])
		}
	}
	for _, msg := range cases {
		for _, ts := range []string{"", "2026-11-30T14:00:00.123Z", "30 \"Nov\""} {
			var want bytes.Buffer
			if err := WriteJSON(&want, Line{App: "a\"pp", ID: 7, Stream: "err", Text: msg}, ts); err != nil {
				t.Fatal(err)
			}
			got := appendJSONLine(nil, []byte(msg), []byte(ts), "err", 7, "a\"pp")
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("message %q timestamp %q:\n got  %s\n want %s", msg, ts, got, want.Bytes())
			}
		}
	}
}
