package main

// The README's commands, run: "every command shown in the README is run by a test — a documented
// command that fails is a bug". The tests here parse README.md (and, for syntax only, bench/README.md
// and docs/*.md), so that editing a document changes what is tested:
//
//   - TestReadmeBlocks: every fenced block of README.md is of a kind one of these tests runs.
//   - TestReadmeQuickStart: the first sh block's command 1 (build, start, curl, ls), for real, then
//     `./corral kill`.
//   - TestReadmeCLI: every command of the CLI block, for real, against bundled apps
//     (testdata/readme, and ./server written with the README's Node fd 3 line); `corral runtime`
//     in the background rather than as PID 1, `corral startup` only with --print-only.
//   - TestReadmeAnyProgram: the other "Cluster mode for any program" snippets (Go, Python,
//     gunicorn, uvicorn, a Go cluster program under corral); gunicorn and uvicorn are skipped
//     locally when not installed (CI installs them and fails without them).
//   - TestReadmeSeed, TestReadmeNewPrimary, TestReadmeGoImport, TestReadmeNodePrimaryGoWorkers: the
//     Go and JS blocks.
//   - TestReadmeMigrationTable: every corral command and flag the PM2 table names is recognised.
//   - TestReadmeDevCommands: the go test / bash commands of README.md, bench/README.md and docs/
//     name packages, tests, scripts and knobs that exist (nothing is run).

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// ---- markdown ----

// mdDoc is a markdown file split into its fenced code blocks and the prose around them.
type mdDoc struct {
	File   string // path relative to the module root
	Blocks []mdBlock
	Prose  string // the file with every fenced block blanked out, line numbers kept
}

// mdBlock is one fenced code block.
type mdBlock struct {
	File string
	Line int    // line of the opening fence
	Lang string // first word of the info string
	Text string // the content, without the fences
}

func (b mdBlock) String() string { return fmt.Sprintf("%s:%d (```%s)", b.File, b.Line, b.Lang) }

// mdSpan is an inline code span.
type mdSpan struct {
	Line int
	Text string
}

var fenceRE = regexp.MustCompile("^( {0,3})(`{3,}|~{3,})[ \t]*([^ \t`]*)")

// parseMarkdown splits src into fenced blocks (CommonMark fences: ``` or ~~~, up to 3 spaces of
// indentation, closed by a fence of the same character at least as long) and prose.
func parseMarkdown(file, src string) mdDoc {
	lines := strings.Split(src, "\n")
	prose := make([]string, len(lines))
	d := mdDoc{File: file}
	for i := 0; i < len(lines); i++ {
		m := fenceRE.FindStringSubmatch(lines[i])
		if m == nil {
			prose[i] = lines[i]
			continue
		}
		indent, fence := len(m[1]), m[2]
		b := mdBlock{File: file, Line: i + 1, Lang: m[3]}
		var body []string
		j := i + 1
		for ; j < len(lines); j++ {
			l := lines[j]
			s := strings.TrimLeft(l, " ")
			closing := strings.TrimRight(s, " \t")
			if len(l)-len(s) <= 3 && len(closing) >= len(fence) && strings.Trim(closing, fence[:1]) == "" {
				break
			}
			k := 0
			for k < indent && k < len(l) && l[k] == ' ' {
				k++
			}
			body = append(body, l[k:])
		}
		if len(body) > 0 {
			b.Text = strings.Join(body, "\n") + "\n"
		}
		d.Blocks = append(d.Blocks, b)
		i = j
	}
	d.Prose = strings.Join(prose, "\n")
	return d
}

func loadDoc(t *testing.T, rel string) mdDoc {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(moduleRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return parseMarkdown(rel, string(src))
}

func moduleRoot(t testing.TB) string {
	t.Helper()
	root := nodetest.ModuleRoot()
	if root == "" {
		t.Fatal("module root not found")
	}
	return root
}

var spanRE = regexp.MustCompile("`([^`]+)`")

// spansIn returns the inline code spans of text, whose first line is line firstLine of its file.
func spansIn(text string, firstLine int) []mdSpan {
	var out []mdSpan
	for _, m := range spanRE.FindAllStringSubmatchIndex(text, -1) {
		out = append(out, mdSpan{
			Line: firstLine + strings.Count(text[:m[0]], "\n"),
			Text: strings.ReplaceAll(text[m[2]:m[3]], "\n", " "),
		})
	}
	return out
}

// section returns the prose under the heading titled title, up to the next heading of the same or
// a higher level, and the line it starts on.
func (d mdDoc) section(t *testing.T, title string) (string, int) {
	t.Helper()
	lines := strings.Split(d.Prose, "\n")
	for i, l := range lines {
		level := len(l) - len(strings.TrimLeft(l, "#"))
		if level == 0 || strings.TrimSpace(l[level:]) != title {
			continue
		}
		j := i + 1
		for ; j < len(lines); j++ {
			if n := len(lines[j]) - len(strings.TrimLeft(lines[j], "#")); n > 0 && n <= level && strings.HasPrefix(lines[j][n:], " ") {
				break
			}
		}
		return strings.Join(lines[i:j], "\n"), i + 1
	}
	t.Fatalf("%s has no section %q", d.File, title)
	return "", 0
}

// tableRows returns the rows of the pipe tables in text, header rows included, separator rows
// left out; "\|" in a cell is a literal "|".
func tableRows(text string) [][]string {
	var rows [][]string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "|") {
			continue
		}
		l = strings.TrimSuffix(strings.TrimPrefix(l, "|"), "|")
		var cells []string
		var cur strings.Builder
		for i := 0; i < len(l); i++ {
			switch {
			case l[i] == '\\' && i+1 < len(l) && l[i+1] == '|':
				cur.WriteByte('|')
				i++
			case l[i] == '|':
				cells = append(cells, strings.TrimSpace(cur.String()))
				cur.Reset()
			default:
				cur.WriteByte(l[i])
			}
		}
		cells = append(cells, strings.TrimSpace(cur.String()))
		separator := true
		for _, c := range cells {
			if strings.Trim(c, ":-") != "" {
				separator = false
			}
		}
		if !separator {
			rows = append(rows, cells)
		}
	}
	return rows
}

// shCmd is one command line of a shell block.
type shCmd struct {
	Line    int    // its line in the file
	Text    string // the command, its comment removed
	Comment string // its trailing comment or, without one, the comment lines just above it
}

// shCommands returns the command lines of a shell block.
func shCommands(b mdBlock) []shCmd {
	var out []shCmd
	var lead []string
	for i, l := range strings.Split(strings.TrimSuffix(b.Text, "\n"), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "":
			lead = nil
		case strings.HasPrefix(l, "#"):
			lead = append(lead, strings.TrimSpace(strings.TrimPrefix(l, "#")))
		default:
			text, comment := splitUnquoted(l, "#")
			if comment == "" {
				comment = strings.Join(lead, " ")
			}
			out = append(out, shCmd{Line: b.Line + 1 + i, Text: text, Comment: comment})
			lead = nil
		}
	}
	return out
}

// splitUnquoted splits l at the first sep outside quotes ("#" only where a word starts), both parts
// trimmed; the second is "" when there is no sep.
func splitUnquoted(l, sep string) (string, string) {
	var quote byte
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case strings.HasPrefix(l[i:], sep) && (sep != "#" || i == 0 || l[i-1] == ' ' || l[i-1] == '\t'):
			return strings.TrimSpace(l[:i]), strings.TrimSpace(l[i+len(sep):])
		}
	}
	return strings.TrimSpace(l), ""
}

// splitList splits a command line at every sep (";" or "&&") outside quotes.
func splitList(l, sep string) []string {
	var out []string
	for {
		head, rest := splitUnquoted(l, sep)
		out = append(out, head)
		if rest == "" {
			return out
		}
		l = rest
	}
}

// shellWords splits a command into words, honouring single and double quotes (no escapes: the
// documented commands have none).
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	var quote byte
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// codeLines returns the lines of code with their indentation and trailing blanks removed.
func codeLines(code string) []string {
	lines := strings.Split(strings.TrimRight(code, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return lines
}

// containsCode reports whether the lines of block appear in file, in a row, indentation aside.
func containsCode(file, block string) bool {
	f, b := codeLines(file), codeLines(block)
	for i := 0; i+len(b) <= len(f); i++ {
		if slices.Equal(f[i:i+len(b)], b) {
			return true
		}
	}
	return false
}

// ---- the kinds of block README.md holds ----

// readmeKinds are the kinds of fenced block README.md may hold and the test that runs each; a block
// of no kind fails TestReadmeBlocks, so that a new block comes with its test.
var readmeKinds = []struct {
	key, test string
	match     func(mdBlock) bool
}{
	{"quickstart", "TestReadmeQuickStart", func(b mdBlock) bool {
		return b.Lang == "sh" && strings.Contains(b.Text, "go build -o corral ./cmd/corral")
	}},
	{"cli", "TestReadmeCLI", func(b mdBlock) bool {
		return b.Lang == "sh" && strings.HasPrefix(b.Text, "corral ") && !strings.HasPrefix(b.Text, "corral web")
	}},
	{"web", "TestReadmeWeb", func(b mdBlock) bool { return b.Lang == "sh" && strings.HasPrefix(b.Text, "corral web") }},
	{"runtimes", "TestReadmeRuntimes", func(b mdBlock) bool { return b.Lang == "sh" && strings.HasPrefix(b.Text, "# Bun and Deno apps") }},
	{"import", "TestReadmeGoImport", func(b mdBlock) bool { return b.Lang == "go" && strings.HasPrefix(b.Text, "import ") }},
	{"seed", "TestReadmeSeed", func(b mdBlock) bool { return b.Lang == "go" && strings.Contains(b.Text, "func main()") }},
	{"newprimary", "TestReadmeNewPrimary", func(b mdBlock) bool {
		return b.Lang == "go" && strings.Contains(b.Text, "cluster.NewPrimary(")
	}},
	{"nodeprimary", "TestReadmeNodePrimaryGoWorkers", func(b mdBlock) bool {
		return b.Lang == "js" && strings.Contains(b.Text, "process.execPath")
	}},
	{"dashboards", "TestReadmeDashboards", func(b mdBlock) bool { return b.Lang == "sh" && strings.Contains(b.Text, "corral monit") }},
	// health_readme_test.go
	{"health-eco", "TestReadmeHealthChecks", func(b mdBlock) bool { return b.Lang == "js" && strings.Contains(b.Text, "readiness_probe") }},
	{"health-notify", "TestReadmeHealthChecks", func(b mdBlock) bool { return b.Lang == "python" && strings.Contains(b.Text, "NOTIFY_SOCKET") }},
	{"health", "TestReadmeHealthChecks", func(b mdBlock) bool { return b.Lang == "sh" && strings.HasPrefix(b.Text, "# health checks") }},
	{"pm2import", "TestReadmeMovingFromPM2", func(b mdBlock) bool { return b.Lang == "sh" && strings.Contains(b.Text, "corral import-pm2") }},
	{"drainrecipes", "TestReadmeDrainRecipes", func(b mdBlock) bool {
		return b.Lang == "sh" && strings.HasPrefix(b.Text, "# Other languages")
	}},
}

// readmeBlock returns the one block of README.md of the kind key.
func readmeBlock(t *testing.T, d mdDoc, key string) mdBlock {
	t.Helper()
	for _, k := range readmeKinds {
		if k.key != key {
			continue
		}
		var found []mdBlock
		for _, b := range d.Blocks {
			if k.match(b) {
				found = append(found, b)
			}
		}
		if len(found) != 1 {
			t.Fatalf("README.md has %d blocks of kind %q (want 1): %v", len(found), key, found)
		}
		return found[0]
	}
	t.Fatalf("no block kind %q", key)
	return mdBlock{}
}

// Every fenced block of README.md is of exactly one kind that a test here runs, and every kind is
// there once.
func TestReadmeBlocks(t *testing.T) {
	d := loadDoc(t, "README.md")
	for _, b := range d.Blocks {
		var kinds []string
		for _, k := range readmeKinds {
			if k.match(b) {
				kinds = append(kinds, k.key)
			}
		}
		if len(kinds) != 1 {
			t.Errorf("%v is of %d kinds %v that readme_test.go runs, want exactly 1: give it a test (readmeKinds)", b, len(kinds), kinds)
		}
	}
	for _, k := range readmeKinds {
		n := 0
		for _, b := range d.Blocks {
			if k.match(b) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("README.md has %d blocks of kind %q (run by %s), want 1", n, k.key, k.test)
		}
	}
}

// ---- running commands ----

// runBounded runs cmd in its own process group with stdout and stderr merged, kills the group when
// timeout passes (and, after, whatever the command left in it) and returns the output.
func runBounded(cmd *exec.Cmd, timeout time.Duration) (string, error) {
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return "", err
	}
	timer := time.AfterFunc(timeout, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err := cmd.Wait()
	expired := !timer.Stop()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the daemon is not in it: it runs in its own session
	if expired {
		err = fmt.Errorf("still running after %v, killed (%v)", timeout, err)
	}
	return buf.String(), err
}

// shRun runs line with `bash -e -c` in dir, bounded by timeout, and returns its output; a non-zero
// exit fails the test.
func shRun(t *testing.T, dir string, env []string, line string, timeout time.Duration) string {
	t.Helper()
	cmd := exec.Command("bash", "-e", "-c", line)
	cmd.Dir, cmd.Env = dir, env
	out, err := runBounded(cmd, timeout)
	if err != nil {
		t.Fatalf("bash -c %q: %v\n%s", line, err, out)
	}
	return out
}

// cleanEnv is this process's environment without the variables that would change what corral or
// its apps do, with home as CORRAL_HOME and the test's corral first on PATH.
func cleanEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "PORT", "CORRAL_HOME", "PM2_HOME", "NODE_UNIQUE_ID", "NODE_CHANNEL_FD", "LISTEN_FDS", "LISTEN_PID",
			"LISTEN_FDNAMES", "NOTIFY_SOCKET", "PATH":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "CORRAL_HOME="+home, "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// readmeHome returns a private CORRAL_HOME (under a short directory: the socket path limit) and the
// environment of cleanEnv. When the test ends the daemon is stopped and every process that still
// carries this CORRAL_HOME (the daemon's apps do) is killed.
func readmeHome(t *testing.T) (string, []string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "crm-")
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "h")
	t.Cleanup(func() {
		if pid, err := daemonproc.ReadPid(filepath.Join(home, "corral.pid")); err == nil && daemonproc.Alive(pid) {
			syscall.Kill(pid, syscall.SIGTERM)
			waitExit(pid, 10*time.Second)
			syscall.Kill(pid, syscall.SIGKILL)
			waitExit(pid, 5*time.Second)
		}
		for _, pid := range procsWithHome(home) {
			syscall.Kill(pid, syscall.SIGKILL)
			waitExit(pid, 5*time.Second)
		}
		os.RemoveAll(dir)
	})
	return home, cleanEnv(home)
}

// waitExit waits (on a pidfd) up to timeout for pid to exit and reports whether it did.
func waitExit(pid int, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return daemonproc.WaitExit(ctx, pid) == nil
}

// waitGone fails the test for every pid that is still running after 10 s.
func waitGone(t *testing.T, what string, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		if pid > 0 && !waitExit(pid, 10*time.Second) {
			t.Errorf("%s: process %d still runs: %s", what, pid, cmdline(pid))
		}
	}
}

// procsWithHome returns the processes whose environment has CORRAL_HOME=home: the daemon and the
// apps of that home (zombies have an empty environment).
func procsWithHome(home string) []int {
	want := "CORRAL_HOME=" + home
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		if slices.Contains(strings.Split(string(b), "\x00"), want) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// checkNoneLeft fails the test when a process of home is still running 10 s from now (polled: no
// event reports the last of a set of processes that are not ours to wait for).
func checkNoneLeft(t *testing.T, home string) {
	t.Helper()
	var left []int
	if !testutil.Eventually(10*time.Second, func() bool { left = procsWithHome(home); return len(left) == 0 }) {
		var desc []string
		for _, pid := range left {
			desc = append(desc, fmt.Sprintf("%d (%s)", pid, cmdline(pid)))
		}
		t.Errorf("processes of CORRAL_HOME=%s still running: %s", home, strings.Join(desc, ", "))
	}
}

// jproc is an entry of `corral jlist`.
type jproc struct {
	PID  int            `json:"pid"`
	Name string         `json:"name"`
	ID   int            `json:"pm_id"`
	Env  map[string]any `json:"pm2_env"`
}

func (p jproc) str(k string) string  { s, _ := p.Env[k].(string); return s }
func (p jproc) num(k string) float64 { f, _ := p.Env[k].(float64); return f }
func (p jproc) status() string       { return p.str("status") }
func (p jproc) String() string {
	return fmt.Sprintf("%d:%s(pid %d, %s)", p.ID, p.Name, p.PID, p.status())
}
func byName(ps []jproc, n string) (o []jproc) {
	for _, p := range ps {
		if p.Name == n {
			o = append(o, p)
		}
	}
	return o
}

// jlist returns the process list, from the test's corral.
func jlist(t *testing.T, dir string, env []string) []jproc {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "corral"), "jlist")
	cmd.Dir, cmd.Env = dir, env
	out, err := runBounded(cmd, time.Minute)
	if err != nil {
		t.Fatalf("corral jlist: %v\n%s", err, out)
	}
	var ps []jproc
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		t.Fatalf("corral jlist: %v\n%s", err, out)
	}
	return ps
}

// tableRowsOf parses the first box-drawn table of out (`corral ls`) into rows keyed by header.
func tableRowsOf(out string) []map[string]string {
	var header []string
	var rows []map[string]string
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "│") {
			if header != nil && !strings.HasPrefix(l, "├") && !strings.HasPrefix(l, "┌") {
				break
			}
			continue
		}
		cells := strings.Split(strings.Trim(l, "│"), "│")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if header == nil {
			header = cells
			continue
		}
		row := map[string]string{}
		for i, h := range header {
			if i < len(cells) {
				row[h] = cells[i]
			}
		}
		rows = append(rows, row)
	}
	return rows
}

var readmeHTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func getBody(url string) (string, error) {
	res, err := readmeHTTP.Get(url)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err == nil && res.StatusCode != 200 {
		err = fmt.Errorf("status %d", res.StatusCode)
	}
	return string(b), err
}

// replaceRE replaces every match of re in s, failing the test when there are fewer than min: a
// README command changed so that the substitution no longer applies must not run unsubstituted.
func replaceRE(t *testing.T, s, re, repl string, min int) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	if n := len(rx.FindAllStringIndex(s, -1)); n < min {
		t.Fatalf("%q: %d matches of %s to substitute, want at least %d: update readme_test.go", s, n, re, min)
	}
	return rx.ReplaceAllString(s, repl)
}

var instancesRE = regexp.MustCompile(`\b(\d+) instances\b`)

// instanceCount resolves -i as PM2 does: max or 0 is one per CPU, -N is the CPUs minus N.
func instanceCount(t *testing.T, v string) int {
	t.Helper()
	if v == "max" || v == "0" {
		return runtime.NumCPU()
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("-i %s: not a count", v)
	}
	if n < 0 {
		n += runtime.NumCPU()
	}
	return max(n, 1)
}

// skipShort skips the tests that run the README's commands for real (a daemon and a dozen apps
// each) under -short: .ci/run's race pass; its full pass runs them.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a daemon and its apps; not with -short")
	}
}

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if nodetest.InCI() {
			t.Fatalf("%s not found on PATH", name)
		}
		t.Skipf("%s not found on PATH", name)
	}
}

// ---- the quick start ----

// The first sh block's command 1, as documented: build corral, start examples/node/app.js as the
// comment's number of instances on PORT, curl it, list. Only the port (8080, possibly taken) and
// where `go build -o corral` writes (not into the work tree) are substituted. Then the prose's
// `./corral kill` stops everything, and no process is left.
func TestReadmeQuickStart(t *testing.T) {
	skipShort(t)
	nodetest.Node(t)
	needTool(t, "curl")
	root := moduleRoot(t)
	readme := loadDoc(t, "README.md")
	cmds := shCommands(readmeBlock(t, readme, "quickstart"))
	if len(cmds) == 0 {
		t.Fatal("the quick start block has no command")
	}
	c1 := cmds[0]
	if m := regexp.MustCompile(`needs Go (\d+\.\d+)`).FindStringSubmatch(c1.Comment); m == nil {
		t.Errorf("README.md:%d: the comment no longer names the Go version it needs: %q", c1.Line, c1.Comment)
	} else if gomod, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal(err)
	} else if !regexp.MustCompile(`(?m)^go ` + regexp.QuoteMeta(m[1]) + `(\.\d+)?$`).Match(gomod) {
		t.Errorf("README.md:%d says it needs Go %s; go.mod says otherwise", c1.Line, m[1])
	}
	cm := instancesRE.FindStringSubmatch(c1.Comment)
	if cm == nil {
		t.Fatalf("README.md:%d: the comment %q does not say how many instances", c1.Line, c1.Comment)
	}
	want, _ := strconv.Atoi(cm[1])
	sm := regexp.MustCompile(`corral start (\S+)`).FindStringSubmatch(c1.Text)
	if sm == nil {
		t.Fatalf("README.md:%d: no `corral start <script>` in %q", c1.Line, c1.Text)
	}
	name := strings.TrimSuffix(filepath.Base(sm[1]), filepath.Ext(sm[1]))

	home, env := readmeHome(t)
	corralBin := filepath.Join(t.TempDir(), "corral")
	port := strconv.Itoa(testutil.FreePort(t))
	line := replaceRE(t, c1.Text, `go build -o corral `, "go build -o "+corralBin+" ", 1)
	line = replaceRE(t, line, `(^|[\s;&|])\./corral\b`, "${1}"+corralBin, 2)
	line = replaceRE(t, line, `\b8080\b`, port, 2)
	t.Logf("README.md:%d, run from %s as:\n%s", c1.Line, root, line)
	out := shRun(t, root, env, line, 5*time.Minute)

	// One static binary: no program interpreter (the dynamic loader) to find on the target.
	if f, err := elf.Open(corralBin); err != nil {
		t.Errorf("the built corral: %v", err)
	} else {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("README.md:%d builds a dynamically linked corral (it needs a program interpreter): build it with CGO_ENABLED=0", c1.Line)
			}
		}
		f.Close()
	}

	lines := strings.Split(out, "\n")
	i := slices.Index(lines, "hello world")
	if i < 0 {
		t.Fatalf("curl did not print the app's answer %q:\n%s", "hello world", out)
	}
	rows := tableRowsOf(strings.Join(lines[i+1:], "\n")) // `corral ls`, after curl
	pids := map[string]bool{}
	var pidList []int
	for _, r := range rows {
		if r["name"] != name || r["status"] != "online" || r["mode"] != "cluster" {
			t.Errorf("ls: %v, want %s online in cluster mode", r, name)
		}
		pid, _ := strconv.Atoi(r["pid"])
		pids[r["pid"]] = true
		pidList = append(pidList, pid)
	}
	if len(rows) != want || len(pids) != want {
		t.Errorf("ls lists %d processes (%d pids), README.md:%d says %d instances:\n%s", len(rows), len(pids), c1.Line, want, out)
	}

	// "Stop everything again with `./corral kill`."
	var kill []mdSpan
	for _, s := range spansIn(readme.Prose, 1) {
		if strings.HasPrefix(s.Text, "./corral kill") {
			kill = append(kill, s)
		}
	}
	if len(kill) != 1 {
		t.Fatalf("README.md shows `./corral kill` %d times, want 1", len(kill))
	}
	daemon, err := daemonproc.ReadPid(filepath.Join(home, "corral.pid"))
	if err != nil {
		t.Fatal(err)
	}
	shRun(t, root, env, replaceRE(t, kill[0].Text, `^\./corral\b`, corralBin, 1), time.Minute)
	waitGone(t, "after ./corral kill", append(pidList, daemon)...)
	checkNoneLeft(t, home)
}

// ---- the CLI block ----

// ecoApps mirrors testdata/readme/ecosystem.config.js.
var ecoApps = map[string]struct {
	script    string
	instances int
	mode      string
}{
	"api":    {"app.js", 2, "cluster_mode"},
	"worker": {"worker.js", 1, "fork_mode"},
	"batch":  {"worker.js", 1, "fork_mode"},
}

// cliApp is an app a README command started.
type cliApp struct {
	name   string
	port   int    // where it answers HTTP; 0: it does not
	body   string // what it answers begins with
	listen bool   // --listen: the daemon owns the socket
}

// cliRun is the state of a run of README commands: a directory of bundled apps, a private home and
// what has been started.
type cliRun struct {
	dir    string
	home   string
	env    []string
	bodies map[string]string // first word of a start target (app.js, server, ...) -> what it answers
	apps   map[string]*cliApp
	saved  []string // app names of the dump `corral save` wrote
	save   shCmd    // the README's save line
	kill   string   // the README's kill command
}

func newCLIRun(t *testing.T, dir string, bodies map[string]string) *cliRun {
	home, env := readmeHome(t)
	return &cliRun{dir: dir, home: home, env: env, bodies: bodies, apps: map[string]*cliApp{}}
}

func (c *cliRun) sh(t *testing.T, line string, extraEnv ...string) string {
	t.Helper()
	return shRun(t, c.dir, append(slices.Clip(c.env), extraEnv...), line, 2*time.Minute)
}

func (c *cliRun) list(t *testing.T) []jproc { t.Helper(); return jlist(t, c.dir, c.env) }

func (c *cliRun) httpApps() []*cliApp {
	var out []*cliApp
	for _, a := range c.apps {
		if a.port != 0 {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// get checks that a answers. An app is online before it listens (PM2's meaning, without
// --wait-ready), and nothing tells a client when it listens: a refused connection is retried for
// up to 20 s, as the README's curl --retry-connrefused does.
func (c *cliRun) get(t *testing.T, a *cliApp, path string) string {
	t.Helper()
	var body string
	var err error
	testutil.Eventually(20*time.Second, func() bool {
		body, err = getBody(fmt.Sprintf("http://127.0.0.1:%d%s", a.port, path))
		return !errors.Is(err, syscall.ECONNREFUSED)
	})
	if err != nil || !strings.HasPrefix(body, a.body) {
		t.Fatalf("GET %s on port %d: %q, %v; want an answer beginning %q", a.name, a.port, body, err, a.body)
	}
	return body
}

// writeNodeFDServer writes dir/server: an HTTP server that takes its listening socket with the
// README's Node line (`server.listen({ fd: 3 })`), answers "server <pid> <LISTEN_FDS> <LISTEN_PID>"
// and stops gracefully on corral's SIGINT (it finishes the connections it has accepted; the ones
// waiting in the socket, which the daemon keeps open, go to the other instances), as an app must
// for a reload without failed requests.
func writeNodeFDServer(t *testing.T, readme mdDoc, dir string) {
	t.Helper()
	sec, line := readme.section(t, "Cluster mode for any program")
	listen := findSpan(t, sec, line, "server.listen(")
	src := "#!/usr/bin/env node\n" +
		"// Written by cmd/corral/readme_test.go from README.md:" + strconv.Itoa(listen.Line) + ".\n" +
		"const server = require('http').createServer((req, res) => {\n" +
		"  res.end(`server ${process.pid} ${process.env.LISTEN_FDS} ${process.env.LISTEN_PID}`);\n" +
		"});\n" + listen.Text + ";\n" +
		"process.on('SIGINT', () => server.close(() => process.exit(0)));\n"
	if err := os.WriteFile(filepath.Join(dir, "server"), []byte(src), 0o755); err != nil {
		t.Fatal(err)
	}
}

// findSpan returns the one inline code span of text that starts with prefix.
func findSpan(t *testing.T, text string, firstLine int, prefix string) mdSpan {
	t.Helper()
	var found []mdSpan
	for _, s := range spansIn(text, firstLine) {
		if strings.HasPrefix(s.Text, prefix) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("README.md shows %d code spans starting %q, want 1: %v", len(found), prefix, found)
	}
	return found[0]
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// cliSteps are the kinds of command the README's CLI block may hold, in the order TestReadmeCLI
// runs them (commands of one kind in README order). Each command must be of exactly one kind and
// each kind must be there. The order differs from the README's in one place: `save && resurrect`
// runs while the apps are up (after `logs`), and its resurrect again after `kill`, so that both
// have something to do.
var cliSteps = []struct {
	re  *regexp.Regexp
	run func(c *cliRun, t *testing.T, cmd shCmd, m []string)
}{
	{regexp.MustCompile(`^corral start (.+)$`), (*cliRun).start},
	{regexp.MustCompile(`^corral reload all$`), (*cliRun).reloadAll},
	{regexp.MustCompile(`^corral ls$`), (*cliRun).ls},
	{regexp.MustCompile(`^corral jlist$`), (*cliRun).jlist},
	{regexp.MustCompile(`^corral show (\d+)$`), (*cliRun).show},
	{regexp.MustCompile(`^corral logs (\S+) --lines (\d+)$`), (*cliRun).logs},
	{regexp.MustCompile(`^corral save && corral resurrect$`), (*cliRun).saveResurrect},
	{regexp.MustCompile(`^corral scale (\S+) ([+-]?\d+)$`), (*cliRun).scale},
	{regexp.MustCompile(`^corral stop (\S+)$`), (*cliRun).stop},
	{regexp.MustCompile(`^corral delete all$`), (*cliRun).deleteAll},
	{regexp.MustCompile(`^corral kill$`), (*cliRun).killDaemon},
	{regexp.MustCompile(`^corral runtime start (.+)$`), (*cliRun).runtimeStart},
}

// Every command of the CLI block, run as documented with `bash -c` in a directory of bundled apps
// (testdata/readme, plus ./server written from the README's Node line), in a private home; only
// ports are substituted (PORT in the environment, --listen and --port). Each command must exit 0 and
// have the effect the README gives it.
func TestReadmeCLI(t *testing.T) {
	skipShort(t)
	nodetest.Node(t)
	readme := loadDoc(t, "README.md")
	var cmds []shCmd
	for _, l := range shCommands(readmeBlock(t, readme, "cli")) {
		for _, part := range splitList(l.Text, ";") {
			cmds = append(cmds, shCmd{Line: l.Line, Text: part, Comment: l.Comment})
		}
	}
	byStep := make([][]shCmd, len(cliSteps))
	for _, cmd := range cmds {
		var kinds []int
		for i, s := range cliSteps {
			if s.re.MatchString(cmd.Text) {
				kinds = append(kinds, i)
			}
		}
		if len(kinds) != 1 {
			t.Errorf("README.md:%d: %q is of %d kinds of command TestReadmeCLI runs, want 1: add it to cliSteps", cmd.Line, cmd.Text, len(kinds))
			continue
		}
		byStep[kinds[0]] = append(byStep[kinds[0]], cmd)
	}
	for i, s := range cliSteps {
		if len(byStep[i]) == 0 {
			t.Errorf("no command of the README's CLI block matches %s any more: update cliSteps", s.re)
		}
	}
	if t.Failed() {
		return
	}
	dir := t.TempDir()
	copyDir(t, "testdata/readme", dir)
	writeNodeFDServer(t, readme, dir)
	c := newCLIRun(t, dir, map[string]string{"app.js": "hello world", "server": "server "})
	for i, s := range cliSteps {
		for _, cmd := range byStep[i] {
			t.Logf("README.md:%d: %s", cmd.Line, cmd.Text)
			s.run(c, t, cmd, s.re.FindStringSubmatch(cmd.Text))
		}
	}
}

// start runs a `corral start` line: a script (-i, --name, --wait-ready, --kill-timeout, --listen,
// --exec-mode) or an ecosystem file (--env, --only). Each app it names must be online with its
// instance count and mode, and answer HTTP if it is an HTTP app; a count in the comment ("4
// instances") must be the count started.
func (c *cliRun) start(t *testing.T, cmd shCmd, m []string) {
	t.Helper()
	args := shellWords(m[1])
	target := args[0]
	port := testutil.FreePort(t)
	line := cmd.Text
	instances, iGiven, name, killTimeout, envName, execMode := "1", false, "", "", "", ""
	waitReady, listen := false, false
	var only []string
	for i := 1; i < len(args); i++ {
		a := args[i]
		val := func() string {
			if i++; i >= len(args) {
				t.Fatalf("README.md:%d: %s needs a value", cmd.Line, a)
			}
			return args[i]
		}
		switch a {
		case "-i", "--instances":
			instances, iGiven = val(), true
		case "-n", "--name":
			name = val()
		case "--wait-ready":
			waitReady = true
		case "-k", "--kill-timeout":
			killTimeout = val()
		case "--listen":
			val()
			listen = true
		case "--env":
			envName = val()
		case "--only":
			only = strings.Split(val(), ",")
		case "--exec-mode":
			execMode = val()
		default:
			t.Fatalf("README.md:%d: %q: TestReadmeCLI has no check for %s; add one", cmd.Line, cmd.Text, a)
		}
	}
	if listen {
		line = replaceRE(t, line, `(--listen \S*:)\d+`, "${1}"+strconv.Itoa(port), 1)
	}

	type want struct {
		n      int
		mode   string
		script string
	}
	exp := map[string]want{}
	var left []string // ecosystem apps that --only leaves out
	switch ext := filepath.Ext(target); {
	case strings.HasSuffix(target, ".config.js") || ext == ".json" || ext == ".yaml" || ext == ".yml":
		for n, e := range ecoApps {
			if len(only) == 0 || slices.Contains(only, n) {
				exp[n] = want{e.instances, e.mode, e.script}
			} else {
				left = append(left, n)
			}
		}
		for _, n := range only {
			if _, ok := ecoApps[n]; !ok {
				t.Fatalf("README.md:%d: --only %s: testdata/readme/ecosystem.config.js has no app %s", cmd.Line, n, n)
			}
		}
	default:
		if name == "" {
			name = strings.TrimSuffix(filepath.Base(strings.Fields(target)[0]), ext)
		}
		mode := "fork_mode"
		if execMode == "cluster" || (execMode == "" && iGiven && !listen && ext == ".js") {
			mode = "cluster_mode"
		}
		exp[name] = want{instanceCount(t, instances), mode, filepath.Base(strings.Fields(target)[0])}
	}

	out := c.sh(t, line, "PORT="+strconv.Itoa(port))
	procs := c.list(t)
	total := 0
	for n, w := range exp {
		ps := byName(procs, n)
		total += len(ps)
		if len(ps) != w.n {
			t.Errorf("README.md:%d: %d processes of %s, want %d: %v\n%s", cmd.Line, len(ps), n, w.n, ps, out)
		}
		for _, p := range ps {
			if p.status() != "online" || p.PID <= 0 || p.str("exec_mode") != w.mode {
				t.Errorf("README.md:%d: %v in %s, want online in %s", cmd.Line, p, p.str("exec_mode"), w.mode)
			}
			if waitReady && p.Env["wait_ready"] != true {
				t.Errorf("README.md:%d: %v: wait_ready %v, want true", cmd.Line, p, p.Env["wait_ready"])
			}
			if killTimeout != "" && strconv.FormatFloat(p.num("kill_timeout"), 'f', -1, 64) != killTimeout {
				t.Errorf("README.md:%d: %v: kill_timeout %v, want %s", cmd.Line, p, p.Env["kill_timeout"], killTimeout)
			}
			if envName != "" && p.str("STAGE") != envName {
				t.Errorf("README.md:%d: %v: STAGE=%q, want %q from env_%s", cmd.Line, p, p.str("STAGE"), envName, envName)
			}
		}
		a := &cliApp{name: n, listen: listen}
		if body, ok := c.bodies[w.script]; ok {
			a.port, a.body = port, body
			answer := c.get(t, a, "/")
			if f := strings.Fields(answer); listen && len(f) >= 3 {
				// "<kind> <pid> <LISTEN_FDS> [<LISTEN_PID>]": the socket comes as fd 3, announced to the
				// instance itself.
				if f[2] != "1" {
					t.Errorf("README.md:%d: %s saw LISTEN_FDS=%s, want 1", cmd.Line, n, f[2])
				}
				if len(f) >= 4 {
					pid, _ := strconv.Atoi(f[1])
					if f[3] != f[1] || !slices.ContainsFunc(ps, func(p jproc) bool { return p.PID == pid }) {
						t.Errorf("README.md:%d: answered by pid %s with LISTEN_PID=%s, want one of %v with its own pid", cmd.Line, f[1], f[3], ps)
					}
				}
			}
		}
		c.apps[n] = a
	}
	for _, n := range left {
		if ps := byName(procs, n); len(ps) != 0 {
			t.Errorf("README.md:%d: %s started although --only leaves it out: %v", cmd.Line, n, ps)
		}
	}
	if cm := instancesRE.FindStringSubmatch(cmd.Comment); cm != nil && cm[1] != strconv.Itoa(total) {
		t.Errorf("README.md:%d: the comment says %s instances, %q started %d", cmd.Line, cm[1], cmd.Text, total)
	}
}

// reloadAll runs `corral reload all`: every process is replaced (new pid, one more restart) and
// online again, fork apps without --listen say that they were restarted instead, and, as the comment
// claims "zero downtime", every HTTP app answers every request sent during the reload.
func (c *cliRun) reloadAll(t *testing.T, cmd shCmd, _ []string) {
	t.Helper()
	before := c.list(t)
	var (
		mu       sync.Mutex
		sent     int
		failures []string
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for _, a := range c.httpApps() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(100 * time.Millisecond) // a steady 10 requests/s per app
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				body, err := getBody(fmt.Sprintf("http://127.0.0.1:%d/reload", a.port))
				mu.Lock()
				sent++
				if err != nil || !strings.HasPrefix(body, a.body) {
					failures = append(failures, fmt.Sprintf("%s: %q %v", a.name, body, err))
				}
				mu.Unlock()
			}
		}()
	}
	ecmd := exec.Command("bash", "-e", "-c", cmd.Text)
	ecmd.Dir, ecmd.Env = c.dir, c.env
	out, err := runBounded(ecmd, 3*time.Minute)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd.Text, err, out)
	}
	after := c.list(t)
	if len(after) != len(before) {
		t.Fatalf("%d processes before %q, %d after", len(before), cmd.Text, len(after))
	}
	var old []int
	for _, b := range before {
		old = append(old, b.PID)
		i := slices.IndexFunc(after, func(p jproc) bool { return p.ID == b.ID })
		if i < 0 {
			t.Errorf("%v is gone after %q", b, cmd.Text)
			continue
		}
		a := after[i]
		if a.status() != "online" || a.PID == b.PID || a.num("restart_time") != b.num("restart_time")+1 {
			t.Errorf("%q: %v (restarts %v) became %v (restarts %v), want online with a new pid and one more restart",
				cmd.Text, b, b.Env["restart_time"], a, a.Env["restart_time"])
		}
		if app := c.apps[b.Name]; b.str("exec_mode") == "fork_mode" && app != nil && !app.listen && !strings.Contains(out, "note: "+b.Name+": ") {
			t.Errorf("%q: no note that fork app %s was restarted instead:\n%s", cmd.Text, b.Name, out)
		}
	}
	waitGone(t, "the processes replaced by "+cmd.Text, old...)
	if strings.Contains(cmd.Comment, "zero downtime") {
		if sent == 0 && len(c.httpApps()) > 0 {
			t.Errorf("no request was sent during %q", cmd.Text)
		}
		if len(failures) > 0 {
			t.Errorf("%q claims zero downtime; %d of %d requests failed during it, e.g. %s", cmd.Text, len(failures), sent, failures[0])
		}
		t.Logf("%d requests during %q, all answered", sent, cmd.Text)
	}
}

// ls: the table lists every process, online.
func (c *cliRun) ls(t *testing.T, cmd shCmd, _ []string) {
	t.Helper()
	out := c.sh(t, cmd.Text)
	procs := c.list(t)
	rows := tableRowsOf(out)
	if len(rows) != len(procs) {
		t.Fatalf("%q lists %d processes, jlist %d:\n%s", cmd.Text, len(rows), len(procs), out)
	}
	for i, p := range procs {
		if rows[i]["id"] != strconv.Itoa(p.ID) || rows[i]["name"] != p.Name || rows[i]["pid"] != strconv.Itoa(p.PID) || rows[i]["status"] != "online" {
			t.Errorf("%q row %v, want %v online", cmd.Text, rows[i], p)
		}
	}
}

// jlist: PM2's JSON, one entry per process.
func (c *cliRun) jlist(t *testing.T, cmd shCmd, _ []string) {
	t.Helper()
	out := c.sh(t, cmd.Text)
	var ps []jproc
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		t.Fatalf("%q: %v\n%s", cmd.Text, err, out)
	}
	if len(ps) == 0 || len(ps) != len(c.list(t)) {
		t.Errorf("%q: %d entries", cmd.Text, len(ps))
	}
	for _, p := range ps {
		if p.status() != "online" || p.str("exec_mode") == "" || p.str("pm_exec_path") == "" {
			t.Errorf("%q: entry %v lacks PM2's fields: %v", cmd.Text, p, p.Env)
		}
	}
}

// show N: describes process N.
func (c *cliRun) show(t *testing.T, cmd shCmd, m []string) {
	t.Helper()
	id, _ := strconv.Atoi(m[1])
	procs := c.list(t)
	i := slices.IndexFunc(procs, func(p jproc) bool { return p.ID == id })
	if i < 0 {
		t.Fatalf("%q: there is no process %d: %v", cmd.Text, id, procs)
	}
	out := c.sh(t, cmd.Text)
	want := fmt.Sprintf("Describing process with id %d - name %s", id, procs[i].Name)
	if !strings.Contains(out, want) || !regexp.MustCompile(`│ status +│ online +│`).MatchString(out) {
		t.Errorf("%q does not describe %v as online (want %q):\n%s", cmd.Text, procs[i], want, out)
	}
}

// logs NAME --lines N: prints the header and the past lines, then streams: a request to the app
// makes it log a line, which must arrive. The command never ends by itself; it runs in the
// background and is killed.
func (c *cliRun) logs(t *testing.T, cmd shCmd, m []string) {
	t.Helper()
	a := c.apps[m[1]]
	if a == nil || a.port == 0 {
		t.Fatalf("%q: %s is not an HTTP app this test started, so nothing makes it log", cmd.Text, m[1])
	}
	ecmd := exec.Command("bash", "-e", "-c", cmd.Text)
	ecmd.Dir, ecmd.Env = c.dir, c.env
	p := testutil.Start(t, ecmd)
	header := fmt.Sprintf("[TAILING] Tailing last %s lines for [%s]", m[2], m[1])
	p.WaitLine(t, 30*time.Second, "the header", func(l string) bool { return strings.HasPrefix(l, header) })
	past := regexp.MustCompile(`^\d+\|` + regexp.QuoteMeta(m[1]) + ` +\| app\.js \d+ listening on \d+$`)
	p.WaitLine(t, 30*time.Second, "a past line", past.MatchString)
	// Nothing tells when the stream has begun (corral logs prints the files' tails, then subscribes
	// to the daemon's live lines: a line logged in between is in neither), so a request is sent every
	// 200 ms until one of them arrives streamed.
	probe := fmt.Sprintf("/log/readme-%d-", time.Now().UnixNano())
	stop, sent := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sent)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			getBody(fmt.Sprintf("http://127.0.0.1:%d%s%d", a.port, probe, i))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { close(stop); <-sent }()
	streamed := regexp.MustCompile(`^\d+\|` + regexp.QuoteMeta(m[1]) + ` +\| app\.js \d+ served ` + regexp.QuoteMeta(probe) + `\d+$`)
	p.WaitLine(t, 30*time.Second, "a streamed line of a request to "+m[1], streamed.MatchString)
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	p.Wait(t, 10*time.Second)
}

// readDump returns the app names of a dump file.
func readDump(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dump struct {
		Apps []struct {
			Name string `json:"name"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(b, &dump); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var names []string
	for _, a := range dump.Apps {
		names = append(names, a.Name)
	}
	sort.Strings(names)
	return names
}

func appNames(ps []jproc) []string {
	var names []string
	for _, p := range ps {
		if !slices.Contains(names, p.Name) {
			names = append(names, p.Name)
		}
	}
	sort.Strings(names)
	return names
}

// save && resurrect, with the apps up: dump.pm2 holds every app, and resurrect leaves the running
// ones alone. The comment's `corral startup` is run in its --print-only variant: run as root (as
// the tests are) it would write and enable a unit in /etc/systemd/system.
func (c *cliRun) saveResurrect(t *testing.T, cmd shCmd, _ []string) {
	t.Helper()
	before := c.list(t)
	out := c.sh(t, cmd.Text)
	c.saved, c.save = readDump(t, filepath.Join(c.home, "dump.pm2")), cmd
	if want := appNames(before); !slices.Equal(c.saved, want) {
		t.Errorf("%q saved %v, want %v", cmd.Text, c.saved, want)
	}
	for _, n := range c.saved {
		if !strings.Contains(out, n+": already in the process list") {
			t.Errorf("%q: resurrect does not say it left %s alone:\n%s", cmd.Text, n, out)
		}
	}
	if after := c.list(t); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("%q changed the processes: %v, then %v", cmd.Text, before, after)
	}
	if strings.Contains(cmd.Comment, "corral startup") {
		unit := c.sh(t, "corral startup --print-only")
		if !regexp.MustCompile(`(?m)^Type=notify$`).MatchString(unit) || !regexp.MustCompile(`(?m)^ExecReload=\S*corral reload all$`).MatchString(unit) {
			t.Errorf("corral startup --print-only: no Type=notify unit reloading with `corral reload all`:\n%s", unit)
		}
	}
}

// scale NAME ±N: the app has that many more (or exactly N) instances, online.
func (c *cliRun) scale(t *testing.T, cmd shCmd, m []string) {
	t.Helper()
	n := len(byName(c.list(t), m[1]))
	k, _ := strconv.Atoi(m[2])
	want := k
	if strings.HasPrefix(m[2], "+") || strings.HasPrefix(m[2], "-") {
		want = n + k
	}
	c.sh(t, cmd.Text)
	ps := byName(c.list(t), m[1])
	online := 0
	for _, p := range ps {
		if p.status() == "online" {
			online++
		}
	}
	if len(ps) != want || online != want {
		t.Errorf("%q: %s has %d processes, %d online, want %d: %v", cmd.Text, m[1], len(ps), online, want, ps)
	}
}

// stop NAME: its processes are stopped and gone, the others untouched.
func (c *cliRun) stop(t *testing.T, cmd shCmd, m []string) {
	t.Helper()
	before := c.list(t)
	c.sh(t, cmd.Text)
	after := c.list(t)
	var stopped []int
	for _, b := range before {
		i := slices.IndexFunc(after, func(p jproc) bool { return p.ID == b.ID })
		if i < 0 {
			t.Errorf("%q removed %v", cmd.Text, b)
			continue
		}
		a := after[i]
		switch {
		case m[1] == "all" || b.Name == m[1]:
			stopped = append(stopped, b.PID)
			if a.status() != "stopped" || a.PID != 0 {
				t.Errorf("%q: %v, want stopped", cmd.Text, a)
			}
		case a.status() != "online" || a.PID != b.PID:
			t.Errorf("%q touched %v: now %v", cmd.Text, b, a)
		}
	}
	if len(stopped) == 0 {
		t.Errorf("%q: no process of %s", cmd.Text, m[1])
	}
	waitGone(t, cmd.Text, stopped...)
}

// delete all: the list is empty and every process gone.
func (c *cliRun) deleteAll(t *testing.T, cmd shCmd, _ []string) {
	t.Helper()
	var pids []int
	for _, p := range c.list(t) {
		pids = append(pids, p.PID)
	}
	c.sh(t, cmd.Text)
	if ps := c.list(t); len(ps) != 0 {
		t.Errorf("%q left %v", cmd.Text, ps)
	}
	waitGone(t, cmd.Text, pids...)
}

// kill: the daemon exits and no process of the home is left. Then the saved list comes back with
// the resurrect of the README's save line, a second save keeps the first dump as dump.pm2.bak (as
// its comment says), and kill stops everything again.
func (c *cliRun) killDaemon(t *testing.T, cmd shCmd, _ []string) {
	t.Helper()
	c.kill = cmd.Text
	c.killAndCheck(t)
	if c.saved == nil {
		return
	}
	parts := splitList(c.save.Text, "&&")
	saveCmd, resurrectCmd := parts[0], parts[len(parts)-1]
	out := c.sh(t, resurrectCmd)
	procs := c.list(t)
	if got := appNames(procs); !slices.Equal(got, c.saved) {
		t.Errorf("%q after kill restored %v, want the saved %v:\n%s", resurrectCmd, got, c.saved, out)
	}
	for _, p := range procs {
		if p.status() != "online" {
			t.Errorf("%q after kill: %v", resurrectCmd, p)
		}
	}
	for _, a := range c.httpApps() {
		c.get(t, a, "/resurrected") // with the port of its saved environment
	}
	dump := filepath.Join(c.home, "dump.pm2")
	first, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	c.sh(t, saveCmd)
	if bak, err := os.ReadFile(dump + ".bak"); err != nil || !bytes.Equal(bak, first) {
		t.Errorf("%q again: dump.pm2.bak is not the previous dump (%v)", saveCmd, err)
	}
	c.killAndCheck(t)
}

func (c *cliRun) killAndCheck(t *testing.T) {
	t.Helper()
	daemon, err := daemonproc.ReadPid(filepath.Join(c.home, "corral.pid"))
	if err != nil {
		t.Fatal(err)
	}
	c.sh(t, c.kill)
	waitGone(t, c.kill, daemon)
	checkNoneLeft(t, c.home)
}

// runtime start: the container entry point. It is meant to be PID 1 and runs in the foreground
// until SIGTERM; here it runs in the background (not as PID 1: reaping orphans as init is
// TestRuntime*'s business) with its own home, and must serve the app with the given instance
// count, answer /healthz, /readyz and /metrics on --port, and exit 0 on SIGTERM leaving nothing.
func (c *cliRun) runtimeStart(t *testing.T, cmd shCmd, m []string) {
	t.Helper()
	home, env := readmeHome(t)
	probe, port := testutil.FreePort(t), testutil.FreePort(t)
	line := replaceRE(t, cmd.Text, `(--port )\d+`, "${1}"+strconv.Itoa(probe), 1)
	args := shellWords(m[1])
	n := 1
	if i := slices.Index(args, "-i"); i >= 0 && i+1 < len(args) {
		n = instanceCount(t, args[i+1])
	}
	name := strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))
	ecmd := exec.Command("bash", "-c", "exec "+line)
	ecmd.Dir, ecmd.Env = c.dir, append(env, "PORT="+strconv.Itoa(port))
	r := testutil.Start(t, ecmd)
	addr := waitMatch(t, r, `^corral-runtime: probes on (\S+)$`, 30*time.Second)[1]
	if !strings.HasSuffix(addr, ":"+strconv.Itoa(probe)) {
		t.Errorf("probes on %s, want port %d", addr, probe)
	}
	listening := regexp.MustCompile(`^\d+\|` + regexp.QuoteMeta(name) + ` +\| app\.js (\d+) listening on (\d+)$`)
	pids := map[int]bool{}
	for len(pids) < n {
		l := r.WaitLine(t, 30*time.Second, fmt.Sprintf("instance %d of %d listening", len(pids)+1, n), func(l string) bool {
			m := listening.FindStringSubmatch(l)
			if m == nil {
				return false
			}
			pid, _ := strconv.Atoi(m[1])
			return !pids[pid]
		})
		sm := listening.FindStringSubmatch(l)
		pid, _ := strconv.Atoi(sm[1])
		pids[pid] = true
		if sm[2] != strconv.Itoa(port) {
			t.Errorf("an instance listens on %s, want %d", sm[2], port)
		}
	}
	// The probes the comment names (/healthz /readyz /metrics) answer 200 on --port; polled, as
	// readiness follows the daemon's view of the instances, and the probes are the interface here.
	probes := regexp.MustCompile(`(?:^|\s)(/[a-z]+)\b`).FindAllStringSubmatch(cmd.Comment, -1)
	if len(probes) == 0 {
		t.Errorf("README.md:%d: the comment names no probe", cmd.Line)
	}
	for _, pm := range probes {
		var code int
		var body string
		url := fmt.Sprintf("http://127.0.0.1:%d%s", probe, pm[1])
		if !testutil.Eventually(20*time.Second, func() bool { code, body = httpStatus(t, url); return code == 200 }) {
			t.Errorf("%s: %d %s", pm[1], code, body)
		}
		if pm[1] == "/metrics" && !strings.Contains(body, "# TYPE ") {
			t.Errorf("/metrics is not in the Prometheus text format:\n%s", body)
		}
	}
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 200); got != "hello world" {
		t.Errorf("the app answered %q", got)
	}
	if err := r.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, r, 60*time.Second); code != 0 {
		t.Errorf("%q exited %d after SIGTERM", line, code)
	}
	for pid := range pids {
		waitGone(t, "after SIGTERM to the runtime", pid)
	}
	checkNoneLeft(t, home)
}

// ---- Cluster mode for any program ----

// The snippets of "Cluster mode for any program", each run under corral: the Go program built with
// the cluster package (`corral start ./server -i 4 --exec-mode cluster`, examples/seed built as
// ./server), and programs that take the daemon's socket from fd 3 (--listen) written with the
// README's Go and Python lines, gunicorn and uvicorn as the README shows them (given the app
// module). The Node line runs in TestReadmeCLI (./server).
func TestReadmeAnyProgram(t *testing.T) {
	skipShort(t)
	readme := loadDoc(t, "README.md")
	sec, first := readme.section(t, "Cluster mode for any program")
	dir := t.TempDir()
	copyDir(t, "testdata/readme", dir)
	root := moduleRoot(t)
	c := newCLIRun(t, dir, map[string]string{
		"server": "hello world", "goserver": "go ", "pyserver": "python ", "gunicorn": "gunicorn ", "uvicorn": "uvicorn ",
	})
	c.kill = "corral kill"
	// startListen runs `corral start PROGRAM --listen 127.0.0.1:PORT -i N` and checks it, then deletes it.
	startListen := func(t *testing.T, program string, n int, name string) {
		line := fmt.Sprintf("corral start %s --listen 127.0.0.1:8080 -i %d", program, n)
		if name != "" {
			line += " --name " + name
		}
		c.start(t, shCmd{Text: line}, []string{line, strings.TrimPrefix(line, "corral start ")})
		c.sh(t, "corral delete all")
		c.apps = map[string]*cliApp{}
	}

	t.Run("GoClusterProgram", func(t *testing.T) {
		span := findSpan(t, sec, first, "corral start ./server ")
		build := exec.Command("go", "build", "-o", filepath.Join(dir, "server"), "./examples/seed")
		build.Dir = root
		if out, err := runBounded(build, 5*time.Minute); err != nil {
			t.Fatalf("build examples/seed: %v\n%s", err, out)
		}
		t.Logf("README.md:%d: %s", span.Line, span.Text)
		c.start(t, shCmd{Line: span.Line, Text: span.Text}, []string{span.Text, strings.TrimPrefix(span.Text, "corral start ")})
		c.sh(t, "corral delete all")
		c.apps = map[string]*cliApp{}
	})

	t.Run("Go", func(t *testing.T) {
		span := findSpan(t, sec, first, "f := os.NewFile(3")
		src := "// Written by cmd/corral/readme_test.go from README.md:" + strconv.Itoa(span.Line) + ".\n" +
			"package main\n\nimport (\n\t\"fmt\"\n\t\"net\"\n\t\"net/http\"\n\t\"os\"\n)\n\nfunc main() {\n\t" + span.Text + "\n" +
			"\thttp.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {\n" +
			"\t\tfmt.Fprintf(w, \"go %d %s %s\", os.Getpid(), os.Getenv(\"LISTEN_FDS\"), os.Getenv(\"LISTEN_PID\"))\n\t}))\n}\n"
		gdir := t.TempDir()
		writeFile(t, filepath.Join(gdir, "main.go"), src, 0o644)
		writeFile(t, filepath.Join(gdir, "go.mod"), "module readmefd\n\ngo 1.26\n", 0o644)
		build := exec.Command("go", "build", "-o", filepath.Join(dir, "goserver"), ".")
		build.Dir, build.Env = gdir, append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		if out, err := runBounded(build, 5*time.Minute); err != nil {
			t.Fatalf("build the README's Go line:\n%s\n%v\n%s", src, err, out)
		}
		startListen(t, "./goserver", 2, "")
	})

	t.Run("Python", func(t *testing.T) {
		sock := findSpan(t, sec, first, "socket.socket(")
		accept := findSpan(t, sec, first, "accept(")
		needTool(t, "python3")
		src := "#!/usr/bin/env python3\n" +
			"# Written by cmd/corral/readme_test.go from README.md:" + strconv.Itoa(sock.Line) + ".\n" +
			"import os, socket\n" +
			"s = " + sock.Text + "\n" +
			"while True:\n" +
			"    c, _ = s." + accept.Text + "\n" +
			"    c.recv(65536)\n" +
			"    body = ('python %d %s %s' % (os.getpid(), os.environ.get('LISTEN_FDS'), os.environ.get('LISTEN_PID'))).encode()\n" +
			"    c.sendall(b'HTTP/1.1 200 OK\\r\\nConnection: close\\r\\nContent-Length: %d\\r\\n\\r\\n' % len(body) + body)\n" +
			"    c.close()\n"
		writeFile(t, filepath.Join(dir, "pyserver"), src, 0o755)
		startListen(t, "./pyserver", 2, "")
	})

	for _, s := range []struct{ tool, app string }{{"gunicorn", "wsgi:app"}, {"uvicorn", "asgi:app"}} {
		t.Run(s.tool, func(t *testing.T) {
			span := findSpan(t, sec, first, s.tool)
			if _, err := exec.LookPath(s.tool); err != nil {
				// .ci/run installs them (Debian: gunicorn, uvicorn): CI must run what the README shows.
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s not found on PATH; run bash .ci/run setup", s.tool)
				}
				t.Skipf("%s not found on PATH", s.tool)
			}
			startListen(t, strconv.Quote(span.Text+" "+s.app), 1, s.tool)
		})
	}
	if _, err := os.Stat(filepath.Join(c.home, "corral.pid")); err == nil {
		c.killAndCheck(t)
	}
}

// ---- the Go and JS blocks ----

// The import block names this module's cluster package.
func TestReadmeGoImport(t *testing.T) {
	root := moduleRoot(t)
	b := readmeBlock(t, loadDoc(t, "README.md"), "import")
	m := regexp.MustCompile(`^import "([^"]+)"\s*$`).FindStringSubmatch(b.Text)
	if m == nil {
		t.Fatalf("%v: not a single import: %q", b, b.Text)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mod := regexp.MustCompile(`(?m)^module (\S+)$`).FindSubmatch(gomod)
	rel, ok := strings.CutPrefix(m[1], string(mod[1])+"/")
	if !ok {
		t.Fatalf("%v imports %s, outside module %s", b, m[1], mod[1])
	}
	files, _ := filepath.Glob(filepath.Join(root, rel, "*.go"))
	pkg := regexp.MustCompile(`(?m)^package ` + regexp.QuoteMeta(filepath.Base(rel)) + `$`)
	for _, f := range files {
		if src, err := os.ReadFile(f); err == nil && !strings.HasSuffix(f, "_test.go") && pkg.Match(src) {
			return
		}
	}
	t.Errorf("%v: no package %s in %s", b, filepath.Base(rel), rel)
}

// The seed program block is examples/seed/main.go's code, verbatim but for indentation;
// examples/seed/main_test.go runs that program.
func TestReadmeSeed(t *testing.T) {
	b := readmeBlock(t, loadDoc(t, "README.md"), "seed")
	src, err := os.ReadFile(filepath.Join(moduleRoot(t), "examples", "seed", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !containsCode(string(src), b.Text) {
		t.Errorf("%v is not in examples/seed/main.go verbatim (indentation aside):\n%s", b, b.Text)
	}
}

// lineWriter sends each line written to it on a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   []byte
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		select {
		case w.lines <- string(w.buf[:i]):
		default: // nobody reads that many: dropped
		}
		w.buf = w.buf[i+1:]
	}
}

// The NewPrimary block, verbatim (indentation aside) between the markers below, runs with 4
// unmodified Node workers (a server.js that listens on PORT and answers every message): each
// worker's listening is logged, each "hello" arrives in process.on('message') (its answer, logged
// by OnMessage, says so), and the port the workers listen on is served.
func TestReadmeNewPrimary(t *testing.T) {
	nodetest.Node(t) // the snippet runs "node" from PATH
	b := readmeBlock(t, loadDoc(t, "README.md"), "newprimary")
	self, err := os.ReadFile("readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(self), "\t// README: NewPrimary begin\n")
	snippet, _, found := strings.Cut(rest, "\t// README: NewPrimary end\n")
	if !found || !slices.Equal(codeLines(snippet), codeLines(b.Text)) {
		t.Fatalf("%v differs from the snippet TestReadmeNewPrimary runs; make them the same:\nREADME:\n%s\ntest:\n%s", b, b.Text, snippet)
	}
	dir := t.TempDir()
	server := "// Written by cmd/corral/readme_test.go: a plain HTTP server on PORT that answers every IPC message.\n" +
		"const http = require('http');\n" +
		"http.createServer((req, res) => res.end('hello from ' + process.pid)).listen(process.env.PORT);\n" +
		"process.on('message', (m) => process.send({ got: m, role: process.env.ROLE }));\n"
	if err := os.WriteFile(filepath.Join(dir, "server.js"), []byte(server), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testutil.FreePort(t)
	t.Setenv("PORT", strconv.Itoa(port))
	t.Chdir(dir) // Args: server.js, relative
	logs := &lineWriter{lines: make(chan string, 100)}
	out, flags := log.Writer(), log.Flags()
	log.SetOutput(logs)
	log.SetFlags(0)
	t.Cleanup(func() { log.SetOutput(out); log.SetFlags(flags) })

	// README: NewPrimary begin
	p := cluster.NewPrimary(cluster.Settings{Exec: "node", Args: []string{"server.js"}})
	p.OnListening(func(w *cluster.Worker, a cluster.Address) { log.Printf("worker %d listening on %v", w.ID, a) })
	p.OnMessage(func(w *cluster.Worker, m json.RawMessage) { log.Printf("worker %d says %s", w.ID, m) }) // process.send
	for i := 0; i < 4; i++ {
		w, _ := p.Fork(map[string]string{"ROLE": "web"})
		w.Send("hello") // arrives in process.on('message')
	}
	// README: NewPrimary end

	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	listening := regexp.MustCompile(`^worker (\d+) listening on (.+)$`)
	says := regexp.MustCompile(`^worker (\d+) says (.+)$`)
	listened, said := map[string]bool{}, map[string]bool{}
	deadline := time.After(30 * time.Second)
	for len(listened) < 4 || len(said) < 4 {
		select {
		case l := <-logs.lines:
			if m := listening.FindStringSubmatch(l); m != nil {
				listened[m[1]] = true
				if !strings.Contains(m[2], strconv.Itoa(port)) {
					t.Errorf("%q: not port %d", l, port)
				}
			} else if m := says.FindStringSubmatch(l); m != nil {
				said[m[1]] = true
				if m[2] != `{"got":"hello","role":"web"}` {
					t.Errorf("%q: want the worker's answer to \"hello\" with ROLE=web", l)
				}
			} else {
				t.Logf("other log line: %q", l)
			}
		case <-deadline:
			t.Fatalf("after 30s: listening from %v, messages from %v; want 4 of each", listened, said)
		}
	}
	if body, err := getBody(fmt.Sprintf("http://127.0.0.1:%d/", port)); err != nil || !strings.HasPrefix(body, "hello from ") {
		t.Errorf("GET: %q, %v", body, err)
	}
}

// The JS block (a Node primary running Go workers) is what cluster/testdata/node_primary.js does,
// but for the path of the Go binary and the environment of cluster.fork, and
// TestNodePrimaryGoWorkers in cluster/node_test.go runs that primary with Go workers.
func TestReadmeNodePrimaryGoWorkers(t *testing.T) {
	root := moduleRoot(t)
	b := readmeBlock(t, loadDoc(t, "README.md"), "nodeprimary")
	primary, err := os.ReadFile(filepath.Join(root, "cluster", "testdata", "node_primary.js"))
	if err != nil {
		t.Fatal(err)
	}
	// The placeholders: the path of the Go binary, and the environment fork is given.
	abstract := func(s string) string {
		s = regexp.MustCompile(`process\.execPath = [^;\n]+;`).ReplaceAllString(s, "process.execPath = …;")
		return regexp.MustCompile(`cluster\.fork\([^)\n]*\)`).ReplaceAllString(s, "cluster.fork(…)")
	}
	js := abstract(string(primary))
	for _, l := range codeLines(b.Text) {
		if l != "" && !strings.Contains(js, abstract(l)) {
			t.Errorf("%v: %q is not what cluster/testdata/node_primary.js does", b, l)
		}
	}
	test, err := os.ReadFile(filepath.Join(root, "cluster", "node_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	fn := regexp.MustCompile(`(?s)\nfunc TestNodePrimaryGoWorkers\(t \*testing\.T\) \{\n.*?\n\}\n`).Find(test)
	if fn == nil || !bytes.Contains(fn, []byte(`"testdata/node_primary.js"`)) || !bytes.Contains(fn, []byte("GO_WORKER_BIN=")) {
		t.Errorf("cluster/node_test.go has no TestNodePrimaryGoWorkers running testdata/node_primary.js with a Go worker binary")
	}
}

// ---- commands only checked ----

// Every corral command and flag of the "From PM2 to corral" table is one the CLI knows (its --help
// exits 0; the flag is in some command's help). Rows marked "not yet" are left out.
func TestReadmeMigrationTable(t *testing.T) {
	sec, _ := loadDoc(t, "README.md").section(t, "From PM2 to corral")
	rows := tableRows(sec)
	if len(rows) < 2 {
		t.Fatalf("the table has %d rows", len(rows))
	}
	flagRE := regexp.MustCompile(`^--?[a-z][a-z-]*$`)
	wordRE := regexp.MustCompile(`^[a-zA-Z][a-zA-Z|]*$`)
	subs, flags := map[string]bool{}, map[string]bool{}
	addFlags := func(words []string) {
		for _, w := range words {
			for _, f := range strings.Split(w, "/") { // -o/-e/-l
				if flagRE.MatchString(f) {
					flags[f] = true
				}
			}
		}
	}
	for _, r := range rows[1:] {
		if len(r) != 3 {
			t.Errorf("row %q: %d cells, want 3", r, len(r))
			continue
		}
		if strings.Contains(r[1], "not yet") || strings.Contains(r[1], "not planned") {
			continue
		}
		cell, tool := r[1], "corral"
		if strings.HasPrefix(cell, "same") {
			cell, tool = r[0], "pm2"
		}
		for _, s := range spansIn(cell, 0) {
			words := shellWords(s.Text)
			switch {
			case len(words) == 0 || strings.HasPrefix(words[0], tool+"-"): // pm2-runtime, corral-runtime
				continue
			case words[0] == tool:
				words = words[1:]
			}
			if len(words) > 0 && wordRE.MatchString(words[0]) {
				for _, sub := range strings.Split(words[0], "|") {
					subs[sub] = true
				}
				words = words[1:]
			}
			addFlags(words)
		}
		for _, s := range spansIn(r[2], 0) {
			addFlags(strings.Fields(s.Text))
		}
	}
	_, env := readmeHome(t)
	var help strings.Builder
	for _, sub := range slices.Sorted(maps.Keys(subs)) {
		cmd := exec.Command(filepath.Join(binDir, "corral"), sub, "--help")
		cmd.Env = env
		out, err := runBounded(cmd, 30*time.Second)
		aliases := regexp.MustCompile(`(?m)^Aliases:\n\s+(.+)$`).FindStringSubmatch(out)
		usage := regexp.MustCompile(`(?m)^\s+corral (\S+)`).FindStringSubmatch(out)
		known := usage != nil && usage[1] == sub || aliases != nil && slices.Contains(strings.Split(strings.ReplaceAll(aliases[1], " ", ""), ","), sub)
		if err != nil || !known {
			t.Errorf("the table shows `corral %s`; `corral %s --help`: %v\n%s", sub, sub, err, out)
		}
		help.WriteString(out)
	}
	for f := range flags {
		re := `(^|[\s,])` + regexp.QuoteMeta(f) + `([\s=\[]|$)`
		if !strings.HasPrefix(f, "--") {
			re = `(^|\s)` + regexp.QuoteMeta(f) + `, --`
		}
		if !regexp.MustCompile(`(?m)` + re).MatchString(help.String()) {
			t.Errorf("the table shows %s; no command of the table has it in its --help", f)
		}
	}
	t.Logf("%d commands and %d flags of the table are known", len(subs), len(flags))
	if len(subs) < 20 || len(flags) < 20 {
		t.Errorf("only %d commands and %d flags found in the table: is the parsing still right?", len(subs), len(flags))
	}
}

// The commands README.md, bench/README.md and docs/*.md show but no test runs (the whole test
// suite, fuzzing, the benchmarks) name what exists: packages, test functions, scripts that parse
// (bash -n), environment knobs the script reads. `bash .ci/run` runs the go commands the README
// says it runs, and the Node lines named are the ones .ci/run installs (nodetest.Majors).
func TestReadmeDevCommands(t *testing.T) {
	root := moduleRoot(t)
	docs := []string{"README.md", "bench/README.md"}
	more, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	for _, f := range more {
		rel, _ := filepath.Rel(root, f)
		docs = append(docs, rel)
	}
	checked := 0
	for _, rel := range docs {
		d := loadDoc(t, rel)
		check := func(where, cmd string) {
			words := shellWords(cmd)
			var vars []string
			for len(words) > 0 && regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`).MatchString(words[0]) {
				vars = append(vars, strings.SplitN(words[0], "=", 2)[0])
				words = words[1:]
			}
			switch {
			case len(words) < 2:
				return
			case words[0] == "go" && (words[1] == "test" || words[1] == "vet") && len(words) > 2: // not a mention of `go test`
				checkGoCommand(t, root, where, words)
			case words[0] == "bash" && strings.Contains(words[1], "/"): // not `bash -c`
				checkBashCommand(t, root, where, words, vars)
			default:
				return
			}
			checked++
		}
		for _, s := range spansIn(d.Prose, 1) {
			where := fmt.Sprintf("%s:%d: `%s`", rel, s.Line, s.Text)
			check(where, s.Text)
			if regexp.MustCompile(`^(Test|Benchmark|Fuzz|Example)[A-Z]\w*$`).MatchString(s.Text) && !testFuncExists(t, root, []string{"./..."}, s.Text) {
				t.Errorf("%s: no such test function in the module", where)
			}
		}
		for _, b := range d.Blocks {
			if rel == "README.md" && b.Lang == "sh" && !strings.Contains(b.Text, "bash .ci/run") {
				continue // the CLI block: TestReadmeCLI
			}
			if b.Lang != "sh" && b.Lang != "bash" && b.Lang != "" {
				continue
			}
			for _, c := range shCommands(b) {
				if strings.Contains(c.Text, "./corral start") {
					continue // the quick start: TestReadmeQuickStart
				}
				where := fmt.Sprintf("%s:%d: %s", rel, c.Line, c.Text)
				if words := shellWords(c.Text); b.Lang != "" && len(words) > 0 && words[0] != "go" && words[0] != "bash" &&
					!strings.Contains(words[0], "=") {
					t.Errorf("%s: a command readme_test.go does not know", where)
				}
				check(where, c.Text)
			}
		}
	}
	t.Logf("%d commands checked", checked)
	if checked < 10 {
		t.Errorf("only %d commands checked: is the parsing still right?", checked)
	}

	// "`bash .ci/run` installs ... and then runs the gates in order: `gofmt -l`, `go build ./...`, ...":
	// each gate is a command line of .ci/run (which may add flags), in that order.
	readme := loadDoc(t, "README.md")
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	tokenRE := regexp.MustCompile(`[^\s"'$()]+`)
	var ciLines [][]string // the command lines, without comments and the step/note messages
	for _, l := range codeLines(string(ci)) {
		if l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "step ") && !strings.HasPrefix(l, "note ") {
			ciLines = append(ciLines, tokenRE.FindAllString(l, -1))
		}
	}
	// runs reports whether the words of gate appear in line in order ("staticcheck" matches
	// "$GOBIN/staticcheck").
	runs := func(line, gate []string) bool {
		i := 0
		for _, w := range line {
			if i < len(gate) && (w == gate[i] || strings.HasSuffix(w, "/"+gate[i])) {
				i++
			}
		}
		return i == len(gate)
	}
	gates, next := 0, 0
	for _, sentence := range regexp.MustCompile(`(?s).*?(?:\.\s|\z)`).FindAllString(readme.Prose, -1) {
		if !strings.Contains(sentence, "`bash .ci/run`") || !strings.Contains(sentence, " runs ") {
			continue
		}
		for _, s := range spansIn(sentence, 0) {
			gate := tokenRE.FindAllString(s.Text, -1)
			if len(gate) == 0 || !slices.ContainsFunc(gate, func(w string) bool {
				return w == "go" || w == "gofmt" || w == "staticcheck"
			}) {
				continue
			}
			gates++
			i := next
			for i < len(ciLines) && !runs(ciLines[i], gate) {
				i++
			}
			if i == len(ciLines) {
				t.Errorf("README.md says `bash .ci/run` runs `%s` (after the gates before it); .ci/run does not", s.Text)
				continue
			}
			next = i + 1
		}
	}
	if gates == 0 {
		t.Errorf("README.md no longer says which gates .ci/run runs: update readme_test.go")
	}
	majors := strings.Join(nodetest.Majors(), ",")
	for _, m := range regexp.MustCompile(`Node ((?:\d+, )+\d+ and \d+)`).FindAllStringSubmatch(readme.Prose, -1) {
		if got := strings.NewReplacer(" and ", ",", ", ", ",").Replace(m[1]); got != majors {
			t.Errorf("README.md names Node %s; .ci/run installs and the tests use %s", m[1], majors)
		}
	}
}

// checkGoCommand: the packages of a go test/vet command exist, and so do the functions its -run,
// -bench and -fuzz name.
func checkGoCommand(t *testing.T, root, where string, words []string) {
	t.Helper()
	var pkgs, funcs []string
	for i := 2; i < len(words); i++ {
		w := words[i]
		switch {
		case w == "-run" || w == "-bench" || w == "-fuzz":
			if i++; i < len(words) {
				if name := strings.Trim(words[i], "^$"); regexp.MustCompile(`^[A-Z]\w*$`).MatchString(name) {
					funcs = append(funcs, name)
				}
			}
		case w == "-fuzztime" || w == "-timeout" || w == "-count" || w == "-benchtime":
			i++
		case strings.HasPrefix(w, "./") || w == ".":
			pkgs = append(pkgs, w)
			dir := filepath.Join(root, strings.TrimSuffix(w, "/..."))
			if files, _ := filepath.Glob(filepath.Join(dir, "*.go")); len(files) == 0 && !strings.HasSuffix(w, "/...") {
				t.Errorf("%s: no Go package in %s", where, w)
			} else if _, err := os.Stat(dir); err != nil {
				t.Errorf("%s: %v", where, err)
			}
		}
	}
	if len(pkgs) == 0 {
		t.Errorf("%s: no package named", where)
	}
	for _, f := range funcs {
		if !testFuncExists(t, root, pkgs, f) {
			t.Errorf("%s: no func %s in the tests of %v", where, f, pkgs)
		}
	}
}

// testFuncExists reports whether a _test.go file of pkgs declares func name.
func testFuncExists(t *testing.T, root string, pkgs []string, name string) bool {
	t.Helper()
	decl := regexp.MustCompile(`(?m)^func ` + regexp.QuoteMeta(name) + `\(`)
	found := false
	for _, p := range pkgs {
		dir := filepath.Join(root, strings.TrimSuffix(p, "/..."))
		filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
			if err != nil || found {
				return filepath.SkipDir
			}
			if e.IsDir() {
				if path != dir && (!strings.HasSuffix(p, "/...") || strings.HasPrefix(e.Name(), ".") || e.Name() == "testdata" || e.Name() == "node_modules") {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasSuffix(path, "_test.go") {
				if src, err := os.ReadFile(path); err == nil && decl.Match(src) {
					found = true
				}
			}
			return nil
		})
	}
	return found
}

// checkBashCommand: `[VAR=value ...] bash SCRIPT`: the script exists and parses, and reads each VAR
// (itself or in a file it sources).
func checkBashCommand(t *testing.T, root, where string, words, vars []string) {
	t.Helper()
	if len(words) < 2 {
		t.Errorf("%s: bash without a script", where)
		return
	}
	script := filepath.Join(root, words[1])
	src, err := os.ReadFile(script)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	if out, err := runBounded(exec.Command("bash", "-n", script), 30*time.Second); err != nil {
		t.Errorf("%s: bash -n %s: %v\n%s", where, words[1], err, out)
	}
	text := string(src)
	for _, m := range regexp.MustCompile(`(?m)^\s*(?:source|\.)\s+"?([^"\s]+)"?`).FindAllStringSubmatch(text, -1) {
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(script), filepath.Base(m[1]))); err == nil {
			text += string(b)
		}
	}
	for _, v := range vars {
		if !regexp.MustCompile(`\$\{?` + v + `\b`).MatchString(text) {
			t.Errorf("%s: %s does not read %s", where, words[1], v)
		}
	}
}
