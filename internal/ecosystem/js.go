package ecosystem

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dop251/goja"
	"github.com/dop251/goja/parser"
)

// evalTimeout bounds the evaluation of a JavaScript config, in goja or in node.
const evalTimeout = 10 * time.Second

// evalJS evaluates a JavaScript config and returns what it exports. It tries the embedded
// interpreter first, then node when the config requires a module the interpreter lacks or fails
// to evaluate it.
func evalJS(ctx context.Context, path string, src []byte) (*value, error) {
	v, missing, gerr := evalGoja(ctx, path, string(src), false)
	if gerr == nil && missing == "" {
		return v, nil
	}
	var ge *Error
	syntax := errors.As(gerr, &ge) && ge.Line > 0
	if missing == "" && !syntax {
		return nil, gerr // node would fail the same way
	}
	nodeBin, lerr := exec.LookPath("node")
	if lerr != nil {
		if missing != "" {
			return nil, &Error{Msg: fmt.Sprintf("the config requires %q, which only node can load, and node is not on PATH", missing)}
		}
		return nil, gerr
	}
	// node takes modules corral has no stand-in for, and syntax that goja or the rewriting of ES
	// module syntax may not.
	v, nerr := evalNode(ctx, nodeBin, path)
	switch {
	case nerr == nil:
		return v, nil
	case missing != "":
		return nil, &Error{Msg: fmt.Sprintf("the config requires %q, so it was run with node, which failed", missing), Err: nerr}
	}
	return nil, gerr // a syntax error for node too; goja's message has the position
}

// evalJSON5 evaluates a .json file as a JavaScript expression, as PM2 does.
func evalJSON5(ctx context.Context, path string, src []byte) (*value, error) {
	v, _, err := evalGoja(ctx, path, "module.exports = ("+string(src)+"\n);", true)
	return v, err
}

// evalGoja runs src as a CommonJS module (rewriting ES module syntax first) and returns its
// exports as a value without positions. missing names a module the config required that only node
// has; the evaluation may have failed or succeeded without it.
func evalGoja(ctx context.Context, path, src string, expr bool) (v *value, missing string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &Error{Msg: fmt.Sprintf("evaluate: %v", r)}
		}
	}()
	ext := strings.ToLower(filepath.Ext(path))
	esm := !expr && (ext == ".mjs" || ext == ".js" && esmRE().esmSyntax.MatchString(src))
	if esm {
		src = rewriteESM(src, path)
	}
	if strings.HasPrefix(src, "#!") {
		src = "//" + src
	}

	vm := goja.New()
	vm.SetMaxCallStackSize(2000)
	ctx, cancel := context.WithTimeout(ctx, evalTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { vm.Interrupt(ctx.Err()) })
	defer stop()

	params := "exports, require, module, __filename, __dirname"
	if esm { // ES modules have no __filename or __dirname, and may declare their own
		params = "exports, require, module"
	}
	prefix := "(function (" + params + ") {"
	ast, err := parser.ParseFile(nil, path, prefix+src+"\n})", 0)
	if err != nil {
		return nil, "", gojaError(err, len(prefix))
	}
	prog, err := goja.CompileAST(ast, false)
	if err != nil {
		return nil, "", gojaError(err, len(prefix))
	}
	fnV, err := vm.RunProgram(prog)
	if err != nil {
		return nil, "", gojaError(err, len(prefix))
	}
	fn, _ := goja.AssertFunction(fnV)

	module := vm.NewObject()
	exports := vm.NewObject()
	_ = module.Set("exports", exports)
	_ = vm.Set("process", newProcess(vm))
	_ = vm.Set("console", newConsole(vm))
	require := func(call goja.FunctionCall) goja.Value {
		name := strings.TrimPrefix(call.Argument(0).String(), "node:")
		if m := shim(vm, name, path); m != nil {
			return m
		}
		if missing == "" {
			missing = name
		}
		panic(vm.NewGoError(fmt.Errorf("module %q is not available without node", name)))
	}
	_, err = fn(goja.Undefined(), exports, vm.ToValue(require), module,
		vm.ToValue(path), vm.ToValue(filepath.Dir(path)))
	if err != nil {
		return nil, missing, gojaError(err, len(prefix))
	}

	out := module.Get("exports")
	stringify, _ := goja.AssertFunction(vm.Get("JSON").ToObject(vm).Get("stringify"))
	js, err := stringify(goja.Undefined(), out)
	if err != nil {
		return nil, missing, gojaError(err, len(prefix))
	}
	if goja.IsUndefined(js) {
		return nil, missing, &Error{Msg: "the config exports nothing usable (set module.exports or export default)"}
	}
	v, err = parseJSONResult([]byte(js.String()))
	return v, missing, err
}

// gojaError turns an evaluation error into an *Error with the line of a syntax error.
func gojaError(err error, prefixLen int) error {
	var list parser.ErrorList
	if errors.As(err, &list) && len(list) > 0 {
		p := list[0].Position
		col := p.Column
		if p.Line == 1 {
			col = max(col-prefixLen, 1)
		}
		return &Error{Line: p.Line, Column: col, Msg: "JavaScript syntax error", Err: errors.New(list[0].Message)}
	}
	var ie *goja.InterruptedError
	if errors.As(err, &ie) {
		return &Error{Msg: "evaluation did not finish", Err: fmt.Errorf("%v", ie.Value())}
	}
	var ex *goja.Exception
	if errors.As(err, &ex) {
		return &Error{Msg: "evaluation failed", Err: errors.New(strings.TrimSpace(ex.String()))}
	}
	return &Error{Msg: "evaluation failed", Err: err}
}

// parseJSONResult parses the JSON an evaluated config produced; its positions mean nothing to the
// user, so they are dropped.
func parseJSONResult(js []byte) (*value, error) {
	v, err := parseJSON(js)
	if err != nil {
		return nil, fmt.Errorf("read evaluated config: %w", err)
	}
	var clear func(*value)
	clear = func(v *value) {
		v.line, v.col = 0, 0
		for _, c := range v.items {
			clear(c)
		}
		for _, c := range v.vals {
			clear(c)
		}
	}
	clear(v)
	return v, nil
}

// ES module syntax, rewritten line by line to CommonJS so that goja (which has no modules) can run
// it. Line numbers are kept so that errors point at the right line.
// They are compiled on first use: a package-level regexp is compiled at the start of every corral
// command, and only ecosystem files written as ES modules need these.
type esmRegexps struct {
	esmSyntax, importFrom, importBare, exportDefault, exportVar, exportList, importMeta, asRename *regexp.Regexp
}

var esmRE = sync.OnceValue(func() *esmRegexps {
	return &esmRegexps{
		esmSyntax:     regexp.MustCompile(`(?m)^[ \t]*(?:export\s+(?:default\b|const\b|let\b|var\b|\{)|import\s*(?:[\w$*{]|['"]))`),
		importFrom:    regexp.MustCompile(`(?m)^[ \t]*import\s+([\w$*{][^;'"]*?)\s*from\s*(['"][^'"\n]+['"])[ \t]*;?`),
		importBare:    regexp.MustCompile(`(?m)^[ \t]*import\s*(['"][^'"\n]+['"])[ \t]*;?`),
		exportDefault: regexp.MustCompile(`(?m)^([ \t]*)export\s+default\s+`),
		exportVar:     regexp.MustCompile(`(?m)^([ \t]*)export\s+(const|let|var)\s+([\w$]+)\s*=`),
		exportList:    regexp.MustCompile(`(?m)^[ \t]*export\s*\{([^}]*)\}[ \t]*;?`),
		importMeta:    regexp.MustCompile(`\bimport\.meta\b`),
		asRename:      regexp.MustCompile(`\s+as\s+`),
	}
})

func rewriteESM(src, path string) string {
	re := esmRE()
	keepLines := func(match, repl string) string { return repl + strings.Repeat("\n", strings.Count(match, "\n")) }
	src = re.importFrom.ReplaceAllStringFunc(src, func(m string) string {
		sub := re.importFrom.FindStringSubmatch(m)
		clause, mod := strings.TrimSpace(sub[1]), sub[2]
		var decls []string
		for clause != "" {
			switch {
			case strings.HasPrefix(clause, "{"):
				end := strings.Index(clause, "}")
				if end < 0 {
					return m // leave it for the parser to report
				}
				names := re.asRename.ReplaceAllString(clause[1:end], ": ")
				decls = append(decls, "{"+names+"} = require("+mod+")")
				clause = clause[end+1:]
			case strings.HasPrefix(clause, "*"):
				name := strings.TrimSpace(re.asRename.ReplaceAllString(clause[1:], ""))
				decls = append(decls, name+" = require("+mod+")")
				clause = ""
			default:
				name, rest, _ := strings.Cut(clause, ",")
				decls = append(decls, strings.TrimSpace(name)+" = require("+mod+")")
				clause = rest
			}
			clause = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(clause), ","))
		}
		return keepLines(m, "const "+strings.Join(decls, ", ")+";")
	})
	src = re.importBare.ReplaceAllStringFunc(src, func(m string) string {
		return keepLines(m, "require("+re.importBare.FindStringSubmatch(m)[1]+");")
	})
	src = re.exportDefault.ReplaceAllString(src, "${1}module.exports = ")
	src = re.exportVar.ReplaceAllString(src, "${1}${2} ${3} = exports.${3} =")
	src = re.exportList.ReplaceAllStringFunc(src, func(m string) string {
		var stmts []string
		for item := range strings.SplitSeq(re.exportList.FindStringSubmatch(m)[1], ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			local, exported, ok := strings.Cut(re.asRename.ReplaceAllString(item, " "), " ")
			if !ok {
				exported = local
			}
			if exported == "default" {
				stmts = append(stmts, "module.exports = "+local+";")
			} else {
				stmts = append(stmts, "exports."+exported+" = "+local+";")
			}
		}
		return keepLines(m, strings.Join(stmts, " "))
	})
	meta, _ := json.Marshal(map[string]string{
		"url":      (&url.URL{Scheme: "file", Path: path}).String(),
		"filename": path,
		"dirname":  filepath.Dir(path),
	})
	return re.importMeta.ReplaceAllString(src, "("+string(meta)+")")
}

// shim returns the stand-in for a core module a config may require, or nil.
func shim(vm *goja.Runtime, name, file string) goja.Value {
	fn := func(f func(args []string) any) func(goja.FunctionCall) goja.Value {
		return func(call goja.FunctionCall) goja.Value {
			args := make([]string, len(call.Arguments))
			for i, a := range call.Arguments {
				args[i] = a.String()
			}
			return vm.ToValue(f(args))
		}
	}
	arg := func(args []string, i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	o := vm.NewObject()
	set := func(k string, v any) { _ = o.Set(k, v) }
	switch name {
	case "path":
		set("sep", string(filepath.Separator))
		set("delimiter", string(filepath.ListSeparator))
		set("join", fn(func(a []string) any {
			if p := filepath.Join(a...); p != "" {
				return p
			}
			return "."
		}))
		set("resolve", fn(func(a []string) any {
			p, _ := os.Getwd()
			for _, s := range a {
				if filepath.IsAbs(s) {
					p = s
				} else if s != "" {
					p = filepath.Join(p, s)
				}
			}
			return filepath.Clean(p)
		}))
		set("dirname", fn(func(a []string) any { return filepath.Dir(arg(a, 0)) }))
		set("basename", fn(func(a []string) any {
			return strings.TrimSuffix(filepath.Base(arg(a, 0)), arg(a, 1))
		}))
		set("extname", fn(func(a []string) any { return filepath.Ext(arg(a, 0)) }))
		set("isAbsolute", fn(func(a []string) any { return filepath.IsAbs(arg(a, 0)) }))
		set("normalize", fn(func(a []string) any { return filepath.Clean(arg(a, 0)) }))
		set("relative", fn(func(a []string) any {
			r, err := filepath.Rel(arg(a, 0), arg(a, 1))
			if err != nil {
				return arg(a, 1)
			}
			return r
		}))
		_ = o.Set("posix", o)
	case "os":
		set("cpus", fn(func([]string) any {
			cpus := make([]any, runtime.NumCPU())
			for i := range cpus {
				cpus[i] = map[string]any{"model": "", "speed": 0}
			}
			return cpus
		}))
		set("availableParallelism", fn(func([]string) any { return runtime.NumCPU() }))
		set("hostname", fn(func([]string) any { h, _ := os.Hostname(); return h }))
		set("homedir", fn(func([]string) any { h, _ := os.UserHomeDir(); return h }))
		set("tmpdir", fn(func([]string) any { return os.TempDir() }))
		set("platform", fn(func([]string) any { return runtime.GOOS }))
		set("type", fn(func([]string) any { return map[string]string{"linux": "Linux", "darwin": "Darwin"}[runtime.GOOS] }))
		set("EOL", "\n")
	case "url":
		set("fileURLToPath", fn(func(a []string) any {
			if u, err := url.Parse(arg(a, 0)); err == nil && u.Scheme == "file" {
				return u.Path
			}
			return arg(a, 0)
		}))
		set("pathToFileURL", fn(func(a []string) any {
			p, _ := filepath.Abs(arg(a, 0))
			href := (&url.URL{Scheme: "file", Path: p}).String()
			return map[string]any{"href": href, "pathname": p, "protocol": "file:"}
		}))
	case "process":
		return vm.Get("process")
	default:
		return nil
	}
	_ = o.Set("default", o)
	return o
}

// newProcess is the process global: the real environment, cwd() and platform.
func newProcess(vm *goja.Runtime) *goja.Object {
	env := vm.NewObject()
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			_ = env.Set(k, v)
		}
	}
	p := vm.NewObject()
	_ = p.Set("env", env)
	_ = p.Set("platform", runtime.GOOS)
	_ = p.Set("argv", []any{})
	_ = p.Set("cwd", func(goja.FunctionCall) goja.Value { d, _ := os.Getwd(); return vm.ToValue(d) })
	return p
}

// newConsole is a console that discards what a config logs, which would otherwise mix with the
// CLI's output.
func newConsole(vm *goja.Runtime) *goja.Object {
	c := vm.NewObject()
	for _, k := range []string{"log", "info", "warn", "error", "debug"} {
		_ = c.Set(k, func(goja.FunctionCall) goja.Value { return goja.Undefined() })
	}
	return c
}

// nodeLoader loads the config named by its argument with import() (which takes CommonJS and ES
// modules alike) and prints it as JSON after a marker, past anything the config prints itself.
const nodeLoader = `
const { pathToFileURL } = require('url');
import(pathToFileURL(process.argv[1]).href).then((ns) => {
  const cfg = ns.default !== undefined ? ns.default : Object.assign({}, ns);
  process.stdout.write('\n` + nodeMarker + `' + JSON.stringify(cfg));
}).catch((e) => {
  process.stderr.write(String((e && e.stack) || e));
  process.exit(1);
});`

const nodeMarker = "--corral-config-7f3a9c--"

// nodePipeDelay is how long evalNode waits for node's stdout and stderr to close once node has
// exited (or been killed): longer only when a child it left holds them.
const nodePipeDelay = time.Second

// evalNode loads a config with node and returns what it exports.
func evalNode(ctx context.Context, nodeBin, path string) (*value, error) {
	ctx, cancel := context.WithTimeout(ctx, evalTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, "-e", nodeLoader, path)
	cmd.Dir = filepath.Dir(path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// node runs in a process group of its own, killed whole at the deadline. A child the config
	// leaves behind (detached, so out of the group) may hold stdout open: WaitDelay stops waiting
	// for the pipes shortly after node is gone, so the deadline covers them too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = nodePipeDelay
	err := cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group's leftovers, if any
	}
	if errors.Is(err, exec.ErrWaitDelay) && ctx.Err() == nil {
		err = nil // node exited well; only a leftover child held the pipes
	}
	if err != nil {
		// Node's message, without the stack frames past the first.
		var kept []string
		frames := 0
		for l := range strings.Lines(strings.TrimSpace(stderr.String())) {
			if strings.HasPrefix(strings.TrimSpace(l), "at ") {
				if frames++; frames > 1 {
					continue
				}
			}
			kept = append(kept, l)
		}
		msg := strings.TrimSpace(strings.Join(kept, ""))
		if len(msg) > 1000 {
			msg = msg[:1000] + "..."
		}
		return nil, fmt.Errorf("node: %w: %s", err, msg)
	}
	_, js, ok := bytes.Cut(stdout.Bytes(), []byte(nodeMarker))
	if !ok || string(js) == "undefined" || len(js) == 0 {
		return nil, errors.New("node: the config exports nothing usable")
	}
	return parseJSONResult(js)
}
