// Package pagetrim drops, from this process's page tables, the clean file-backed pages of its own
// executable: the code and read-only data that start-up touched (package initialisers, the command
// line parser, the JavaScript engine's tables) but the long-running daemon and keeper never run
// again. The kernel maps those pages on first touch, and with fault-around (64 KiB around each
// fault) a start-up that touches a little of every package maps most of the binary; they then
// count in the process's RSS for its whole life.
//
// Trim is madvise(MADV_DONTNEED) on the executable's mappings that are read-only, private and
// hold no anonymous (copied-on-write) page: for such a mapping the call only unmaps page-cache
// pages, whose contents stay in the page cache (shared with every other process running the
// binary) and come back through a minor fault the next time the process touches them. Nothing
// writable is touched: a written private page would lose its contents.
package pagetrim

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Stats is what Trim did: the mappings it advised and their resident size before.
type Stats struct {
	Mappings int
	Bytes    int64 // resident bytes of those mappings before the call (their Rss)
}

// Trim drops this process's resident pages of its executable's read-only mappings (see the
// package doc). It is safe to call at any time from any goroutine; the code that runs meanwhile
// faults its pages back in.
func Trim() (Stats, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return Stats{}, fmt.Errorf("pagetrim: stat the executable: %w", err)
	}
	// Streamed through a small buffer, not read whole: the daemon's settler (internal/daemon)
	// trims after collections, and a whole smaps (100+ KB with 100 apps) would be garbage that
	// grows the heap it has just released.
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return Stats{}, fmt.Errorf("pagetrim: %w", err)
	}
	maps, err := readSmaps(f)
	f.Close()
	if err != nil {
		return Stats{}, fmt.Errorf("pagetrim: read smaps: %w", err)
	}
	var out Stats
	for _, m := range maps {
		if m.ino != st.Ino || m.dev != st.Dev || m.perms[1] == 'w' || m.perms[3] != 'p' || m.anon != 0 || m.rss == 0 {
			continue
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), unix.MADV_DONTNEED); errno != 0 {
			return out, fmt.Errorf("pagetrim: madvise %x-%x: %w", m.start, m.end, errno)
		}
		out.Mappings++
		out.Bytes += m.rss
	}
	return out, nil
}

// mapping is one entry of /proc/self/smaps, with what Trim looks at.
type mapping struct {
	start, end uint64
	perms      string // "r-xp"
	dev        uint64
	ino        uint64
	rss, anon  int64 // bytes
}

// parseSmaps reads the mappings of a /proc/PID/smaps text. A header line is
// "start-end perms offset major:minor inode [path]"; the fields that follow it are "Name: N kB".
func parseSmaps(data []byte) []mapping {
	out, _ := readSmaps(bytes.NewReader(data))
	return out
}

// readSmaps is parseSmaps reading from r. Field lines other than Rss and Anonymous (most of the
// text) are skipped before they are split, so that a read allocates little.
func readSmaps(r io.Reader) ([]mapping, error) {
	var out []mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		b := sc.Bytes()
		if len(b) > 0 && b[0] >= 'A' && b[0] <= 'Z' && !bytes.HasPrefix(b, []byte("Rss:")) && !bytes.HasPrefix(b, []byte("Anonymous:")) {
			continue // a field line of no interest ("Size:", "VmFlags:", ...)
		}
		line := string(b)
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && len(f[1]) == 4 {
			lo, hi, ok := strings.Cut(f[0], "-")
			if !ok {
				continue
			}
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			major, minor, ok := strings.Cut(f[3], ":")
			maj, err3 := strconv.ParseUint(major, 16, 32)
			mnr, err4 := strconv.ParseUint(minor, 16, 32)
			ino, err5 := strconv.ParseUint(f[4], 10, 64)
			if err1 != nil || err2 != nil || !ok || err3 != nil || err4 != nil || err5 != nil {
				continue
			}
			out = append(out, mapping{start: start, end: end, perms: f[1], dev: unix.Mkdev(uint32(maj), uint32(mnr)), ino: ino})
			continue
		}
		if len(out) == 0 || len(f) != 3 || f[2] != "kB" {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			out[len(out)-1].rss = n << 10
		case "Anonymous:":
			out[len(out)-1].anon = n << 10
		}
	}
	return out, sc.Err()
}

// FileRSS returns how many bytes of file-backed pages this process has mapped and resident (the
// "shared" field of /proc/self/statm: the kernel's counter, read without walking the page tables,
// so cheap enough to read every second). For the daemon, whose binary is static, that is the
// binary's pages: what Trim drops, and what grows again when code or data not run for a while is.
func FileRSS() (int64, error) {
	fd, err := unix.Open("/proc/self/statm", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("pagetrim: %w", err)
	}
	var buf [128]byte
	n, err := unix.Read(fd, buf[:])
	unix.Close(fd)
	if err != nil {
		return 0, fmt.Errorf("pagetrim: read statm: %w", err)
	}
	// "size resident shared text lib data dt", in pages.
	field := 0
	var v int64
	for _, c := range buf[:max(n, 0)] {
		switch {
		case c == ' ':
			if field == 2 {
				return v * int64(os.Getpagesize()), nil
			}
			field++
		case c >= '0' && c <= '9' && field == 2:
			v = v*10 + int64(c-'0')
		}
	}
	return 0, fmt.Errorf("pagetrim: statm %q: no shared field", buf[:max(n, 0)])
}
