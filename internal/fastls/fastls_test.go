package fastls

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/cli"
	"github.com/corralhq/corral/internal/daemonproc"
)

func TestConstantsMatch(t *testing.T) {
	if envHome != daemonproc.EnvHome || envPM2Home != daemonproc.EnvPM2Home || runtimeName != cli.RuntimeName ||
		fastHeader != api.FastHeader || lsMethod != api.MethodListText || jlistMethod != api.MethodJList {
		t.Error("fastls's constants differ from cli's, daemonproc's or api's")
	}
	p := daemonproc.PathsFor("/h")
	files := map[string]bool{}
	for _, f := range homeFiles {
		files["/h/"+f] = true
	}
	for _, f := range []string{p.Socket, p.PidFile, p.SpawnLock, p.LogFile, p.KeeperPidFile, "/h/keeper.sock"} {
		if !files[f] {
			t.Errorf("%s (daemonproc.CheckHome checks it) is not in homeFiles", f)
		}
	}
	if "/h/"+socketFile != p.Socket {
		t.Errorf("socket %s, want %s", socketFile, p.Socket)
	}
}

func TestHomeDir(t *testing.T) {
	for _, c := range []struct {
		env  []string
		want string // "" when the ordinary path must decide
	}{
		{[]string{"HOME=/home/u"}, "/home/u/.corral"},
		{[]string{"HOME=/home/u", "PM2_HOME=/p"}, "/p"},
		{[]string{"HOME=/home/u", "PM2_HOME=/p", "CORRAL_HOME=/c/./d/"}, "/c/d"},
		{[]string{"CORRAL_HOME=/c", "CORRAL_HOME=rel/x"}, "/wd/rel/x"}, // the last one wins, as app.getenv
		{[]string{"CORRAL_HOME=", "PM2_HOME=../p"}, "/p"},
		{[]string{"CORRAL_HOME=/c", "CORRAL_HOME="}, ""}, // empty: then PM2_HOME, then HOME
		{[]string{"HOME="}, ""},
		{nil, ""},
		{[]string{"HOME=rel"}, "/wd/rel/.corral"},
	} {
		got, ok := homeDir(c.env, "/wd")
		if !ok {
			got = ""
		}
		if got != c.want {
			t.Errorf("homeDir(%q) = %q, want %q", c.env, got, c.want)
		}
	}
}

func TestPlainString(t *testing.T) {
	for s, want := range map[string]bool{"0.1.0-dev": true, "1.2.3+g1a2b~x": true, `a"b`: false, `a\b`: false, "a\nb": false, "é": false} {
		if plainString(s) != want {
			t.Errorf("plainString(%q) = %v", s, !want)
		}
	}
}

const okHead = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: application/json\r\nDate: Mon, 30 Nov 2026 17:00:00 GMT\r\nConnection: close\r\n\r\n"

// chunks returns a read function that returns the pieces one by one, then 0, nil (the end), or
// err when set.
func chunks(err error, pieces ...string) func([]byte) (int, error) {
	return func(p []byte) (int, error) {
		if len(pieces) == 0 {
			return 0, err
		}
		n := copy(p, pieces[0])
		if n < len(pieces[0]) {
			pieces[0] = pieces[0][n:]
		} else {
			pieces = pieces[1:]
		}
		return n, nil
	}
}

func bytewise(s string) []string {
	var out []string
	for i := range len(s) {
		out = append(out, s[i:i+1])
	}
	return out
}

func TestReadResponse(t *testing.T) {
	big := strings.Repeat("x", 300<<10) // more than the first buffer
	for _, c := range []struct {
		name   string
		read   func([]byte) (int, error)
		want   string
		wantOK bool
	}{
		{"whole", chunks(nil, okHead+"[1,2]"), "[1,2]", true},
		{"byte by byte", chunks(nil, bytewise(okHead+"[1,2]")...), "[1,2]", true},
		{"no body yet then end", chunks(nil, okHead+"[1,"), "", false},
		{"head cut", chunks(nil, "HTTP/1.1 200 OK\r\nContent-Le"), "", false},
		{"read error", chunks(errors.New("EAGAIN"), okHead+"[1"), "", false},
		{"read error after all", chunks(errors.New("EAGAIN"), okHead+"[1,2]"), "[1,2]", true},
		{"nothing", chunks(nil), "", false},
		{"garbage", chunks(nil, "\x00\x01garbage\r\n\r\n"), "", false},
		{"endless head", chunks(nil, "HTTP/1.1 200 OK\r\nX: "+strings.Repeat("y", 9000)), "", false},
		{"too much", chunks(nil, okHead+"[1,2]x"), "", false},
		{"not 200", chunks(nil, strings.Replace(okHead, "200 OK", "404 Not Found", 1)+"[1,2]"), "", false},
		{"HTTP/1.0", chunks(nil, strings.Replace(okHead, "HTTP/1.1", "HTTP/1.0", 1)+"[1,2]"), "", false},
		{"chunked", chunks(nil, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[1,2]\r\n0\r\n\r\n"), "", false},
		{"chunked with length", chunks(nil, strings.Replace(okHead, "Date:", "Transfer-Encoding: chunked\r\nDate:", 1)+"[1,2]"), "", false},
		{"gzip", chunks(nil, strings.Replace(okHead, "Date:", "Content-Encoding: gzip\r\nDate:", 1)+"[1,2]"), "", false},
		{"no length", chunks(nil, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[1,2]"), "", false},
		{"two lengths", chunks(nil, strings.Replace(okHead, "Date:", "Content-Length: 5\r\nDate:", 1)+"[1,2]"), "", false},
		{"signed length", chunks(nil, strings.Replace(okHead, "Length: 5", "Length: +5", 1)+"[1,2]"), "", false},
		{"bad length", chunks(nil, strings.Replace(okHead, "Length: 5", "Length: 5x", 1)+"[1,2]"), "", false},
		{"huge length", chunks(nil, strings.Replace(okHead, "Length: 5", "Length: 99999999999", 1)+"[1,2]"), "", false},
		{"other type", chunks(nil, strings.Replace(okHead, "application/json", "text/plain", 1)+"[1,2]"), "", false},
		{"no type", chunks(nil, strings.Replace(okHead, "Content-Type: application/json\r\n", "", 1)+"[1,2]"), "", false},
		{"header without colon", chunks(nil, strings.Replace(okHead, "Date:", "Date", 1)+"[1,2]"), "", false},
		{"case and spaces", chunks(nil, "HTTP/1.1 200 OK\r\ncontent-length:5 \r\nCONTENT-TYPE:\tapplication/json\r\n\r\n[1,2]"), "[1,2]", true},
		{"big", chunks(nil, strings.Replace(okHead, "Length: 5", "Length: "+strconv.Itoa(len(big)), 1), big[:1000], big[1000:]), big, true},
	} {
		got, ok := readResponse(c.read, jlistType)
		if ok != c.wantOK || string(got) != c.want {
			g := string(got)
			if len(g) > 40 {
				g = g[:40] + "..."
			}
			t.Errorf("%s: readResponse = %q, %v; want ok %v", c.name, g, ok, c.wantOK)
		}
	}
}
