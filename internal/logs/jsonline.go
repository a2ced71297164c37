package logs

import (
	"strconv"
	"unicode/utf8"
)

// appendJSONLine appends the JSON log line of message (PM2's field names and order, as WriteJSON
// writes it, newline included) to b, without encoding/json's reflection and allocations: the log
// pump formats every line of a JSON log with it. An empty timestamp leaves its key out.
func appendJSONLine(b, message, timestamp []byte, stream string, id int, app string) []byte {
	b = append(b, `{"message":`...)
	b = appendJSONString(b, message)
	if len(timestamp) > 0 {
		b = append(b, `,"timestamp":`...)
		b = appendJSONString(b, timestamp)
	}
	b = append(b, `,"type":`...)
	b = appendJSONString(b, stream)
	b = append(b, `,"process_id":`...)
	b = strconv.AppendInt(b, int64(id), 10)
	b = append(b, `,"app_name":`...)
	b = appendJSONString(b, app)
	return append(b, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string exactly as encoding/json writes it with HTML
// escaping off (Encoder.SetEscapeHTML(false)): invalid UTF-8 becomes \ufffd, U+2028 and U+2029
// are escaped, control characters take their short escape or \u00XX.
func appendJSONString[S []byte | string](b []byte, s S) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
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
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
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
