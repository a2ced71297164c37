package pagetrim

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

const sample = `00400000-00c81000 r-xp 00000000 08:01 1234                               /usr/bin/corral
Size:               8708 kB
Rss:                6528 kB
Anonymous:             0 kB
00c81000-0158b000 r--p 00881000 08:01 1234                               /usr/bin/corral
Rss:                6184 kB
Anonymous:             4 kB
0158b000-01780000 rw-p 0118b000 08:01 1234                               /usr/bin/corral
Rss:                 468 kB
Anonymous:           380 kB
7f0364120000-7f0364300000 rw-p 00000000 00:00 0 
Rss:                 252 kB
Anonymous:           252 kB
`

func TestParseSmaps(t *testing.T) {
	ms := parseSmaps([]byte(sample))
	if len(ms) != 4 {
		t.Fatalf("%d mappings, want 4: %+v", len(ms), ms)
	}
	m := ms[0]
	if m.start != 0x400000 || m.end != 0xc81000 || m.perms != "r-xp" || m.ino != 1234 || m.dev != unix.Mkdev(8, 1) ||
		m.rss != 6528<<10 || m.anon != 0 {
		t.Errorf("first mapping %+v", m)
	}
	if ms[1].anon != 4<<10 || ms[3].ino != 0 || ms[3].rss != 252<<10 {
		t.Errorf("mappings %+v", ms)
	}
}

// blob is 256 KiB of read-only data in the executable (the compiler folds the constant).
const (
	x16   = "0123456789abcdef"
	x256  = x16 + x16 + x16 + x16 + x16 + x16 + x16 + x16 + x16 + x16 + x16 + x16 + x16 + x16 + x16 + x16
	x4k   = x256 + x256 + x256 + x256 + x256 + x256 + x256 + x256 + x256 + x256 + x256 + x256 + x256 + x256 + x256 + x256
	x64k  = x4k + x4k + x4k + x4k + x4k + x4k + x4k + x4k + x4k + x4k + x4k + x4k + x4k + x4k + x4k + x4k
	blob  = x64k + x64k + x64k + x64k
	pageB = 4096
)

func sum(s string) (n int) {
	for i := 0; i < len(s); i += 512 {
		n += int(s[i])
	}
	return n
}

// resident counts the pages of [addr, addr+size) mapped in this process (/proc/self/pagemap).
func resident(t *testing.T, addr, size uintptr) int {
	t.Helper()
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := size / pageB
	buf := make([]byte, 8*n)
	if _, err := f.ReadAt(buf, int64(addr/pageB*8)); err != nil {
		t.Fatal(err)
	}
	pages := 0
	for i := uintptr(0); i < n; i++ {
		if buf[8*i+7]&0x80 != 0 { // bit 63: present
			pages++
		}
	}
	return pages
}

// TestTrim: the executable's read-only pages leave the page tables and come back, intact, when
// touched; writable mappings keep theirs.
func TestTrim(t *testing.T) {
	want := sum(blob)
	// The middle 128 KiB of blob: whole pages that nothing but blob shares a 64 KiB
	// fault-around window with.
	start := (uintptr(unsafe.Pointer(unsafe.StringData(blob))) + 64<<10 + pageB - 1) &^ (64<<10 - 1)
	const size = 128 << 10
	if before := resident(t, start, size); before != size/pageB {
		t.Fatalf("%d of %d pages of the blob resident after reading it", before, size/pageB)
	}
	var rwBefore int64
	for _, m := range exeMappings(t) {
		if m.perms[1] == 'w' {
			rwBefore += m.rss
		}
	}
	st, err := Trim()
	if err != nil {
		t.Fatal(err)
	}
	if st.Mappings == 0 || st.Bytes == 0 {
		t.Fatalf("Trim did nothing: %+v", st)
	}
	if after := resident(t, start, size); after != 0 {
		t.Errorf("%d of %d pages of the blob still resident after Trim", after, size/pageB)
	}
	var rwAfter int64
	for _, m := range exeMappings(t) {
		if m.perms[1] == 'w' {
			rwAfter += m.rss
		}
	}
	if rwAfter < rwBefore {
		t.Errorf("writable resident %d KiB after Trim, %d before: Trim must not touch writable mappings", rwAfter>>10, rwBefore>>10)
	}
	if got := sum(blob); got != want {
		t.Fatalf("blob's checksum %d after Trim, %d before", got, want)
	}
	if back := resident(t, start, size); back != size/pageB {
		t.Errorf("%d of %d pages of the blob resident after reading it again", back, size/pageB)
	}
}

// exeMappings returns this test binary's mappings from /proc/self/smaps.
func exeMappings(t *testing.T) []mapping {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var out []mapping
	for _, m := range parseSmaps(data) {
		if m.ino == st.Ino && m.dev == st.Dev {
			out = append(out, m)
		}
	}
	return out
}

// TestReadSmapsAllocatesLittle: the field lines Trim does not use (most of a real smaps) are
// skipped unsplit, so reading the process's own smaps allocates per mapping, not per line; the
// daemon trims after collections, and garbage here would grow the heap it has just released.
func TestReadSmapsAllocatesLittle(t *testing.T) {
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	ms := parseSmaps(data)
	if len(ms) == 0 {
		t.Fatal("no mappings in /proc/self/smaps")
	}
	lines := 0
	for _, c := range data {
		if c == '\n' {
			lines++
		}
	}
	allocs := testing.AllocsPerRun(5, func() { parseSmaps(data) })
	// Per mapping: the header line and its fields, the Rss and Anonymous lines and theirs, and
	// the growth of the result; not 2 for every one of the ~25 lines of each mapping.
	if perMapping := allocs / float64(len(ms)); perMapping > 10 {
		t.Errorf("%.0f allocations for %d mappings (%d lines): %.1f per mapping, want <= 10", allocs, len(ms), lines, perMapping)
	}
}

// FileRSS reads the resident file-backed pages: more than nothing (the test binary runs), and
// the same figure smaps_rollup gives within a margin (the counters are per-CPU batched).
func TestFileRSS(t *testing.T) {
	got, err := FileRSS()
	if err != nil {
		t.Fatal(err)
	}
	if got <= 0 {
		t.Fatalf("FileRSS %d, want > 0", got)
	}
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		t.Skip(err)
	}
	var rss, anon int64
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "Rss:" {
			rss, _ = strconv.ParseInt(f[1], 10, 64)
		}
		if len(f) == 3 && f[0] == "Anonymous:" {
			anon, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	want := (rss - anon) << 10
	if d := got - want; d > 1<<20 || d < -(1<<20) {
		t.Fatalf("FileRSS %d, smaps_rollup says %d", got, want)
	}
}
