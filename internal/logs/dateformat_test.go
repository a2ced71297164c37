package logs

import (
	"testing"
	"time"
)

func TestFormatDate(t *testing.T) {
	pm := time.Date(2024, 3, 5, 14, 7, 9, 45e6, time.FixedZone("CET", 3600))
	am := time.Date(2009, 11, 29, 0, 3, 4, 999e6, time.FixedZone("NST", -(3*3600+30*60)))
	for _, tc := range []struct {
		format string
		t      time.Time
		want   string
	}{
		{"YYYY-MM-DD HH:mm:ss Z", pm, "2024-03-05 14:07:09 +01:00"},
		{"YYYY-MM-DDTHH:mm:ss", pm, "2024-03-05T14:07:09"}, // PM2's --time format
		{"YY M D H m s", pm, "24 3 5 14 7 9"},
		{"hh:mm A", pm, "02:07 PM"},
		{"h:mm a", am, "12:03 am"},
		{"HH:mm:ss.SSS", pm, "14:07:09.045"},
		{"HH:mm:ss.SSS", am, "00:03:04.999"},
		{"ZZ", pm, "+0100"},
		{"Z ZZ", am, "-03:30 -0330"},
		{"Z", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), "+00:00"},
		{"MMM MMMM", am, "Nov November"},
		{"d dd ddd dddd", pm, "2 Tu Tue Tuesday"},
		{"[YYYY] YYYY", pm, "YYYY 2024"},
		{"[at] HH[h]", pm, "at 14h"},
		{"[] [x", pm, "[] [x"},
		{"[unclosed", pm, "[unclo9e2"}, // as in dayjs: s and d are tokens outside brackets
		{"DD/MM/YYYY", am, "29/11/2009"},
		{"YYYYY", pm, "2024Y"}, // runs longer than a token split as dayjs does
		{"SS S", pm, "SS S"},   // only SSS is a token
		{"Y YYY", pm, "Y YYY"}, // matched by dayjs but not fields: kept literally
		{"x: é", pm, "x: é"},   // anything else is copied
		{"", pm, ""},
		{"HHH", pm, "1414"},
	} {
		if got := FormatDate(tc.format, tc.t); got != tc.want {
			t.Errorf("FormatDate(%q) = %q, want %q", tc.format, got, tc.want)
		}
	}
}

func BenchmarkDatePrefix(b *testing.B) {
	f := compileDateFormat("YYYY-MM-DD HH:mm:ss.SSS Z")
	now := time.Now()
	buf := make([]byte, 0, 64)
	for b.Loop() {
		buf = f.appendTo(buf[:0], now)
	}
}
