package logs

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"
)

// appendJSONLine appends the JSON log line of message (PM2's field names and order, as WriteJSON
// writes it, newline included) to b, without encoding/json's reflection and allocations. An empty
// timestamp leaves its key out.
func appendJSONLine(b, message, timestamp []byte, stream string, id int, app string) []byte {
	b = appendJSONHead(b, message)
	b = appendJSONStamp(b, timestamp)
	return appendJSONTail(b, stream, id, app)
}

// appendJSONHead appends `{"message":"<message>"`.
func appendJSONHead(b, message []byte) []byte {
	return appendJSONString(append(b, `{"message":`...), message)
}

// appendJSONStamp appends `,"timestamp":"<timestamp>"`, or nothing for an empty timestamp.
func appendJSONStamp(b, timestamp []byte) []byte {
	if len(timestamp) == 0 {
		return b
	}
	return appendJSONString(append(b, `,"timestamp":`...), timestamp)
}

// appendJSONTail appends the rest of a line after its message and timestamp, newline included:
// the same for every line of a writer.
func appendJSONTail(b []byte, stream string, id int, app string) []byte {
	b = appendJSONString(append(b, `,"type":`...), []byte(stream))
	b = strconv.AppendInt(append(b, `,"process_id":`...), int64(id), 10)
	b = appendJSONString(append(b, `,"app_name":`...), []byte(app))
	return append(b, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// jsonPlain marks the ASCII bytes a JSON string holds as they are.
var jsonPlain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plain8 reports whether none of the 8 bytes of x needs escaping or is outside ASCII: no byte
// below 0x20, no '"', no '\\', no high bit.
func plain8(x uint64) bool {
	zero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	return (x|(x-ones*0x20)|zero(x^(ones*'"'))|zero(x^(ones*'\\')))&highs == 0
}

// appendJSONString appends s as a JSON string exactly as encoding/json writes it with HTML
// escaping off (Encoder.SetEscapeHTML(false)): invalid UTF-8 becomes \ufffd, U+2028 and U+2029
// are escaped, control characters take their short escape or \u00XX. Runs of plain ASCII are
// skipped 8 bytes at a time.
func appendJSONString(b, s []byte) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		for i+8 <= len(s) && plain8(binary.LittleEndian.Uint64(s[i:])) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonPlain[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
