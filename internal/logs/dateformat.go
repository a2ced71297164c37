package logs

import (
	"strconv"
	"time"
)

// dateTok is one piece of a compiled dayjs format: a literal or a field.
type dateTok struct {
	field string // "" for a literal; otherwise the dayjs token, e.g. "YYYY"
	lit   string
}

// dateFormat is a dayjs format string compiled once and applied to many times.
type dateFormat []dateTok

// dayjsRuns gives, for each letter that starts a dayjs token, the longest run of that letter
// dayjs matches as one token (its format regex is Y{1,4}, M{1,4}, D{1,2}, d{1,4}, H{1,2},
// h{1,2}, m{1,2}, s{1,2}, Z{1,2}, a, A and SSS).
var dayjsRuns = map[byte]int{
	'Y': 4, 'M': 4, 'D': 2, 'd': 4, 'H': 2, 'h': 2, 'm': 2, 's': 2, 'Z': 2, 'a': 1, 'A': 1,
}

// knownFields are the tokens dayjs's core format understands. A matched run outside this set
// (Y, YYY) is kept as literal text.
var knownFields = map[string]bool{
	"YYYY": true, "YY": true, "M": true, "MM": true, "MMM": true, "MMMM": true,
	"D": true, "DD": true, "d": true, "dd": true, "ddd": true, "dddd": true,
	"H": true, "HH": true, "h": true, "hh": true, "m": true, "mm": true, "s": true, "ss": true,
	"SSS": true, "Z": true, "ZZ": true, "a": true, "A": true,
}

// compileDateFormat splits a dayjs format string (as in PM2's log_date_format) into tokens.
// Every input is valid: text that is not a token is copied, and "[text]" escapes text.
func compileDateFormat(format string) dateFormat {
	var toks dateFormat
	lit := make([]byte, 0, len(format))
	flush := func() {
		if len(lit) > 0 {
			toks = append(toks, dateTok{lit: string(lit)})
			lit = lit[:0]
		}
	}
	for i := 0; i < len(format); {
		c := format[i]
		if c == '[' {
			// dayjs: \[([^\]]+)] — a non-empty bracketed run is literal text.
			j := i + 1
			for j < len(format) && format[j] != ']' {
				j++
			}
			if j < len(format) && j > i+1 {
				lit = append(lit, format[i+1:j]...)
				i = j + 1
				continue
			}
			lit = append(lit, c)
			i++
			continue
		}
		if c == 'S' && i+3 <= len(format) && format[i:i+3] == "SSS" {
			flush()
			toks = append(toks, dateTok{field: "SSS"})
			i += 3
			continue
		}
		max, ok := dayjsRuns[c]
		if !ok {
			lit = append(lit, c)
			i++
			continue
		}
		n := 1
		for n < max && i+n < len(format) && format[i+n] == c {
			n++
		}
		tok := format[i : i+n]
		i += n
		if !knownFields[tok] {
			lit = append(lit, tok...)
			continue
		}
		flush()
		toks = append(toks, dateTok{field: tok})
	}
	flush()
	return toks
}

// appendTo appends t formatted by f to b.
func (f dateFormat) appendTo(b []byte, t time.Time) []byte {
	for _, tok := range f {
		if tok.field == "" {
			b = append(b, tok.lit...)
			continue
		}
		b = appendField(b, tok.field, t)
	}
	return b
}

func appendField(b []byte, field string, t time.Time) []byte {
	switch field {
	case "YYYY":
		return appendPad(b, t.Year(), 4)
	case "YY":
		y := strconv.Itoa(t.Year())
		if len(y) > 2 {
			y = y[len(y)-2:]
		}
		return append(b, y...)
	case "M":
		return strconv.AppendInt(b, int64(t.Month()), 10)
	case "MM":
		return appendPad(b, int(t.Month()), 2)
	case "MMM":
		return append(b, t.Month().String()[:3]...)
	case "MMMM":
		return append(b, t.Month().String()...)
	case "D":
		return strconv.AppendInt(b, int64(t.Day()), 10)
	case "DD":
		return appendPad(b, t.Day(), 2)
	case "d":
		return strconv.AppendInt(b, int64(t.Weekday()), 10)
	case "dd":
		return append(b, t.Weekday().String()[:2]...)
	case "ddd":
		return append(b, t.Weekday().String()[:3]...)
	case "dddd":
		return append(b, t.Weekday().String()...)
	case "H":
		return strconv.AppendInt(b, int64(t.Hour()), 10)
	case "HH":
		return appendPad(b, t.Hour(), 2)
	case "h":
		return strconv.AppendInt(b, int64(hour12(t)), 10)
	case "hh":
		return appendPad(b, hour12(t), 2)
	case "m":
		return strconv.AppendInt(b, int64(t.Minute()), 10)
	case "mm":
		return appendPad(b, t.Minute(), 2)
	case "s":
		return strconv.AppendInt(b, int64(t.Second()), 10)
	case "ss":
		return appendPad(b, t.Second(), 2)
	case "SSS":
		return appendPad(b, t.Nanosecond()/int(time.Millisecond), 3)
	case "Z", "ZZ":
		_, off := t.Zone()
		sign := byte('+')
		if off < 0 {
			sign, off = '-', -off
		}
		b = append(b, sign)
		b = appendPad(b, off/3600, 2)
		if field == "Z" {
			b = append(b, ':')
		}
		return appendPad(b, off%3600/60, 2)
	case "A":
		if t.Hour() < 12 {
			return append(b, "AM"...)
		}
		return append(b, "PM"...)
	case "a":
		if t.Hour() < 12 {
			return append(b, "am"...)
		}
		return append(b, "pm"...)
	}
	return append(b, field...)
}

func hour12(t time.Time) int {
	h := t.Hour() % 12
	if h == 0 {
		h = 12
	}
	return h
}

// appendPad appends v in decimal, left-padded with zeros to width digits.
func appendPad(b []byte, v, width int) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	var tmp [20]byte
	s := strconv.AppendInt(tmp[:0], int64(v), 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// FormatDate formats t with a dayjs format string, the syntax of PM2's log_date_format and of
// `pm2 logs --timestamp`. It supports YYYY YY M MM MMM MMMM D DD d dd ddd dddd H HH h hh m mm
// s ss SSS Z ZZ A a; text in square brackets is copied literally ("[at] HH:mm"), as is any
// other text. Z is the offset as "+01:00", ZZ as "+0100".
func FormatDate(format string, t time.Time) string {
	return string(compileDateFormat(format).appendTo(nil, t))
}
